package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}
	// make test: the default number of schedules, without the quarantined
	// seeds (make chaos and SEED= still run them).
	var out []int64
	for seed := int64(1); len(out) < n; seed++ {
		if why := quarantined(seed); why != "" {
			t.Logf("seed %d left out of make test: %s (make chaos SEED=%d runs it)", seed, why, seed)
			continue
		}
		out = append(out, seed)
	}
	return out
}

// quarantined says why a seed fails for a cause not fixed yet, "" for the
// others. A seed is quarantined only with its cause named here and in the
// closing note of the stop that found it, so that make test stays a gate
// for everything else; remove it with the fix.
func quarantined(seed int64) string {
	switch seed {
	case 30:
		// Found 2026-12-02: with ShufflePartitionLeaders, the recommender's
		// join received nothing from one partition of prompts for 90 s
		// (no commit there, its users never restored) while the others
		// flowed; 3 of about 8 full runs under load.
		return "after a leader shuffle the recommender's join can stop receiving one partition of prompts"
	}
	return ""
}

// Seeded schedules of faults over the whole pipeline: every one must end
// with every record where it belongs, once, and no aborted record read.
func TestChaos(t *testing.T) {
	all := seeds(t)
	infra := startInfra(t, min(lanes(t), len(all)))
	// make test (no CHAOS_SEED or CHAOS_SEEDS) runs a failed schedule once
	// more and fails only when it fails again, printing both: schedules
	// still fail now and then for causes not found yet (see quarantined),
	// and make test must stay a gate for everything else. make chaos and
	// SEED= never retry.
	retry := os.Getenv("CHAOS_SEED") == "" && os.Getenv("CHAOS_SEEDS") == ""
	var (
		mu    sync.Mutex
		sum   Summary
		wg    sync.WaitGroup
		flaky []int64
	)
	t0 := time.Now()
	next := make(chan int64)
	for _, in := range infra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range next {
				r := in.Run(context.Background(), NewSchedule(seed))
				if !r.OK() && retry {
					mu.Lock()
					fmt.Println(Line(r) + " (first run; make test runs it once more)")
					fmt.Print(Report(r))
					mu.Unlock()
					if r = in.Retry(context.Background(), NewSchedule(seed)); r.OK() {
						mu.Lock()
						flaky = append(flaky, seed)
						mu.Unlock()
					}
				}
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
	fmt.Printf("chaos: faults by kind: %s\n", sum.Kinds())
	fmt.Printf("chaos: %d component exits no fault explains, %d the named cases caused; %d lanes, %s in all\n", sum.Crashes, sum.Caused, len(infra), time.Since(t0).Round(time.Second))
	for _, x := range sum.Exits {
		fmt.Printf("chaos: exit: %s\n", x)
	}
	fmt.Println(sum)
	if len(flaky) > 0 {
		slices.Sort(flaky)
		fmt.Printf("chaos: failed once and passed when run again: seeds %v (their first failures are printed above; make chaos SEED=N replays one)\n", flaky)
		t.Logf("seeds %v failed once and passed when run again", flaky)
	}
	for _, r := range sum.Failed {
		t.Errorf("seed %d: %d violations (replay with make chaos SEED=%d)", r.Schedule.Seed, len(r.Violations), r.Schedule.Seed)
	}
}
