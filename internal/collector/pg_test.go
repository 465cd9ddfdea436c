package collector

import (
	"context"
	"testing"

	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/pgstore"
)

// The package's tests share one throwaway PostgreSQL cluster (pgtest), each
// test with its own database.
func TestMain(m *testing.M) { pgtest.Main(m) }

// NewTestStore returns a Store over a fresh database that pgstore.Open
// migrated, as a process opens it; the pool closes when the test ends.
func NewTestStore(t testing.TB) *Store {
	t.Helper()
	db, _, err := pgstore.Open(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return NewStore(db)
}
