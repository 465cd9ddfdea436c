package sink

import (
	"context"
	"github.com/twmb/franz-go/pkg/kadm"
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

// The advisory Kafka commit also happens once the topics go quiet: lag
// tools (status, the lag gauge) see the sink reach the end of a burst,
// not stop a few records short of it until the next record comes.
func TestKafkaOffsetsReachTheEndOnceTheTopicsGoQuiet(t *testing.T) {
	r := newRig(t, 3)
	store := openStore(t, pgtest.DB(t))
	w := newWorld()
	r.produce(t, w, mix{products: 300, filtered: 100}, 3)
	_, stop := runInBackground(t, r, store, prometheus.NewRegistry())
	defer stop()
	waitCaughtUp(t, store, w, time.Minute)
	// A last record right after a commit: without a commit while idle, its
	// offset would never reach Kafka.
	r.produce(t, w, mix{products: 1}, 4)
	waitCaughtUp(t, store, w, time.Minute)
	waitKafkaCommitted(t, r, 10*time.Second, "the sink wrote everything")
}

// waitKafkaCommitted waits until the sink group's committed offsets in
// Kafka lag by nothing, and fails t after within, naming since when.
func waitKafkaCommitted(t *testing.T, r *rig, within time.Duration, since string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		lag, err := r.admin.Lag(context.Background(), testGroup)
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		lag.Each(func(l kadm.DescribedGroupLag) { total += l.Lag.Total() })
		if total == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after %s, Kafka's committed offsets lag by %d", within, since, total)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A sink that starts from PostgreSQL's offsets while Kafka's committed
// ones lag behind (its predecessor wrote and died before its advisory
// commit) brings Kafka's up to date, even on partitions with nothing more
// to read. Found by the fault suite (internal/chaos, seed 39): after a
// SIGKILL, status reported the sink stuck with a lag it had long written.
func TestKafkaOffsetsCatchUpWithStoredOnesAfterARestart(t *testing.T) {
	r := newRig(t, 3)
	store := openStore(t, pgtest.DB(t))
	w := newWorld()
	r.produce(t, w, mix{products: 200, filtered: 50}, 5)
	_, stop := runInBackground(t, r, store, prometheus.NewRegistry())
	waitCaughtUp(t, store, w, time.Minute)
	stop()
	// What Kafka has when the predecessor died before committing there.
	ctx := context.Background()
	var back kadm.Offsets
	for _, topic := range []string{r.topics.Products, r.topics.Filtered} {
		for p := range int32(3) {
			back.Add(kadm.Offset{Topic: topic, Partition: p, At: 0, LeaderEpoch: -1})
		}
	}
	if _, err := r.admin.CommitOffsets(ctx, testGroup, back); err != nil {
		t.Fatal(err)
	}
	_, stop = runInBackground(t, r, store, prometheus.NewRegistry())
	defer stop()
	waitKafkaCommitted(t, r, 15*time.Second, "a sink started from PostgreSQL's offsets")
}
