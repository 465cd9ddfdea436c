package chaos

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The exits a schedule causes are told from the others by who exited, on
// what error, and whether a service was down when the process started.
func TestCausedExits(t *testing.T) {
	t0 := time.Now()
	down := []downWindow{
		{kind: KindPostgresRestart, from: t0, to: t0.Add(2 * time.Second)},
		{kind: KindTemporalRestart, from: t0.Add(time.Minute), to: t0.Add(time.Minute + time.Second)},
	}
	const pgRefused = "sink exited by itself (exit status 1): shopstream: migrate the database at 127.0.0.1:42979/c46: connect to apply migrations: dial tcp 127.0.0.1:42979: connect: connection refused"
	const noTemporal = "worker exited by itself (exit status 1): shopstream: cannot reach Temporal at 127.0.0.1:46547 (namespace default) within 3s"
	const txnState = "streamer exited by itself (exit status 1): shopstream: streamer: end a transaction of 159 records: INVALID_TXN_STATE: The producer attempted a transactional operation in an invalid state."
	const fenced = "streamer exited by itself (exit status 1): shopstream: streamer: end a transaction of 200 records: PRODUCER_FENCED: There is a newer producer with the same transactionalId which fences the current one."
	dropStreamerProduce := []Event{{Kind: KindDrop, Target: Streamer, Key: kmsg.Produce, Count: 1}}
	dropSinkFetch := []Event{{Kind: KindDrop, Target: Sink, Key: kmsg.Fetch, Count: 1}}
	for i, c := range []struct {
		caseKind, name string
		started, at    time.Duration // after t0
		text           string
		want           bool
		events         []Event
		timedOut       int // the component's transactions the brokers timed out
	}{
		// seed 27: a dropped Produce held the streamer's transaction past
		// its timeout; the brokers aborted it and fenced the producer.
		{"", Streamer, 0, 0, fenced, true, dropStreamerProduce, 1},
		{"", Streamer, 0, 0, fenced, false, dropStreamerProduce, 0}, // no timeout: unexplained
		{"", Streamer, 0, 0, fenced, false, dropSinkFetch, 1},       // its requests were not held
		{KindZombie, Streamer, 0, 0, txnState, true, nil, 0},
		{KindCommitPastTxnTO, Streamer, 0, 0, txnState, true, nil, 0},
		{"", Streamer, 0, 0, txnState, false, nil, 0},                     // no case fences it
		{KindZombie, Recommender, 0, 0, txnState, false, nil, 0},          // the case is about the streamer
		{"", Sink, time.Second, 4 * time.Second, pgRefused, true, nil, 0}, // started while PostgreSQL was down
		{"", Sink, -time.Second, time.Second, pgRefused, true, nil, 0},    // starting when it went down
		{"", Sink, -time.Minute, time.Second, pgRefused, false, nil, 0},   // was running: it should have waited
		{"", Sink, time.Second, 10 * time.Second, pgRefused, false, nil, 0},
		{"", Worker, time.Minute, time.Minute + 3*time.Second, noTemporal, true, nil, 0},
		{"", Worker, time.Second, 4 * time.Second, noTemporal, false, nil, 0}, // PostgreSQL, not Temporal, was down
	} {
		r := &run{s: Schedule{Case: c.caseKind, Events: c.events}, downs: down, dsn: "postgres://postgres@127.0.0.1:42979/c46?sslmode=disable",
			timedOut: map[string]int{c.name: c.timedOut}}
		x := exit{started: t0.Add(c.started), at: t0.Add(c.at), text: c.text}
		if got := r.causedExit(c.name, x); got != c.want {
			t.Errorf("#%d: causedExit(%s, %q) = %v, want %v", i, c.name, c.text, got, c.want)
		}
	}
}
