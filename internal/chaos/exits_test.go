package chaos

import (
	"testing"
	"time"
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
	for i, c := range []struct {
		caseKind, name string
		started, at    time.Duration // after t0
		text           string
		want           bool
	}{
		{KindZombie, Streamer, 0, 0, txnState, true},
		{KindCommitPastTxnTO, Streamer, 0, 0, txnState, true},
		{"", Streamer, 0, 0, txnState, false},                     // no case fences it
		{KindZombie, Recommender, 0, 0, txnState, false},          // the case is about the streamer
		{"", Sink, time.Second, 4 * time.Second, pgRefused, true}, // started while PostgreSQL was down
		{"", Sink, -time.Second, time.Second, pgRefused, true},    // starting when it went down
		{"", Sink, -time.Minute, time.Second, pgRefused, false},   // was running: it should have waited
		{"", Sink, time.Second, 10 * time.Second, pgRefused, false},
		{"", Worker, time.Minute, time.Minute + 3*time.Second, noTemporal, true},
		{"", Worker, time.Second, 4 * time.Second, noTemporal, false}, // PostgreSQL, not Temporal, was down
	} {
		r := &run{s: Schedule{Case: c.caseKind}, downs: down, dsn: "postgres://postgres@127.0.0.1:42979/c46?sslmode=disable"}
		x := exit{started: t0.Add(c.started), at: t0.Add(c.at), text: c.text}
		if got := r.causedExit(c.name, x); got != c.want {
			t.Errorf("#%d: causedExit(%s, %q) = %v, want %v", i, c.name, c.text, got, c.want)
		}
	}
}
