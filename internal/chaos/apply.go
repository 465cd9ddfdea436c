package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/clients"
)

// fault applies one fault and returns once it has healed.
func (r *run) fault(ctx context.Context, e Event) {
	switch e.Kind {
	case KindKill:
		r.proc(e.Target).kill(e.For)
		time.Sleep(e.For)
	case KindKillTwo:
		r.proc(e.Other).kill(e.For)
		r.proc(e.Target).kill(e.For)
		time.Sleep(e.For)
	case KindPause:
		p := r.proc(e.Target)
		p.pause()
		time.Sleep(e.For)
		p.resume()
	case KindDelay:
		delay := &rule{Key: e.Key, Delay: e.For, Until: time.Now().Add(2 * e.For), Left: -1}
		r.in.faults.add(delay)
		time.Sleep(2 * e.For)
		r.tookRequests(e, delay)
	case KindDrop:
		drop := &rule{Key: e.Key, Drop: true, Until: time.Now().Add(loadWindow), Left: e.Count, Client: clients.ClientID(e.Target)}
		r.in.faults.add(drop)
		// The fault lasts until its requests are dropped or its window
		// closes; events.log says how many it took.
		for !r.in.faults.spent(drop) && time.Now().Before(drop.Until) {
			time.Sleep(50 * time.Millisecond)
		}
		r.tookRequests(e, drop)
	case KindShuffleLeaders:
		t := r.topics
		if err := r.in.moveLeaders(ctx, -1, -1, t.Products, t.Filtered, t.CompleteProducts, t.Find, t.Recommendations, t.Filter, t.FilterApplied); err != nil {
			r.problem("shuffle the partition leaders: %v", err)
		}
	case KindRehashCoord:
		r.in.Kafka.RehashCoordinators()
	case KindMovePartition:
		if err := r.in.moveLeaders(ctx, int32(e.N), int32(e.Count), r.topics.Products); err != nil {
			r.problem("move %s/%d to broker %d: %v", r.topics.Products, e.N, e.Count, err)
		}
	case KindPostgresRestart:
		from := time.Now()
		if err := r.in.RestartPostgres(ctx, e.For); err != nil {
			r.problem("restart PostgreSQL: %v", err)
		}
		r.wasDown(KindPostgresRestart, from)
	case KindTemporalRestart:
		from := time.Now()
		if err := r.in.RestartTemporal(ctx, e.For); err != nil {
			r.problem("restart Temporal: %v", err)
		}
		r.wasDown(KindTemporalRestart, from)
	case KindCommitPastTxnTO:
		r.commitPastTimeout(e)
	case KindRebalanceMidTxn:
		r.rebalanceMidTxn(e)
	case KindZombie:
		r.zombie(e)
	case KindSinkCopyKill:
		r.sinkCopyKill(ctx, e)
	}
}

// tookRequests notes in events.log how many requests a delay or drop took,
// and counts the ones that took none: the component sent no such request
// in the fault's window (a JoinGroup when no rebalance happens, say).
func (r *run) tookRequests(e Event, rl *rule) {
	n := rl.hits.Load()
	r.event("%s: took %d requests", e, n)
	if n == 0 {
		r.mu.Lock()
		r.idle++
		r.mu.Unlock()
	}
}

// commitPastTimeout is the case Jepsen found in Bufstream: the streamer's
// commit (EndTxn) reaches the coordinator after the transaction timed out
// and was aborted. The brokers grant the streamer's transactions a timeout
// of CommitPastTimeoutTxn (set before the schedule starts, see setUp);
// the streamer's next commit is held for e.For, past that timeout. The late
// commit must fail, and the transaction's records must stay aborted.
func (r *run) commitPastTimeout(e Event) {
	id := r.prefix + "-streamer"
	hold := &rule{Key: kmsg.EndTxn, Delay: e.For, Until: time.Now().Add(2 * loadWindow), Left: 1,
		Match: func(req kmsg.Request) bool {
			end, ok := req.(*kmsg.EndTxnRequest)
			return ok && end.Commit && strings.HasPrefix(end.TransactionalID, id)
		}}
	r.in.faults.add(hold)
	deadline := time.Now().Add(2 * loadWindow)
	for hold.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if hold.hits.Load() == 0 {
		r.note("%s: the streamer committed nothing to hold", e)
		return
	}
	r.event("holding a commit of the streamer for %s", e.For)
	time.Sleep(e.For)
}

// CommitPastTimeoutTxn is the transaction timeout the brokers grant the
// streamer in the commit-past-txn-timeout case.
const CommitPastTimeoutTxn = 1500 * time.Millisecond

// rebalanceMidTxn adds a second streamer instance while the first is in
// the middle of transactions, with its JoinGroup and SyncGroup slowed so
// that the cooperative rebalance spans several of them, and stops it again
// after e.For (another rebalance).
func (r *run) rebalanceMidTxn(e Event) {
	r.in.faults.add(&rule{Key: kmsg.JoinGroup, Delay: 200 * time.Millisecond, Until: time.Now().Add(e.For + time.Second), Left: -1, Client: clients.ClientID(Streamer)})
	r.in.faults.add(&rule{Key: kmsg.SyncGroup, Delay: 200 * time.Millisecond, Until: time.Now().Add(e.For + time.Second), Left: -1, Client: clients.ClientID(Streamer)})
	p, err := r.spawnExtra(Streamer+"-1", r.streamerArgs(1)...)
	if err != nil {
		r.problem("start a second streamer: %v", err)
		return
	}
	time.Sleep(e.For)
	if err := p.stop(StopGrace); err != nil {
		r.problem("%v", err)
	}
}

// zombie stops the streamer (SIGSTOP), starts its replacement with the same
// transactional id, which fences it, lets the replacement work for e.For,
// then resumes the zombie: whatever it had in flight must fail, and
// nothing it does may be read. The zombie is then killed, as the
// orchestrator that started its replacement would.
func (r *run) zombie(e Event) {
	old := r.proc(Streamer)
	old.pause()
	args := r.streamerArgs(0)
	args[2] = r.prefix + "-s0-replacement" // another instance id, the same transactional id
	replacement, err := r.spawnExtra(Streamer+"-replacement", args...)
	if err != nil {
		r.problem("start the replacement streamer: %v", err)
		old.resume()
		return
	}
	time.Sleep(e.For)
	old.resume()
	time.Sleep(time.Second)
	// The zombie goes; the replacement takes its place.
	r.mu.Lock()
	r.procs[Streamer] = replacement
	for i, p := range r.extra {
		if p == replacement {
			r.extra[i] = old
		}
	}
	r.mu.Unlock()
	if err := old.stop(StopGrace); err != nil {
		r.problem("%v", err)
	}
}

// sinkCopyKill kills the sink while one of its transactions has written
// rows (the COPY into its staging table, the merge) and not committed:
// PostgreSQL shows its session "idle in transaction" or running a COPY or
// an INSERT.
func (r *run) sinkCopyKill(ctx context.Context, e Event) {
	conn, err := pgx.Connect(ctx, r.dsn)
	if err != nil {
		r.problem("watch the sink's sessions: %v", err)
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(loadWindow)
	for time.Now().Before(deadline) {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND xact_start IS NOT NULL
			AND (state = 'idle in transaction' OR query ILIKE 'copy%' OR query ILIKE '%insert%')`, r.prefix+"-sink").Scan(&n)
		if err != nil {
			r.problem("watch the sink's sessions: %v", err)
			return
		}
		if n > 0 {
			r.event("the sink is inside a transaction: kill it")
			r.proc(Sink).kill(e.For)
			time.Sleep(e.For)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.note("%s: the sink was never seen inside a transaction, so it was not killed", fmt.Sprint(e))
}
