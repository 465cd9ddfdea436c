package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/acls"
)

// Components are the processes a schedule runs, by name: the names the
// components have everywhere (acls names each one's principal after them),
// defined there once.
const (
	Worker      = acls.Worker
	Streamer    = acls.Streamer
	Recommender = acls.Recommender
	Sink        = acls.Sink
	Collector   = acls.Collector
	API         = acls.API
)

// Components lists them in start order.
func Components() []string { return []string{Worker, Streamer, Recommender, Sink, Collector, API} }

// Fault kinds. Each Event of one of these kinds counts as one fault.
const (
	KindKill            = "kill"            // SIGKILL, restarted after For
	KindKillTwo         = "kill-two"        // SIGKILL of two components at once
	KindPause           = "pause"           // SIGSTOP for For, then SIGCONT
	KindDelay           = "delay"           // kfake delays requests of Key by For, during Window
	KindDrop            = "drop"            // kfake answers Count requests of Key never
	KindShuffleLeaders  = "shuffle-leaders" // ShufflePartitionLeaders
	KindMovePartition   = "move-partition"  // MoveTopicPartition of one products partition
	KindRehashCoord     = "rehash-coordinators"
	KindPostgresRestart = "postgres-restart" // down for For
	KindTemporalRestart = "temporal-restart" // down for For
	KindCommitPastTxnTO = "commit-past-txn-timeout"
	KindRebalanceMidTxn = "rebalance-mid-txn"
	KindZombie          = "zombie"
	KindSinkCopyKill    = "sink-killed-before-commit"
)

// Operation kinds: what users do while the faults happen.
const (
	OpFilter = "filter-set"
	OpSearch = "search"
	OpPost   = "api-post"
	OpDelete = "api-delete"
	OpBad    = "bad-record"
)

// Event is one thing a schedule does at a time after its start.
type Event struct {
	At     time.Duration
	Kind   string
	Target string        // a component, or the second of two
	Other  string        // the first of two components (KindKillTwo)
	Key    kmsg.Key      // the request of KindDelay and KindDrop
	For    time.Duration // how long a fault lasts
	Count  int           // requests dropped
	Arg    string        // the filter substring, the search's user, …
	N      int           // which product a search names, post or delete
}

func (e Event) fault() bool { return !isOp(e.Kind) }

func isOp(kind string) bool {
	switch kind {
	case OpFilter, OpSearch, OpPost, OpDelete, OpBad:
		return true
	}
	return false
}

func (e Event) String() string {
	at := fmt.Sprintf("%5.2fs", e.At.Seconds())
	switch e.Kind {
	case KindKill, KindPause, KindPostgresRestart, KindTemporalRestart:
		return fmt.Sprintf("%s %s %s for %s", at, e.Kind, e.Target, e.For)
	case KindKillTwo:
		return fmt.Sprintf("%s %s %s+%s for %s", at, e.Kind, e.Other, e.Target, e.For)
	case KindDelay:
		return fmt.Sprintf("%s %s %s by %s for %s", at, e.Kind, e.Key.Name(), e.For, e.For*2)
	case KindDrop:
		return fmt.Sprintf("%s %s %d %s of %s", at, e.Kind, e.Count, e.Key.Name(), e.Target)
	case KindMovePartition:
		return fmt.Sprintf("%s %s products/%d to broker %d", at, e.Kind, e.N, e.Count)
	case OpFilter:
		return fmt.Sprintf("%s %s %q", at, e.Kind, e.Arg)
	case OpSearch:
		return fmt.Sprintf("%s %s %s for product %d", at, e.Kind, e.Arg, e.N)
	case OpPost, OpDelete, OpBad:
		return fmt.Sprintf("%s %s #%d", at, e.Kind, e.N)
	}
	if e.Target != "" {
		return fmt.Sprintf("%s %s %s", at, e.Kind, e.Target)
	}
	return fmt.Sprintf("%s %s", at, e.Kind)
}

// Schedule is one seeded run: the load, and the faults and operations at
// their times. The same seed always makes the same schedule.
type Schedule struct {
	Seed int64
	// Case is the named case the schedule is built around, "" for one of
	// random faults only.
	Case string
	// Products are emulated at Rate a second, in batches of BatchSize
	// (each batch one transaction), Concurrency at once.
	Products    int64
	Rate        float64
	BatchSize   int64
	Concurrency int
	Shops       int
	Partitions  int32
	Events      []Event
}

// Faults counts the schedule's faults by kind.
func (s Schedule) Faults() map[string]int {
	out := map[string]int{}
	for _, e := range s.Events {
		if e.fault() {
			out[e.Kind]++
		}
	}
	return out
}

func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule seed=%d case=%s: %d products at %.0f/s in batches of %d (%d at once), %d partitions\n",
		s.Seed, caseName(s.Case), s.Products, s.Rate, s.BatchSize, s.Concurrency, s.Partitions)
	for _, e := range s.Events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

func caseName(c string) string {
	if c == "" {
		return "random"
	}
	return c
}

// NamedCases are the cases some schedules are built around: a commit
// request delayed past the transaction timeout (as in Jepsen's analysis of
// Bufstream), a cooperative rebalance in the middle of a transaction, a
// zombie instance resuming after its replacement fenced it, and the sink
// killed between its COPY and its commit.
func NamedCases() []string {
	return []string{KindCommitPastTxnTO, KindRebalanceMidTxn, KindZombie, KindSinkCopyKill}
}

// dropTarget picks a component that sends requests of key: a transactional
// producer for the transaction requests, a group member for the group ones,
// a consumer for Fetch.
func dropTarget(key kmsg.Key, rng *rand.Rand) string {
	var of []string
	switch key {
	case kmsg.EndTxn, kmsg.TxnOffsetCommit:
		of = []string{Streamer, Recommender, Collector, Worker}
	case kmsg.Heartbeat, kmsg.JoinGroup, kmsg.SyncGroup:
		of = []string{Streamer, Recommender, Collector, Sink}
	case kmsg.Fetch:
		// The API consumes nothing.
		of = []string{Worker, Streamer, Recommender, Sink, Collector}
	default:
		of = Components()
	}
	return of[rng.IntN(len(of))]
}

// Filters are the substrings schedules set; names of emulated products
// contain some of them ("Samsung smartphone Ultra").
var filters = []string{"phone", "pro", "ultra", "a", "max", "book", ""}

// loadWindow is when faults and operations happen after the start.
const loadWindow = 3500 * time.Millisecond

// NewSchedule makes the schedule of seed. One seed in ten builds on each
// named case in turn (seeds ending in 1 to 4); the others combine random
// faults only.
func NewSchedule(seed int64) Schedule {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	s := Schedule{
		Seed:        seed,
		Products:    int64(300 + rng.IntN(400)),
		Rate:        float64(250 + rng.IntN(200)),
		BatchSize:   int64(50 + rng.IntN(100)),
		Concurrency: 1 + rng.IntN(3),
		Shops:       3 + rng.IntN(5),
		Partitions:  int32(2 + rng.IntN(3)),
	}
	if i := int(seed % 10); i >= 1 && i <= len(NamedCases()) {
		s.Case = NamedCases()[i-1]
	}
	at := func(from, to time.Duration) time.Duration {
		return from + time.Duration(rng.Int64N(int64(to-from)))
	}
	dur := func(from, to time.Duration) time.Duration {
		return (from + time.Duration(rng.Int64N(int64(to-from)))).Round(10 * time.Millisecond)
	}
	add := func(e Event) { s.Events = append(s.Events, e) }

	// What users do.
	add(Event{At: 0, Kind: OpFilter, Arg: filters[rng.IntN(len(filters)-1)]})
	for range 1 + rng.IntN(2) {
		add(Event{At: at(500*time.Millisecond, loadWindow), Kind: OpFilter, Arg: filters[rng.IntN(len(filters))]})
	}
	for i := range 3 + rng.IntN(4) {
		add(Event{At: at(200*time.Millisecond, loadWindow), Kind: OpSearch, Arg: fmt.Sprintf("user-%d", i%3), N: rng.IntN(int(s.Products))})
	}
	posts := 3 + rng.IntN(4)
	postAt := make([]time.Duration, posts)
	for i := range posts {
		postAt[i] = at(0, 2*time.Second)
		add(Event{At: postAt[i], Kind: OpPost, N: i})
	}
	// A delete finds a product once its images are collected: some time
	// after its post.
	for i := range 1 + rng.IntN(2) {
		add(Event{At: postAt[i] + at(time.Second, 1500*time.Millisecond), Kind: OpDelete, N: i})
	}
	for i := range 1 + rng.IntN(2) {
		add(Event{At: at(0, loadWindow), Kind: OpBad, N: i})
	}

	// The named case.
	switch s.Case {
	case KindCommitPastTxnTO:
		add(Event{At: at(500*time.Millisecond, 2*time.Second), Kind: KindCommitPastTxnTO, Target: Streamer, For: 3 * time.Second})
	case KindRebalanceMidTxn:
		add(Event{At: at(500*time.Millisecond, 2*time.Second), Kind: KindRebalanceMidTxn, Target: Streamer, For: dur(1500*time.Millisecond, 2500*time.Millisecond)})
	case KindZombie:
		add(Event{At: at(500*time.Millisecond, 2*time.Second), Kind: KindZombie, Target: Streamer, For: dur(1500*time.Millisecond, 2500*time.Millisecond)})
	case KindSinkCopyKill:
		add(Event{At: at(500*time.Millisecond, 2*time.Second), Kind: KindSinkCopyKill, Target: Sink, For: 300 * time.Millisecond})
	}

	// Random faults, two to four.
	comps := Components()
	for range 2 + rng.IntN(3) {
		e := Event{At: at(300*time.Millisecond, loadWindow), For: dur(300*time.Millisecond, 2*time.Second)}
		switch k := rng.IntN(12); k {
		case 0, 1:
			e.Kind, e.Target = KindKill, comps[rng.IntN(len(comps))]
		case 2:
			e.Kind = KindKillTwo
			i, j := rng.IntN(len(comps)), rng.IntN(len(comps)-1)
			if j >= i {
				j++
			}
			e.Other, e.Target = comps[i], comps[j]
		case 3, 4:
			e.Kind, e.Target = KindPause, comps[rng.IntN(len(comps))]
		case 5, 6:
			e.Kind, e.Key = KindDelay, FaultKeys[rng.IntN(len(FaultKeys))]
			e.For = dur(100*time.Millisecond, 800*time.Millisecond)
		case 7:
			e.Kind, e.Key, e.Count = KindDrop, FaultKeys[rng.IntN(len(FaultKeys))], 1+rng.IntN(2)
			e.Target = dropTarget(e.Key, rng)
		case 8:
			e.Kind = []string{KindShuffleLeaders, KindRehashCoord}[rng.IntN(2)]
		case 9:
			e.Kind, e.N, e.Count = KindMovePartition, rng.IntN(int(s.Partitions)), rng.IntN(Brokers)
		case 10:
			e.Kind, e.Target = KindPostgresRestart, "postgres"
		default:
			e.Kind, e.Target = KindTemporalRestart, "temporal"
		}
		add(e)
	}
	sort.SliceStable(s.Events, func(i, j int) bool { return s.Events[i].At < s.Events[j].At })
	return s
}
