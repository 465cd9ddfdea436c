package collector

import (
	"testing"

	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
)

// The package's tests share one throwaway PostgreSQL cluster (pgtest), each
// test with its own database.
func TestMain(m *testing.M) { pgtest.Main(m) }

// NewTestDatabase returns the DSN of a fresh, empty database.
func NewTestDatabase(t testing.TB) string { return pgtest.DB(t) }
