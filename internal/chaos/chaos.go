// Package chaos proves the pipeline's promise under faults, the way Jepsen
// would: it runs the real components (the Temporal worker with the
// emulation, the streamer, the recommender, the sink, the image collector
// and the product API) as separate shopstream processes against a
// three-broker kfake cluster with transactions, a real PostgreSQL and the
// Temporal dev server, plays seeded schedules of faults and user
// operations at random times, lets everything settle, and checks every
// topic and table against an oracle derived from the emulation's seed and
// the inputs the schedule recorded: nothing lost, nothing twice, no
// aborted data read.
//
// The faults: SIGKILL and SIGSTOP/SIGCONT of any component, two at once;
// request-level faults on the brokers (delayed or unanswered EndTxn,
// TxnOffsetCommit, Produce, Fetch, Heartbeat, JoinGroup, SyncGroup);
// partition leader and coordinator
// moves; PostgreSQL and Temporal restarts; filter changes, searches, API
// posts and deletes, and records that are no product at all, meanwhile.
// Named cases: a commit request delayed past the transaction timeout, a
// cooperative rebalance in the middle of transactions, a zombie resuming
// after its replacement fenced it, the sink killed between its COPY and
// its commit.
//
// The harness cannot cut or slow a component's network link: this
// machine's kernel has no netem queueing discipline (nor tbf, nor tc
// actions), so the network faults are the brokers' request faults instead
// (a request answered never is what a partition looks like to a client,
// and a delayed answer what a slow link does), and SIGSTOP stands in for a
// component cut off entirely.
package chaos

import (
	"fmt"
	"sort"
	"strings"
)

// Summary adds up schedules.
type Summary struct {
	Schedules, Faults, Lost, Duplicated, Aborted int
	ByKind                                       map[string]int
	Failed                                       []Result
	// Crashes are the exits no fault explains, Caused the ones the named
	// cases are meant to cause.
	Crashes, Caused int
	// Exits lists the Crashes, seed by seed.
	Exits []string
	// Idle counts the delays and drops that took no request.
	Idle int
}

// Add counts one schedule.
func (s *Summary) Add(r Result) {
	if s.ByKind == nil {
		s.ByKind = map[string]int{}
	}
	s.Schedules++
	for k, n := range r.Schedule.Faults() {
		s.Faults += n
		s.ByKind[k] += n
	}
	s.Lost += r.Lost
	s.Duplicated += r.Duplicated
	s.Aborted += r.AbortedReads
	s.Crashes += len(r.Crashes)
	s.Caused += len(r.Caused)
	s.Idle += r.Stats["idle faults"]
	for _, c := range r.Crashes {
		s.Exits = append(s.Exits, fmt.Sprintf("seed %d: %s", r.Schedule.Seed, c))
	}
	if !r.OK() {
		s.Failed = append(s.Failed, r)
	}
}

// String is the last line of a run.
func (s Summary) String() string {
	return fmt.Sprintf("chaos: %d schedules, %d faults, %d lost, %d duplicated, %d aborted reads",
		s.Schedules, s.Faults, s.Lost, s.Duplicated, s.Aborted)
}

// Kinds says how many faults of each kind were injected.
func (s Summary) Kinds() string {
	var kinds []string
	for k := range s.ByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&b, "%s %d, ", k, s.ByKind[k])
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// Line is one schedule's line.
func Line(r Result) string {
	verdict := "ok"
	if !r.OK() {
		verdict = fmt.Sprintf("FAIL (%d violations)", len(r.Violations))
	}
	var faults []string
	for _, e := range r.Schedule.Events {
		if e.fault() {
			faults = append(faults, e.Kind)
		}
	}
	extra := ""
	if n := r.Stats["txn timeouts"]; n > 0 {
		extra += fmt.Sprintf(", %d transactions timed out", n)
	}
	if n := r.Stats["evictions"]; n > 0 {
		extra += fmt.Sprintf(", %d dead members evicted", n)
	}
	if n := len(r.Caused); n > 0 {
		extra += fmt.Sprintf(", %d exits the case caused", n)
	}
	return fmt.Sprintf("seed %4d %-26s %d products, %d records, faults [%s], %d lost, %d duplicated, %d aborted reads, %d restarts, %d crashes%s, %.1fs: %s",
		r.Schedule.Seed, caseName(r.Schedule.Case), r.Schedule.Products, r.Stats["records"], strings.Join(faults, " "),
		r.Lost, r.Duplicated, r.AbortedReads, r.Stats["starts"]-len(Components()), len(r.Crashes), extra, r.Took.Seconds(), verdict)
}

// Phases says how long each phase of a schedule took.
func Phases(r Result) string {
	var b strings.Builder
	for _, p := range []string{"set-up", "play", "converge", "emulation", "last searches", "check", "stop"} {
		fmt.Fprintf(&b, "%s %.1fs ", p, float64(r.Stats["ms "+p])/1000)
	}
	return strings.TrimSpace(b.String())
}

// Report is what a failed schedule prints: its seed, its schedule, and
// every violation.
func Report(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d failed; replay it with: make chaos SEED=%d\n%s", r.Schedule.Seed, r.Schedule.Seed, r.Schedule)
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	for _, c := range r.Crashes {
		fmt.Fprintf(&b, "  (crash: %s)\n", c)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  (note: %s)\n", n)
	}
	return b.String()
}
