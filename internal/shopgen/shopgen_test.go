package shopgen

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newGen(t testing.TB, o Options) *Generator {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = testNow
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSameSeedAndIndexSameProduct(t *testing.T) {
	a := newGen(t, Options{Seed: 42, Shops: 7})
	b := newGen(t, Options{Seed: 42, Shops: 7})
	// b reuses one Product across calls, as the batch activity does; the
	// product must not depend on what the previous call left in it.
	var reused records.Product
	for _, i := range []uint64{0, 1, 2, 999, 123456789, 1 << 40} {
		b.Fill(&reused, i+1)
		b.Fill(&reused, i)
		if want := a.Product(i); !reflect.DeepEqual(want, reused) {
			t.Fatalf("index %d: generators with the same seed differ:\n%+v\n%+v", i, want, reused)
		}
	}
	other := newGen(t, Options{Seed: 43, Shops: 7})
	if a.Product(5).ProductID == other.Product(5).ProductID {
		t.Fatalf("seeds 42 and 43 give the same product id %s", a.Product(5).ProductID)
	}
}

func TestProductsArePlausible(t *testing.T) {
	g := newGen(t, Options{Seed: 7, Shops: 3, ImageBaseURL: "http://img.test/images/"})
	ids := map[string]bool{}
	malls := map[string]bool{}
	phones := 0
	const n = 5000
	for i := uint64(0); i < n; i++ {
		p := g.Product(i)
		key := p.Key()
		if ids[key] {
			t.Fatalf("#%d: key %s repeats", i, key)
		}
		ids[key] = true
		malls[p.MallID] = true
		if p.Name == "" || p.Description == "" || p.Brand == "" || p.Category == "" || p.SKU == "" {
			t.Fatalf("#%d: empty text field: %+v", i, p)
		}
		if !strings.HasPrefix(p.Name, p.Brand+" ") || !strings.HasPrefix(p.Description, p.Name+" in ") {
			t.Fatalf("#%d: name %q, brand %q, description %q do not agree", i, p.Name, p.Brand, p.Description)
		}
		amount, err := strconv.ParseFloat(p.Price.Amount, 64)
		if err != nil || amount <= 0 || !strings.Contains(p.Price.Amount, ".") || len(p.Price.Currency) != 3 {
			t.Fatalf("#%d: price %+v", i, p.Price)
		}
		if len(p.Images) < 1 || len(p.Images) > 3 {
			t.Fatalf("#%d: %d images", i, len(p.Images))
		}
		for j, im := range p.Images {
			want := "http://img.test/images/" + p.ProductID + "-" + strconv.Itoa(j+1) + ".png"
			if im.URL != want || !strings.HasPrefix(im.Alt, p.Name) {
				t.Fatalf("#%d: image %d is %+v, want URL %s", i, j, im, want)
			}
		}
		if len(p.Tags) < 3 || p.Tags[0] != p.Category {
			t.Fatalf("#%d: tags %v", i, p.Tags)
		}
		if p.Stock < 0 || p.Stock > 500 || p.Specifications["color"] == "" || len(p.Specifications) < 4 {
			t.Fatalf("#%d: stock %d specs %v", i, p.Stock, p.Specifications)
		}
		if p.CreatedAt.After(testNow) || p.UpdatedAt.Before(p.CreatedAt) || p.UpdatedAt.After(testNow) || testNow.Sub(p.CreatedAt) > 366*24*time.Hour {
			t.Fatalf("#%d: created %v updated %v", i, p.CreatedAt, p.UpdatedAt)
		}
		if strings.Contains(strings.ToLower(p.Name), "phone") {
			phones++
		}
	}
	if len(malls) != 3 {
		t.Errorf("products spread over %d malls, want 3", len(malls))
	}
	// `filter set phone` must have something to find: phones are one
	// category of ten, plus the phone nouns' lookalikes.
	if phones < n/20 {
		t.Errorf("%d of %d names contain \"phone\"", phones, n)
	}
}

func TestEncodesWithProductSchema(t *testing.T) {
	serde := kafkatest.NewSerde(t)
	g := newGen(t, Options{Seed: 1})
	for i := uint64(0); i < 50; i++ {
		in := g.Product(i)
		b, err := serde.Encode(context.Background(), nil, "shop_products", &in)
		if err != nil {
			t.Fatal(err)
		}
		var out records.Product
		if err := serde.Decode(context.Background(), b, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("#%d: round trip changed the product:\n%+v\n%+v", i, in, out)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for i, o := range []Options{
		{Shops: -1, Now: testNow},
		{Shops: MaxShops + 1, Now: testNow},
		{ImageBaseURL: "ftp://x/images", Now: testNow},
		{ImageBaseURL: "images", Now: testNow},
		{},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("#%d: New(%+v) accepted bad options", i, o)
		}
	}
}

func TestNamesIncludePhones(t *testing.T) {
	g := newGen(t, Options{Seed: 1})
	names := g.Names()
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	if len(seen) != len(names) {
		t.Errorf("%d names, %d distinct", len(names), len(seen))
	}
	if !seen["Samsung smartphone Ultra"] || !seen["Apple phone Pro"] {
		t.Errorf("expected phone names missing from %d names", len(names))
	}
}

// BenchmarkFill measures generation alone, the way the batch activity uses
// it (one Product reused). Goal: at most 1 µs and 2 allocations a product.
func BenchmarkFill(b *testing.B) {
	g := newGen(b, Options{Seed: 99, Shops: 10})
	var p records.Product
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		g.Fill(&p, i)
		i++
	}
}

// BenchmarkFillEncode adds the Confluent-framed Avro encoding the batch
// activity does for each product, to show where a record's CPU goes.
func BenchmarkFillEncode(b *testing.B) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		b.Fatal(err)
	}
	serde := records.NewSerde(schemas, nil)
	g := newGen(b, Options{Seed: 99, Shops: 10})
	var p records.Product
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		g.Fill(&p, i)
		if buf, err = serde.AppendEncode(buf[:0], 1, records.KindProduct, &p); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
