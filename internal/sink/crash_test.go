package sink

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

// The sink is stopped (its context cancelled) at random points, over and
// over, while records keep arriving; the tables still equal the final state
// of their topics, row by row and record by record.
func TestSinkExactlyOnceWhenCancelledAtRandomPoints(t *testing.T) {
	r := newRig(t, 3)
	store := openStore(t, dbFor(t))
	w := newWorld()
	produced := r.backlogThenArriving(t, w,
		mix{products: 20000, filtered: 10000, complete: 5000, searches: 10000, recs: 5000, tombstoneEvery: 10},
		mix{products: 20000, filtered: 10000, complete: 10000, searches: 5000, recs: 5000, tombstoneEvery: 10}, 2, 150*time.Millisecond)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	// Stop it until 10 stops have interrupted it with work left, or it
	// has written everything.
	midRun, kills := interruptUntil(t, store, w, produced, 10, 60, func(n int, before int64) bool {
		_, stop := runInBackground(t, r, store, nil)
		// Stop it a random moment after it has written something, so the
		// stop lands while it works through the backlog.
		afterProgress(t, store, w, before, rng, 80)
		stop()
		left := behind(t, store, w)
		if left > 0 {
			t.Logf("stop #%d: %d records still to write", n, left)
		}
		return left > 0
	})
	if midRun < 10 {
		t.Fatalf("only %d of %d stops came before the sink had caught up: the test did not interrupt it", midRun, kills)
	}
	catchUpAndCompare(t, r, store, w)
}

// helperEnv names what the helper process needs.
const helperEnv = "SHOPSTREAM_SINK_TEST_HELPER"

// runHelper is the body of the subprocess that TestSinkExactlyOnceAcrossSIGKILL
// kills: a sink that runs until it is killed.
func runHelper() int {
	brokers, registry, dsn := os.Getenv("HELPER_BROKERS"), os.Getenv("HELPER_REGISTRY"), os.Getenv("HELPER_DSN")
	ctx := context.Background()
	store, _, err := pgstore.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	// The helper builds its clients as `shopstream sink` does.
	serde, err := clients.NewSerde(registry)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: strings.Split(brokers, ",")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	s, err := New(Options{Deps: component.Deps{Kafka: k.With(staticMember()...), Topics: records.DefaultTopics(), Serde: serde}, Group: testGroup, Store: store})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Println("helper: running")
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// staticMember makes a restarted sink take over the killed one's place at
// once, instead of waiting for its session to time out.
func staticMember() []kgo.Opt {
	return []kgo.Opt{kgo.InstanceID("sink-under-test"), kgo.SessionTimeout(6 * time.Second)}
}

// The sink runs in a subprocess that is killed with SIGKILL at random
// points (no deferred cleanup, no rollback but PostgreSQL's own) while
// records keep arriving; the tables still equal the final state.
func TestSinkExactlyOnceAcrossSIGKILL(t *testing.T) {
	r := newRig(t, 3)
	dsn := dbFor(t)
	store := openStore(t, dsn)
	w := newWorld()
	each := mix{products: 15000, filtered: 5000, complete: 5000, searches: 5000, recs: 5000, tombstoneEvery: 8}
	produced := r.backlogThenArriving(t, w, each, each, 4, 300*time.Millisecond)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	midRun, kills := interruptUntil(t, store, w, produced, 5, 30, func(n int, before int64) bool {
		h := startHelper(t, r, dsn)
		afterProgress(t, store, w, before, rng, 150)
		h.kill(t, n)
		left := behind(t, store, w)
		if left > 0 {
			t.Logf("kill #%d: %d records behind before, %d after", n, before, left)
		}
		return left > 0
	})
	if midRun < 5 {
		t.Fatalf("only %d of %d kills came before the sink had caught up: the test did not interrupt it", midRun, kills)
	}
	catchUpAndCompare(t, r, store, w)
}

// helperApp names the helper's connections in pg_stat_activity.
const helperApp = "sink-under-test"

// A poll is written by several transactions at once. The sink is killed
// with SIGKILL at moments when two or more of its transactions are open
// (their backends are inside a transaction), over and over while records
// keep arriving on 6 partitions of every topic; the tables still equal the
// final state of their topics.
func TestSinkExactlyOnceWhenKilledWithSeveralTransactionsOpen(t *testing.T) {
	r := newRig(t, 6)
	dsn := dbFor(t)
	store := openStore(t, dsn)
	w := newWorld()
	produced := r.backlogThenArriving(t, w,
		mix{products: 20000, filtered: 10000, complete: 5000, searches: 5000, recs: 5000, tombstoneEvery: 8},
		mix{products: 15000, filtered: 5000, complete: 5000, searches: 5000, recs: 5000, tombstoneEvery: 8}, 11, 200*time.Millisecond)
	ctx := context.Background()
	open := func() int {
		var n int
		if err := store.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND xact_start IS NOT NULL`, helperApp).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	midTx, kills := interruptUntil(t, store, w, produced, 5, 40, func(kill int, before int64) bool {
		h := startHelper(t, r, withApplicationName(dsn, helperApp))
		// Let it commit something first, so that kills also land between
		// partitions that committed and partitions that did not; then kill
		// it the moment two of its transactions are seen open, or after
		// 10 s whatever it is doing.
		afterProgress(t, store, w, before, rng, 100)
		deadline := time.Now().Add(10 * time.Second)
		n := 0
		for n < 2 && time.Now().Before(deadline) {
			n = open()
		}
		h.kill(t, kill)
		if n >= 2 {
			t.Logf("kill #%d: %d transactions open, %d records behind before, %d after", kill, n, before, behind(t, store, w))
		}
		return n >= 2
	})
	if midTx < 5 {
		t.Fatalf("only %d of %d kills came while two or more transactions were open: the test did not interrupt concurrent writes", midTx, kills)
	}
	catchUpAndCompare(t, r, store, w)
}

// withApplicationName adds an application_name to a URL or key=value DSN.
func withApplicationName(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if strings.Contains(dsn, "?") {
			return dsn + "&application_name=" + name
		}
		return dsn + "?application_name=" + name
	}
	return dsn + " application_name=" + name
}

// catchUpAndCompare runs a sink in the killed helpers' place until it has
// written everything, then compares every table with its topic.
func catchUpAndCompare(t *testing.T, r *rig, store *pgstore.Store, w *world) {
	t.Helper()
	s := r.newSink(t, store, nil, staticMember()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitCaughtUp(t, store, w, 3*time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertTablesEqualWorld(t, store, w)
	if t.Failed() {
		r.logState(t, store)
	}
}

// helper is a sink running in a subprocess (runHelper).
type helper struct {
	cmd *exec.Cmd
	out *strings.Builder
}

func startHelper(t testing.TB, r *rig, dsn string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"HELPER_BROKERS="+strings.Join(r.kc.Brokers, ","), "HELPER_REGISTRY="+r.kc.RegistryURL, "HELPER_DSN="+dsn)
	h := &helper{cmd: cmd, out: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return h
}

// kill kills the helper with SIGKILL and fails the test if it had ended
// before.
func (h *helper) kill(t testing.TB, n int) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := h.cmd.Wait()
	if ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper #%d ended before it was killed (%v):\n%s", n, err, h.out.String())
	}
}

// backlogThenArriving produces backlog at once (with seed), then arriving
// in the background, a batch every pace (with seed+1); the channel closes
// when everything is produced.
func (r *rig) backlogThenArriving(t *testing.T, w *world, backlog, arriving mix, seed int64, pace time.Duration) <-chan struct{} {
	t.Helper()
	r.produce(t, w, backlog, seed)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		r.producePaced(t, w, arriving, seed+1, pace)
	}()
	return produced
}

// interruptUntil interrupts the sink over and over while the paced
// producer runs: once(attempt, before) starts it, interrupts it, and says
// whether that interruption counts for the test. It stops after want
// counted ones, max attempts, or once everything is written, and returns
// when the producer is done (then the final state is known), with the
// counted interruptions and the attempts.
func interruptUntil(t *testing.T, store *pgstore.Store, w *world, produced <-chan struct{}, want, max int, once func(attempt int, before int64) bool) (counted, attempts int) {
	t.Helper()
	for ; counted < want && attempts < max; attempts++ {
		if isDone(produced) && behind(t, store, w) == 0 {
			break
		}
		if once(attempts+1, behind(t, store, w)) {
			counted++
		}
	}
	<-produced
	return counted, attempts
}

// afterProgress returns a random moment (up to maxMillis) after the sink
// has written something since the backlog was before.
func afterProgress(t testing.TB, store *pgstore.Store, w *world, before int64, rng *rand.Rand, maxMillis int) {
	t.Helper()
	waitProgress(t, store, w, before)
	time.Sleep(time.Duration(rng.Intn(maxMillis)) * time.Millisecond)
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// behind is how many produced records the store's offsets have not reached.
func behind(t testing.TB, store *pgstore.Store, w *world) int64 {
	t.Helper()
	_, n, err := caughtUp(context.Background(), store, w)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitProgress waits until the sink has written something since the backlog
// was before, or there is nothing left to write.
func waitProgress(t testing.TB, store *pgstore.Store, w *world, before int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := behind(t, store, w)
		if n < before || n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink wrote nothing in 30s (%d records behind)", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
