package sink

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/pgstore"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	pgtest.Main(m)
}

// dbFor returns a fresh database for the test.
func dbFor(t testing.TB) string { return pgtest.DB(t) }

func openStore(t testing.TB, dsn string) *pgstore.Store {
	t.Helper()
	store, _, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(store.Close)
	return store
}

// runInBackground runs a sink; stop cancels it and returns once Run has
// returned (its consumer closed, which leaves the group).
func runInBackground(t testing.TB, r *rig, store *pgstore.Store, reg prometheus.Registerer) (s *Sink, stop func()) {
	t.Helper()
	s = r.newSink(t, store, reg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	return s, func() { cancel(); wg.Wait() }
}

// 100k records with updates and tombstones over five topics: every table
// equals the final state of its topic.
func TestSinkMaterialisesTheFinalStateOf100kRecords(t *testing.T) {
	r := newRig(t, 3)
	store := openStore(t, pgtest.DB(t))
	w := newWorld()
	t0 := time.Now()
	r.produce(t, w, mix100k, 1)
	t.Logf("produced %d records in %s", w.records, time.Since(t0))
	reg := prometheus.NewRegistry()
	t0 = time.Now()
	s, stop := runInBackground(t, r, store, reg)
	waitCaughtUp(t, store, w, 3*time.Minute)
	t.Logf("materialised in %s", time.Since(t0))
	stop()
	assertTablesEqualWorld(t, store, w)

	if got := testutil.ToFloat64(s.m.records); got != float64(w.records) {
		t.Errorf("shopstream_sink_records_total = %v, want %d", got, w.records)
	}
	n, err := testutil.GatherAndCount(reg, "shopstream_sink_rows_written_total", "shopstream_sink_batch_seconds", "shopstream_sink_lag_records")
	if err != nil || n == 0 {
		t.Errorf("metrics missing: %d series, err %v", n, err)
	}
}
