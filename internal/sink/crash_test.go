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
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/shopstream/shopstream/internal/config"
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
	r.produce(t, w, mix{products: 20000, filtered: 10000, complete: 5000, searches: 10000, recs: 5000, tombstoneEvery: 10}, 2)

	produced := make(chan struct{})
	go func() {
		defer close(produced)
		r.producePaced(t, w, mix{products: 20000, filtered: 10000, complete: 10000, searches: 5000, recs: 5000, tombstoneEvery: 10}, 3, 150*time.Millisecond)
	}()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills, midRun := 0, 0
	for done := false; !done || kills < 15; kills++ {
		select {
		case <-produced:
			done = true
		default:
		}
		_, stop := runInBackground(t, r, store, nil)
		time.Sleep(time.Duration(20+rng.Intn(300)) * time.Millisecond)
		stop()
		if ok, behind, _ := caughtUp(context.Background(), store, w); !ok {
			midRun++
			t.Logf("stop #%d: %d records still to write", kills+1, behind)
		}
	}
	if midRun < 5 {
		t.Fatalf("only %d of %d stops came before the sink had caught up: the test did not interrupt it", midRun, kills)
	}
	_, stop := runInBackground(t, r, store, nil)
	waitCaughtUp(t, store, w, 3*time.Minute)
	stop()
	assertTablesEqualWorld(t, store, w)
	if t.Failed() {
		r.logState(t, store)
	}
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
	schemas, err := records.ParseSchemas()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	reg, err := sr.NewClient(sr.URLs(registry))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	s, err := New(Options{Group: testGroup, Topics: config.Default().Topics, Store: store, Serde: records.NewSerde(schemas, reg)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...)}, append(s.KafkaOpts(), staticMember()...)...)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Println("helper: running")
	if err := s.Run(ctx, cl); err != nil {
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
	r.produce(t, w, mix{products: 15000, filtered: 5000, complete: 5000, searches: 5000, recs: 5000, tombstoneEvery: 8}, 4)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		r.producePaced(t, w, mix{products: 15000, filtered: 5000, complete: 5000, searches: 5000, recs: 5000, tombstoneEvery: 8}, 5, 300*time.Millisecond)
	}()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills, midRun := 0, 0
	for done := false; !done || kills < 6; kills++ {
		select {
		case <-produced:
			done = true
		default:
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=1",
			"HELPER_BROKERS="+strings.Join(r.stack.KafkaBrokers, ","), "HELPER_REGISTRY="+r.stack.RegistryURL, "HELPER_DSN="+dsn)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		_, before, _ := caughtUp(context.Background(), store, w)
		time.Sleep(time.Duration(200+rng.Intn(600)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper #%d ended before it was killed (%v):\n%s", kills+1, err, out.String())
		}
		if ok, behind, _ := caughtUp(context.Background(), store, w); !ok {
			midRun++
			t.Logf("kill #%d: %d records behind before, %d after", kills+1, before, behind)
		}
	}
	if midRun < 3 {
		t.Fatalf("only %d of %d kills came before the sink had caught up: the test did not interrupt it", midRun, kills)
	}
	s, cl := r.newSink(t, store, nil, staticMember()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, cl) }()
	waitCaughtUp(t, store, w, 3*time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cl.Close()
	assertTablesEqualWorld(t, store, w)
	if t.Failed() {
		r.logState(t, store)
	}
}
