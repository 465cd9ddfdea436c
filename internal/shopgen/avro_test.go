package shopgen

import (
	"bytes"
	"context"
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

func TestWritesTheProductSchema(t *testing.T) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	fp := schemas.Schema(records.KindProduct).Fingerprint()
	if got := hex.EncodeToString(fp[:]); got != ProductSchemaFingerprint {
		t.Fatalf("Product.avsc changed (fingerprint %s): update AppendProductAvro to the new schema, then ProductSchemaFingerprint", got)
	}
	if !WritesSchema(schemas.Schema(records.KindProduct)) || WritesSchema(schemas.Schema(records.KindSearchPrompt)) {
		t.Fatal("WritesSchema does not tell the Product schema from another")
	}
}

func TestAppendProductAvroMatchesTheGenericEncoder(t *testing.T) {
	schemas, err := records.ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	schema := schemas.Schema(records.KindProduct)
	g := newGen(t, Options{Seed: 3})
	for i := uint64(0); i < 2000; i++ {
		p := g.Product(i)
		// With one specification the map's order cannot differ, so the
		// bytes must be exactly the generic encoder's.
		p.Specifications = map[string]string{"color": p.Specifications["color"]}
		if i%7 == 0 {
			p.Tags = nil // empty arrays are written as a lone end marker
		}
		want, err := schemas.API().Marshal(schema, &p)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendProductAvro(nil, &p); !bytes.Equal(got, want) {
			t.Fatalf("#%d: encodings differ\n got %x\nwant %x", i, got, want)
		}
	}
}

func TestAppendProductAvroDecodes(t *testing.T) {
	serde := kafkatest.NewSerde(t)
	id, err := serde.SchemaID(context.Background(), "shop_products", records.KindProduct)
	if err != nil {
		t.Fatal(err)
	}
	g := newGen(t, Options{Seed: 4})
	for i := uint64(0); i < 3000; i++ {
		in := g.Product(i)
		b := AppendProductAvro([]byte{0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}, &in)
		var out records.Product
		if err := serde.Decode(context.Background(), b, &out); err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("#%d: round trip changed the product:\n%+v\n%+v", i, in, out)
		}
		if again := AppendProductAvro(nil, &in); !bytes.Equal(again, b[5:]) {
			t.Fatalf("#%d: the same product encoded twice differs", i)
		}
	}
}

// BenchmarkFillAppendAvro is what the batch activity spends on a product
// before Kafka: generate, then encode.
func BenchmarkFillAppendAvro(b *testing.B) {
	g := newGen(b, Options{Seed: 99, Shops: 10})
	var p records.Product
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		g.Fill(&p, i)
		buf = AppendProductAvro(buf[:0], &p)
		i++
	}
}

func TestAppendKeyValueIsFillThenAppendProductAvro(t *testing.T) {
	for _, o := range []Options{{Seed: 5}, {Seed: 1 << 60, Shops: 999, ImageBaseURL: "https://cdn.example.com/i/"}} {
		g := newGen(t, o)
		header := []byte{0, 0, 0, 0, 9}
		var p records.Product
		buf := make([]byte, 0, 64) // small: appending must survive growing
		for _, i := range []uint64{0, 1, 9, 10, 99, 12345, 1e9, 1<<64 - 1} {
			for j := uint64(0); j < 300; j++ {
				index := i + j
				g.Fill(&p, index)
				want := AppendProductAvro(append([]byte(p.Key()), header...), &p)
				got, keyLen := g.AppendKeyValue(buf[:0], index, header)
				if !bytes.Equal(got, want) || keyLen != len(p.Key()) {
					t.Fatalf("seed %d index %d: AppendKeyValue differs from Fill+AppendProductAvro\n got %q (key %d)\nwant %q (key %d)", o.Seed, index, got, keyLen, want, len(p.Key()))
				}
			}
		}
	}
}

// BenchmarkAppendKeyValue is what the batch activity spends on a record
// before Kafka.
func BenchmarkAppendKeyValue(b *testing.B) {
	g := newGen(b, Options{Seed: 99, Shops: 10})
	buf := make([]byte, 0, 4096)
	header := []byte{0, 0, 0, 0, 1}
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		buf, _ = g.AppendKeyValue(buf[:0], i, header)
		i++
	}
}
