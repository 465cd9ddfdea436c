package streamer

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
)

func testSchemas(t testing.TB) *records.Schemas {
	t.Helper()
	s, err := records.ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randomText mixes ASCII, multi-byte runes and lengths across the one- and
// two-byte varint boundary (63/64 bytes).
func randomText(r *rand.Rand) string {
	alphabets := []string{
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_/",
		"телефонТЕЛЕФОНßẞΣσςΐ日本語📱ǅİıﬁ",
	}
	var b strings.Builder
	n := r.IntN(4) * r.IntN(60)
	if r.IntN(10) == 0 {
		n = 60 + r.IntN(600)
	}
	for range n {
		a := []rune(alphabets[r.IntN(len(alphabets))])
		b.WriteRune(a[r.IntN(len(a))])
	}
	return b.String()
}

func randomProduct(r *rand.Rand) records.Product {
	p := records.Product{
		ProductID: randomText(r), MallID: randomText(r), Name: randomText(r),
		Description: randomText(r), Price: records.Price{Amount: "12.50", Currency: "EUR"},
		Category: randomText(r), Brand: randomText(r), SKU: randomText(r),
		Stock:     r.Int32N(1 << 20),
		CreatedAt: time.UnixMilli(r.Int64N(1 << 42)), UpdatedAt: time.UnixMilli(r.Int64N(1 << 42)),
	}
	for range r.IntN(4) {
		p.Tags = append(p.Tags, randomText(r))
		p.Images = append(p.Images, records.Image{URL: "http://img/" + randomText(r), Alt: randomText(r)})
	}
	if r.IntN(2) == 0 {
		p.Specifications = map[string]string{}
		for range r.IntN(5) {
			p.Specifications[randomText(r)] = randomText(r)
		}
	}
	return p
}

func TestReadNameMatchesHambaEncoding(t *testing.T) {
	schemas := testSchemas(t)
	ours := schemas.Schema(records.KindProduct)
	lay, err := NewLayout(ours, ours)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		p := randomProduct(r)
		body, err := schemas.API().Marshal(ours, &p)
		if err != nil {
			t.Fatalf("#%d: marshal: %v", i, err)
		}
		name, err := ReadName(body)
		if err != nil || string(name) != p.Name {
			t.Fatalf("#%d: ReadName = %q, %v; want %q", i, name, err, p.Name)
		}
		name, err = lay.Name(body)
		if err != nil || string(name) != p.Name {
			t.Fatalf("#%d: Layout.Name = %q, %v; want %q", i, name, err, p.Name)
		}
		// Every strict prefix is a truncated value: the walker must see it.
		cut := r.IntN(len(body))
		if _, err := lay.Name(body[:cut]); !errors.Is(err, records.ErrMalformed) {
			t.Fatalf("#%d: Layout.Name of the first %d of %d bytes: err %v, want malformed", i, cut, len(body), err)
		}
		if _, err := lay.Name(append(bytes.Clone(body), 0)); !errors.Is(err, errTrailing) {
			t.Fatalf("#%d: a trailing byte: err %v, want %v", i, err, errTrailing)
		}
	}
}

func TestLayoutEveryPrefixIsTruncated(t *testing.T) {
	schemas := testSchemas(t)
	ours := schemas.Schema(records.KindProduct)
	lay, err := NewLayout(ours, ours)
	if err != nil {
		t.Fatal(err)
	}
	p := randomProduct(rand.New(rand.NewPCG(3, 4)))
	p.Tags, p.Specifications = []string{"a", "b"}, map[string]string{"k": "v"}
	body, err := schemas.API().Marshal(ours, &p)
	if err != nil {
		t.Fatal(err)
	}
	for cut := range len(body) {
		if _, err := lay.Name(body[:cut]); !errors.Is(err, records.ErrMalformed) {
			t.Errorf("prefix of %d/%d bytes: err %v, want malformed", cut, len(body), err)
		}
	}
}

func TestLayoutWalksAnEvolvedWriterSchema(t *testing.T) {
	// A shop that appended fields of every kind (with defaults) still reads
	// as a product; the walker must skip each kind exactly.
	schemas := testSchemas(t)
	ours := schemas.Schema(records.KindProduct)
	text := schemas.Text(records.KindProduct)
	end := strings.LastIndex(text, "]}")
	evolved := text[:end] + `,
	{"name":"colour","type":["null","string"],"default":null},
	{"name":"rating","type":"double","default":0},
	{"name":"weight","type":"float","default":0},
	{"name":"fragile","type":"boolean","default":false},
	{"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","USED"]},"default":"NEW"},
	{"name":"digest","type":{"type":"fixed","name":"Digest","size":4},"default":"\u0000\u0000\u0000\u0000"},
	{"name":"raw","type":"bytes","default":""},
	{"name":"nested","type":{"type":"array","items":{"type":"map","values":"long"}},"default":[]}
	]}`
	w, err := avro.Parse(evolved)
	if err != nil {
		t.Fatalf("parse the evolved schema: %v\n%s", err, evolved)
	}
	lay, err := NewLayout(w, ours)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{
		"product_id": "p", "mall_id": "m", "name": "Röhrenradio", "description": "", "price": map[string]any{"amount": "1", "currency": "EUR"},
		"category": "", "brand": "", "sku": "", "tags": []any{"x"}, "images": []any{}, "stock": 3,
		"specifications": map[string]any{}, "created_at": time.UnixMilli(5), "updated_at": time.UnixMilli(6),
		"colour": "red", "rating": 4.5, "weight": float32(1.25), "fragile": true,
		"state": "USED", "digest": [4]byte{1, 2, 3, 4}, "raw": []byte{9, 9}, "nested": []any{map[string]any{"a": int64(1), "b": int64(-300)}},
	}
	body, err := avro.Marshal(w, v)
	if err != nil {
		t.Fatal(err)
	}
	name, err := lay.Name(body)
	if err != nil || string(name) != "Röhrenradio" {
		t.Fatalf("Name = %q, %v", name, err)
	}
	for cut := range len(body) {
		if _, err := lay.Name(body[:cut]); err == nil {
			t.Errorf("prefix of %d/%d bytes read as a whole record", cut, len(body))
		}
	}
}

func TestNewLayoutRejectsWhatIsNotAProduct(t *testing.T) {
	schemas := testSchemas(t)
	ours := schemas.Schema(records.KindProduct)
	for i, text := range []string{
		schemas.Text(records.KindSearchPrompt),
		`"string"`,
		`{"type":"record","name":"P","fields":[{"name":"product_id","type":"string"},{"name":"name","type":"string"},{"name":"mall_id","type":"string"}]}`,
		`{"type":"record","name":"P","fields":[{"name":"product_id","type":"string"},{"name":"mall_id","type":"string"},{"name":"name","type":"bytes"}]}`,
		`{"type":"record","name":"P","fields":[{"name":"product_id","type":"string"},{"name":"mall_id","type":"string"}]}`,
		// Product-shaped, but missing fields ours needs without a default.
		`{"type":"record","name":"Product","namespace":"shopstream","fields":[{"name":"product_id","type":"string"},{"name":"mall_id","type":"string"},{"name":"name","type":"string"}]}`,
	} {
		w, err := avro.Parse(text)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if _, err := NewLayout(w, ours); !errors.Is(err, records.ErrWrongSchema) {
			t.Errorf("#%d: err %v, want %v", i, err, records.ErrWrongSchema)
		}
	}
}

func TestReadNameErrors(t *testing.T) {
	for i, c := range []struct {
		in   []byte
		want error
	}{
		{nil, errTruncated},
		{[]byte{2, 'a'}, errTruncated},                  // product_id only
		{[]byte{2, 'a', 2, 'b', 10, 'n'}, errTruncated}, // name says 5 bytes, has 1
		{[]byte{1}, errNegative},                        // length -1
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, errVarint},
		{[]byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, errTruncated}, // huge length
	} {
		if _, err := ReadName(c.in); !errors.Is(err, c.want) {
			t.Errorf("#%d: err %v, want %v", i, err, c.want)
		}
	}
	name, err := ReadName([]byte{2, 'a', 0, 6, 'a', 'b', 'c', 0xff})
	if err != nil || string(name) != "abc" {
		t.Errorf("ReadName = %q, %v", name, err)
	}
}

func TestHostileCountsDoNotSpin(t *testing.T) {
	// An array of nulls may legally hold any number of items in no bytes;
	// a count of 2^62 strings in a few bytes must fail at once.
	w, err := avro.Parse(`{"type":"record","name":"P","fields":[
		{"name":"product_id","type":"string"},{"name":"mall_id","type":"string"},{"name":"name","type":"string"},
		{"name":"nulls","type":{"type":"array","items":"null"}},
		{"name":"tags","type":{"type":"array","items":"string"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := NewLayout(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	huge := []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f} // 2^62-1 zig-zagged
	body := append([]byte{0, 0, 2, 'n'}, huge...)
	body = append(body, 0) // end of the nulls
	body = append(body, huge...)
	start := time.Now()
	if _, err := lay.Name(body); !errors.Is(err, errTruncated) {
		t.Errorf("err %v, want %v", err, errTruncated)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}

func TestNameReadingAllocatesNothing(t *testing.T) {
	schemas := testSchemas(t)
	ours := schemas.Schema(records.KindProduct)
	lay, err := NewLayout(ours, ours)
	if err != nil {
		t.Fatal(err)
	}
	p := randomProduct(rand.New(rand.NewPCG(5, 6)))
	body, err := schemas.API().Marshal(ours, &p)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = lay.Name(body) }); n != 0 {
		t.Errorf("Layout.Name allocates %v times per value", n)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = lay.Name(body[:len(body)/2]) }); n != 0 {
		t.Errorf("rejecting a truncated value allocates %v times", n)
	}
}

func FuzzNameReader(f *testing.F) {
	schemas := testSchemas(f)
	ours := schemas.Schema(records.KindProduct)
	lay, err := NewLayout(ours, ours)
	if err != nil {
		f.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 8 {
		p := randomProduct(r)
		body, err := schemas.API().Marshal(ours, &p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		name, err := ReadName(body)
		if err == nil && (len(name) > len(body) || (len(name) > 0 && !bytes.Contains(body, name))) {
			t.Fatalf("ReadName returned %q, not a part of the value", name)
		}
		lname, lerr := lay.Name(body)
		if lerr == nil {
			if err != nil || !bytes.Equal(name, lname) {
				t.Fatalf("Layout.Name = %q, ReadName = %q, %v", lname, name, err)
			}
			// What the walker accepts, hamba must decode too.
			var p records.Product
			if derr := schemas.API().Unmarshal(ours, body, &p); derr != nil {
				t.Fatalf("walker accepted a value hamba rejects: %v", derr)
			}
			if p.Name != string(lname) {
				t.Fatalf("hamba reads name %q, walker %q", p.Name, lname)
			}
		}
	})
}

// BenchmarkHotPath is the per-record work of the streamer besides Kafka:
// find the name in the raw bytes and match it, and walk the rest of a
// product that passes; for a product as the emulator makes them, whose
// name matches ("pass") or not ("drop").
func BenchmarkHotPath(b *testing.B) {
	schemas := testSchemas(b)
	ours := schemas.Schema(records.KindProduct)
	lay, err := NewLayout(ours, ours)
	if err != nil {
		b.Fatal(err)
	}
	g, err := shopgen.New(shopgen.Options{Seed: 1, Now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	f := NewFilter(records.FilterState{Version: 1, Substring: "phone"}, false)
	for _, c := range []struct {
		name  string
		pass  bool
		title string
	}{{"drop", false, "Adidas trail shoes Air"}, {"pass", true, "Galaxy Phone 15, 256 GB, black"}} {
		b.Run(c.name, func(b *testing.B) {
			var p records.Product
			g.Fill(&p, 1)
			p.Name = c.title
			body, err := schemas.API().Marshal(ours, &p)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if pass, err := checkBody(lay, body, f); err != nil || pass != c.pass {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}

// walkProductRest, the walker of shopstream's own Product schema, agrees with
// the general walker on whole products, on every cut of them and on bytes
// flipped at random: the same name, and an error exactly when it errs.
func TestWalkProductAgreesWithTheWalker(t *testing.T) {
	schemas := testSchemas(t)
	ours := schemas.Schema(records.KindProduct)
	own, err := NewLayout(ours, ours)
	if err != nil {
		t.Fatal(err)
	}
	if !own.own {
		t.Fatal("shopstream's own Product schema does not get walkProductRest: Product.avsc and productFields disagree")
	}
	general := &Layout{root: own.root}
	r := rand.New(rand.NewPCG(3, 4))
	check := func(label string, body []byte) {
		t.Helper()
		n1, err1 := own.Name(body)
		n2, err2 := general.Name(body)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(n1, n2) {
			t.Fatalf("%s: walkProductRest = %q, %v; the walker = %q, %v", label, n1, err1, n2, err2)
		}
	}
	for i := range 300 {
		p := randomProduct(r)
		body, err := schemas.API().Marshal(ours, &p)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("#%d whole", i), body)
		for n := range len(body) {
			check(fmt.Sprintf("#%d cut at %d", i, n), body[:n])
		}
		for range 20 {
			bad := bytes.Clone(body)
			bad[r.IntN(len(bad))] = byte(r.IntN(256))
			check(fmt.Sprintf("#%d flipped", i), bad)
		}
	}
}
