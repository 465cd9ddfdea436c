package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

// tupleProducts are products that exercise every column: escapes and
// non-ASCII text in the JSON columns, empty and repeated collections, and
// decimals of every shape.
func tupleProducts(rng *rand.Rand) []*records.Product {
	amounts := []string{"0", "0.0", "-0.00", "00012.3400", "7", "-5", "9999", "10000", "0.0001", "0.00005", "19.90",
		"123456789012345678901234567890.123456789", "-1000000.000001", strings.Repeat("9", 100) + "." + strings.Repeat("1", 100)}
	texts := []string{"", "plain", "ünïcødé ☃ 𝄞", "quote \" backslash \\ tab \t nl \n cr \r bell \x07", "\u2028\u2029", "<>&'"}
	var out []*records.Product
	for i, amount := range amounts {
		at := time.Date(1960+rng.Intn(100), time.Month(1+rng.Intn(12)), 1+rng.Intn(28), rng.Intn(24), rng.Intn(60), 0, rng.Intn(1000)*1e6, time.UTC)
		p := &records.Product{ProductID: fmt.Sprintf("p%d", i), MallID: "m" + texts[i%len(texts)], Name: texts[(i+1)%len(texts)],
			Description: texts[(i+2)%len(texts)], Price: records.Price{Amount: amount, Currency: "EUR"}, Category: texts[(i+3)%len(texts)],
			Brand: "b", SKU: "s", Tags: []string{}, Images: []records.Image{}, Stock: int32(rng.Intn(1<<31) - 1<<30),
			Specifications: map[string]string{}, CreatedAt: at, UpdatedAt: at.Add(time.Duration(rng.Intn(1e9)) * time.Millisecond)}
		for j := 0; j < i%4; j++ {
			p.Tags = append(p.Tags, texts[(i+j)%len(texts)])
			p.Images = append(p.Images, records.Image{URL: "http://img/" + texts[j%len(texts)], Alt: texts[(i+j+1)%len(texts)]})
			p.Specifications[texts[(i+j)%len(texts)]] = texts[(i+2*j)%len(texts)]
		}
		out = append(out, p)
	}
	return out
}

// The COPY tuple read straight from the Avro body stores exactly what the
// values decoded into Go store: both paths write the same products into two
// tables of the same shape, and PostgreSQL finds no difference.
func TestProductTupleStoresWhatProductValuesStores(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	schemas, err := records.ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	api := schemas.API()
	var viaTuple, viaValues, completeTuple, completeValues []Row
	for i, p := range tupleProducts(rand.New(rand.NewSource(1))) {
		body, err := api.Marshal(schemas.Schema(records.KindProduct), p)
		if err != nil {
			t.Fatal(err)
		}
		tuple, err := AppendProductTuple(nil, []byte(p.Key()), body)
		if err != nil {
			t.Fatalf("#%d: tuple of %+v: %v", i, p, err)
		}
		viaTuple = append(viaTuple, Row{Key: p.Key(), Tuple: tuple, Offset: int64(i)})
		viaValues = append(viaValues, upsert(t, p, int64(i)))

		c := &records.CompleteProduct{Product: *p, CollectedAt: p.UpdatedAt,
			Images: []records.StoredImage{{URL: "u\"", Path: "blobs/é", SHA256: "ab", Size: int64(i) << 40, ContentType: "image/png"}}}
		if i%3 == 0 {
			c.Images = nil
		}
		body, err = api.Marshal(schemas.Schema(records.KindCompleteProduct), c)
		if err != nil {
			t.Fatal(err)
		}
		if tuple, err = AppendCompleteProductTuple(nil, []byte(p.Key()), body); err != nil {
			t.Fatalf("#%d: complete tuple: %v", i, err)
		}
		completeTuple = append(completeTuple, Row{Key: p.Key(), Tuple: tuple, Offset: int64(i)})
		vals, err := CompleteProductValues(p.Key(), c)
		if err != nil {
			t.Fatal(err)
		}
		completeValues = append(completeValues, Row{Key: p.Key(), Values: vals, Offset: int64(i)})
	}
	// Each table through both paths: the tuples' rows are set aside,
	// then the same rows are written from Go values.
	for _, b := range []*Batch{
		{Group: "tuple", Rows: map[*Table][]Row{Products: viaTuple, CompleteProducts: completeTuple}},
		{Group: "values", Rows: map[*Table][]Row{FilteredProducts: viaValues}},
	} {
		if _, err := s.Apply(ctx, b); err != nil {
			t.Fatalf("apply %s: %v", b.Group, err)
		}
	}
	if _, err := s.Pool.Exec(ctx, "CREATE TABLE complete_tuples AS SELECT * FROM complete_products; TRUNCATE complete_products"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &Batch{Group: "values", Rows: map[*Table][]Row{CompleteProducts: completeValues}}); err != nil {
		t.Fatal(err)
	}
	cols := "key, product_id, mall_id, name, description, price_amount, price_amount::text, price_currency, category, brand, sku, tags, images, stock, specifications, created_at, updated_at, source_offset"
	for _, c := range []struct{ a, b, cols string }{
		{"products", "filtered_products", cols},
		{"complete_tuples", "complete_products", cols + ", stored_images, collected_at"},
	} {
		var n, diff int
		q := fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s),
			(SELECT count(*) FROM ((SELECT %[3]s FROM %[1]s EXCEPT SELECT %[3]s FROM %[2]s) UNION ALL (SELECT %[3]s FROM %[2]s EXCEPT SELECT %[3]s FROM %[1]s)) d)`,
			c.a, c.b, c.cols)
		if err := s.Pool.QueryRow(ctx, q).Scan(&n, &diff); err != nil {
			t.Fatal(err)
		}
		if n != len(viaTuple) || diff != 0 {
			t.Errorf("%s holds %d rows (want %d); %d differ from %s", c.a, n, len(viaTuple), diff, c.b)
		}
	}
	// Both paths share the binary numeric encoder: check it against
	// PostgreSQL's own parsing of the decimal text.
	for _, p := range tupleProducts(rand.New(rand.NewSource(1))) {
		var stored, parsed string
		if err := s.Pool.QueryRow(ctx, "SELECT price_amount::text, $2::numeric::text FROM products WHERE key = $1", p.Key(), p.Price.Amount).Scan(&stored, &parsed); err != nil {
			t.Fatalf("%s: %v", p.Key(), err)
		}
		if stored != parsed {
			t.Errorf("price %q is stored as %s, PostgreSQL reads it as %s", p.Price.Amount, stored, parsed)
		}
	}
}

// A value PostgreSQL cannot store is refused with an InvalidError that
// says why, and the tuple reader refuses it for the same reason; a body
// that is not one whole product is malformed.
func TestProductTupleRefusesWhatDecodingRefuses(t *testing.T) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	api := schemas.API()
	for i, c := range []struct {
		mutate func(p *records.Product)
		key    string
		want   string
	}{
		{func(p *records.Product) { p.Name = "a\x00b" }, "", "NUL"},
		{func(p *records.Product) { p.Description = "\xff" }, "", "UTF-8"},
		{func(p *records.Product) { p.Price.Amount = "12,50" }, "", "not a decimal"},
		{func(p *records.Product) { p.Price.Amount = "NaN" }, "", "not a decimal"},
		{func(p *records.Product) { p.Price.Amount = "1." }, "", "not a decimal"},
		{func(p *records.Product) { p.Specifications = map[string]string{"k\x00": "v"} }, "", "NUL"},
		{func(p *records.Product) { p.Tags = []string{"ok", "\xc3"} }, "", "UTF-8"},
		{func(p *records.Product) { p.Images = []records.Image{{URL: "u", Alt: "\x00"}} }, "", "NUL"},
		{func(p *records.Product) {}, "other/key", "does not match"},
		{func(p *records.Product) {}, "m/", "does not match"},
		{func(p *records.Product) { p.Name = "\x00"; p.Price.Amount = "x" }, "", "NUL"}, // the text first, as checkProduct
	} {
		p := product("m", "1", "n", 1)
		c.mutate(p)
		key := c.key
		if key == "" {
			key = p.Key()
		}
		_, want := ProductValues(key, p)
		var wi *InvalidError
		if !errors.As(want, &wi) || !strings.Contains(wi.Reason, c.want) {
			t.Errorf("#%d: ProductValues error %v, want an InvalidError saying %q", i, want, c.want)
			continue
		}
		body, err := api.Marshal(schemas.Schema(records.KindProduct), p)
		if err != nil {
			t.Fatal(err)
		}
		_, got := AppendProductTuple(nil, []byte(key), body)
		var gi *InvalidError
		if !errors.As(got, &gi) || gi.Reason != wi.Reason {
			t.Errorf("#%d: tuple error %v, want %v", i, got, want)
		}
	}
	// Cut anywhere, or with a byte too many, a body is malformed.
	p := product("m", "1", "n", 1)
	body, err := api.Marshal(schemas.Schema(records.KindProduct), p)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(body); n++ {
		if _, err := AppendProductTuple(nil, []byte(p.Key()), body[:n]); !errors.Is(err, records.ErrMalformed) {
			t.Errorf("cut at %d of %d bytes: err = %v, want ErrMalformed", n, len(body), err)
		}
	}
	if _, err := AppendProductTuple(nil, []byte(p.Key()), append(body, 0)); !errors.Is(err, records.ErrMalformed) {
		t.Errorf("a trailing byte: err = %v, want ErrMalformed", err)
	}
	// A tag count larger than the bytes left is a lie, not a loop.
	var hostile []byte
	for _, s := range []string{"1", "m", "n", "", "1.00", "EUR", "", "", ""} { // up to sku
		hostile = append(append(hostile, byte(2*len(s))), s...)
	}
	hostile = append(hostile, 0x80, 0xa8, 0xd6, 0xb9, 0x07) // 1e9 tags
	if _, err := AppendProductTuple(nil, []byte("m/1"), hostile); !errors.Is(err, records.ErrMalformed) {
		t.Errorf("a hostile count: err = %v, want ErrMalformed", err)
	}
}

func BenchmarkAppendProductTuple(b *testing.B) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		b.Fatal(err)
	}
	p := product("mall-42", "p-123456", "Galaxy Phone 15, 256 GB, black", 12)
	body, err := schemas.API().Marshal(schemas.Schema(records.KindProduct), p)
	if err != nil {
		b.Fatal(err)
	}
	key := []byte(p.Key())
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = AppendProductTuple(buf[:0], key, body); err != nil {
			b.Fatal(err)
		}
	}
}
