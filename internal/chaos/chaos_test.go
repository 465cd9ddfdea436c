package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/pgcluster"
)

// DefaultSchedules is how many schedules `go test` (and so `make test`)
// runs; CHAOS_SEEDS asks for more (`make chaos SEEDS=500`), CHAOS_SEED for
// one (`make chaos SEED=17` replays seed 17).
const DefaultSchedules = 30

// lanes is how many schedules run at once, each on infrastructure of its
// own (CHAOS_LANES; 3 by default): a schedule spends most of its time
// waiting for sessions and transactions to time out.
func lanes(t *testing.T) int {
	if s := os.Getenv("CHAOS_LANES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_LANES=%q: want a positive number", s)
		}
		return n
	}
	return 3
}

// startInfra starts one lane's infrastructure per lane, or skips (fails
// under CI=true) when PostgreSQL or the Temporal CLI is missing.
func startInfra(t *testing.T, n int) []*Infra {
	t.Helper()
	missing := func(err error) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: make test-deps installs it)", err)
		}
		t.Skipf("%v", err)
	}
	if _, err := pgcluster.FindBinDir(""); err != nil {
		missing(err)
	}
	if _, err := environment.FindTemporalCLI(""); err != nil {
		missing(err)
	}
	dir, err := os.MkdirTemp("", "shopstream-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as the postgres user when the tests run as root.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CHAOS_KEEP") == "" {
			os.RemoveAll(dir)
		} else {
			fmt.Printf("chaos: the processes' logs are in %s\n", dir)
		}
	})
	module, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := os.Getenv("CHAOS_BIN")
	var out []*Infra
	for i := range n {
		ldir := filepath.Join(dir, fmt.Sprintf("lane-%d", i))
		if err := os.Mkdir(ldir, 0o755); err != nil {
			t.Fatal(err)
		}
		in, err := StartInfra(ctx, InfraOptions{ModuleDir: module, Dir: ldir, Bin: bin})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.Close)
		bin = in.Bin // built once
		out = append(out, in)
	}
	return out
}

func seeds(t *testing.T) []int64 {
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: want a number", s)
		}
		return []int64{seed}
	}
	n := DefaultSchedules
	if s := os.Getenv("CHAOS_SEEDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("CHAOS_SEEDS=%q: want a positive number", s)
		}
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// Seeded schedules of faults over the whole pipeline: every one must end
// with every record where it belongs, once, and no aborted record read.
func TestChaos(t *testing.T) {
	all := seeds(t)
	infra := startInfra(t, min(lanes(t), len(all)))
	var (
		mu  sync.Mutex
		sum Summary
		wg  sync.WaitGroup
	)
	t0 := time.Now()
	next := make(chan int64)
	for _, in := range infra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range next {
				r := in.Run(context.Background(), NewSchedule(seed))
				mu.Lock()
				sum.Add(r)
				fmt.Println(Line(r))
				if os.Getenv("CHAOS_PHASES") != "" {
					fmt.Println("  " + Phases(r))
				}
				if !r.OK() {
					fmt.Print(Report(r))
				}
				mu.Unlock()
			}
		}()
	}
	for _, seed := range all {
		next <- seed
	}
	close(next)
	wg.Wait()
	fmt.Printf("chaos: faults by kind: %s; %d of the delays and drops took no request (events.log says which)\n", sum.Kinds(), sum.Idle)
	fmt.Printf("chaos: %d component exits no fault explains, %d the named cases caused; %d lanes, %s in all\n", sum.Crashes, sum.Caused, len(infra), time.Since(t0).Round(time.Second))
	for _, x := range sum.Exits {
		fmt.Printf("chaos: exit: %s\n", x)
	}
	fmt.Println(sum)
	for _, r := range sum.Failed {
		t.Errorf("seed %d: %d violations (replay with make chaos SEED=%d)", r.Schedule.Seed, len(r.Violations), r.Schedule.Seed)
	}
}
