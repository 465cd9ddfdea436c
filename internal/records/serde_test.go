package records

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func newTestSerde(t *testing.T) *Serde {
	t.Helper()
	schemas, err := ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	reg := srfake.NewRegistry()
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return NewSerde(schemas, cl)
}

func TestSchemaTextIsSelfContained(t *testing.T) {
	schemas, err := ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Kinds {
		text := schemas.Text(k)
		// A registry parses each subject's schema alone, so it must parse
		// without the other files.
		if _, err := avro.Parse(text); err != nil {
			t.Errorf("%s: schema text does not parse alone: %v\n%s", k, err, text)
		}
	}
	if !strings.Contains(schemas.Text(KindRecommendation), `"name":"shopstream.Price"`) {
		t.Errorf("Recommendation does not inline Price: %s", schemas.Text(KindRecommendation))
	}
	if !strings.Contains(schemas.Text(KindProduct), "timestamp-millis") {
		t.Errorf("Product lost its logical types: %s", schemas.Text(KindProduct))
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newTestSerde(t)
	now := time.UnixMilli(1_700_000_000_123).UTC()
	in := Product{
		ProductID: "p1", MallID: "m1", Name: "Galaxy Phone", Description: "d",
		Price: Price{Amount: "19.99", Currency: "EUR"}, Category: "phones", Brand: "Samsung",
		SKU: "SKU-1", Tags: []string{"a", "b"}, Images: []Image{{URL: "http://x/1.png", Alt: "front"}},
		Stock: 7, Specifications: map[string]string{"color": "black"}, CreatedAt: now, UpdatedAt: now,
	}
	b, err := s.Encode(ctx, nil, "shop_products", &in)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := SplitHeader(b)
	if err != nil || id <= 0 {
		t.Fatalf("header: id %d err %v", id, err)
	}
	var out Product
	if err := s.Decode(ctx, b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Name != in.Name || out.Price != in.Price || !out.UpdatedAt.Equal(now) || out.Specifications["color"] != "black" || len(out.Images) != 1 {
		t.Fatalf("round trip changed the product:\n in %+v\nout %+v", in, out)
	}
	// The id is cached: a second encode under the same subject agrees.
	b2, err := s.Encode(ctx, nil, "shop_products", &in)
	if err != nil {
		t.Fatal(err)
	}
	if id2, _, _ := SplitHeader(b2); id2 != id {
		t.Fatalf("second encode used id %d, first %d", id2, id)
	}
}

func TestDecodeErrors(t *testing.T) {
	ctx := context.Background()
	s := newTestSerde(t)
	good, err := s.Encode(ctx, nil, "t", &SearchPrompt{SearchID: "s", UserID: "u", Query: "q", SearchedAt: time.UnixMilli(1)})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		in   []byte
		want error
	}{
		{[]byte(`{"json":true}`), ErrNotFramed},
		{[]byte{0, 1}, ErrNotFramed},
		{[]byte{0, 0, 0, 0x7f, 0x7f, 2, 'a'}, ErrUnknownSchemaID},
		{good[:len(good)-3], ErrMalformed},
	} {
		var p SearchPrompt
		if err := s.Decode(ctx, c.in, &p); !errors.Is(err, c.want) {
			t.Errorf("#%d: got %v, want %v", i, err, c.want)
		}
	}
}

// A consumer that did not encode the value itself must fetch the writer's
// schema from the registry by id and decode with it.
func TestDecodeWithAFreshSerde(t *testing.T) {
	ctx := context.Background()
	schemas, err := ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(srfake.NewRegistry().Handler())
	defer srv.Close()
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	in := SearchPrompt{SearchID: "s", UserID: "u", Query: "phone", SearchedAt: time.UnixMilli(5).UTC()}
	b, err := NewSerde(schemas, cl).Encode(ctx, nil, "t", &in)
	if err != nil {
		t.Fatal(err)
	}
	var out SearchPrompt
	if err := NewSerde(schemas, cl).Decode(ctx, b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}
