package environment

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

// Two subjects with one schema share its id (shop_products and
// analytic_products_filtered both hold Product); a restarted dev stack must
// load them both back.
func TestPersistentRegistryRestoresSharedIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "schema-registry.json")
	schema := sr.Schema{Schema: `{"type":"record","name":"P","fields":[{"name":"a","type":"string"}]}`}
	other := sr.Schema{Schema: `{"type":"record","name":"Q","fields":[{"name":"b","type":"string"}]}`}

	first, err := newPersistentRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(first)
	cl, _ := sr.NewClient(sr.URLs(srv.URL))
	a, err := cl.CreateSchema(ctx, "a-value", schema)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.CreateSchema(ctx, "b-value", schema)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cl.CreateSchema(ctx, "c-value", other)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if a.ID != b.ID {
		t.Fatalf("srfake gave one schema ids %d and %d", a.ID, b.ID)
	}

	second, err := newPersistentRegistry(path)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	srv = httptest.NewServer(second)
	defer srv.Close()
	cl, _ = sr.NewClient(sr.URLs(srv.URL))
	for subject, id := range map[string]int{"a-value": a.ID, "b-value": b.ID, "c-value": c.ID} {
		got, err := cl.SchemaByVersion(ctx, subject, -1)
		if err != nil || got.ID != id {
			t.Errorf("after restart %s = id %d, %v; want id %d", subject, got.ID, err, id)
		}
	}
}
