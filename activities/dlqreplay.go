package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/dlqreplay"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/txnmarker"
	"github.com/shopstream/shopstream/workflows"
)

// Replay implements the ReplayDeadLetters workflow's activities over
// package dlqreplay (which letters go back) and package txnmarker (each
// range's transaction happens once). A range's transaction holds the
// letters sent back, their ledger entries and the range's marker.
type Replay struct {
	rp        *dlqreplay.Replayer
	producers *txnmarker.Producers
	replayed  *prometheus.CounterVec

	// beforeCommit runs once a range's records are in Kafka, before the
	// commit; an error from it is the activity's (tests stall it there).
	beforeCommit func(in workflows.ReplayRangeInput) error
}

// ReplayOptions configure the activities.
type ReplayOptions struct {
	Kafka *clients.Kafka
	Admin *kadm.Client
	// DLQ is the dead-letter topic, Ledger the replay ledger.
	DLQ, Ledger string
	// Changelogs are the source topics whose records are states of a key;
	// see dlqreplay.Options.
	Changelogs []string
	MaxReplays int
	Registerer prometheus.Registerer
}

// NewReplay builds the activities.
func NewReplay(o ReplayOptions) (*Replay, error) {
	rp, err := dlqreplay.New(dlqreplay.Options{Kafka: o.Kafka, DLQ: o.DLQ, Ledger: o.Ledger, Changelogs: o.Changelogs, MaxReplays: o.MaxReplays})
	if err != nil {
		return nil, err
	}
	f := telemetry.With(o.Registerer)
	replayed := f.NewCounterVec(prometheus.CounterOpts{
		Name: "shopstream_replay_records_total",
		Help: "Dead letters that `shopstream dlq replay` sent back to their source topic (committed), by source topic.",
	}, []string{"topic"})
	if err := f.Err(); err != nil {
		return nil, err
	}
	return &Replay{rp: rp, producers: txnmarker.New(o.Kafka, o.Admin, ProducerOpts()...), replayed: replayed}, nil
}

// ReplayPlan reads the dead-letter topic and the ledger and says which
// letters go back, in which ranges.
func (r *Replay) ReplayPlan(ctx context.Context, in workflows.ReplayPlanInput) (workflows.ReplayPlan, error) {
	sel := dlqreplay.Selection(in.Selection)
	if err := sel.Validate(); err != nil {
		return workflows.ReplayPlan{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	stop := heartbeat(ctx, func() any { return "planning" })
	defer stop()
	p, err := r.rp.Plan(ctx, sel, in.Limit, cmp.Or(in.RangeLetters, workflows.DefaultReplayRangeLetters))
	if err != nil {
		return workflows.ReplayPlan{}, err
	}
	out := workflows.ReplayPlan{DLQ: r.rp.DLQ(), MaxReplays: r.rp.MaxReplays(), Verdicts: p.Counts()}
	for _, rg := range p.Ranges {
		out.Ranges = append(out.Ranges, workflows.ReplayRange(rg))
	}
	return out, nil
}

// ReplayRange sends one range's letters back in one transaction, or
// reports the commit of an earlier attempt.
func (r *Replay) ReplayRange(ctx context.Context, in workflows.ReplayRangeInput) (workflows.ReplayRangeResult, error) {
	rg := in.Range
	what := fmt.Sprintf("range %d of %s partition %d (offsets %d to %d)", in.Index, r.rp.DLQ(), rg.Partition, rg.Start, rg.End-1)
	stop := heartbeat(ctx, func() any { return what })
	defer stop()
	key := txnmarker.Key{TxnID: rangeTxnID(txnmarker.FamilyDLQReplay, in.WorkflowID, rg.Partition), Topic: r.rp.Ledger()}
	marker := rangeMarker(txnmarker.FamilyDLQReplay, in.WorkflowID, rg.Partition, in.Index)
	p, err := r.producers.Begin(ctx, key, marker, 5*time.Minute)
	if err != nil {
		return workflows.ReplayRangeResult{}, fmt.Errorf("%s: %w", what, err)
	}
	keep := false
	defer func() { r.producers.Release(p, keep) }()
	if marks, found, err := r.producers.Committed(ctx, marker); err != nil || found {
		p.AbortMarkerOnly()
		if err != nil {
			return workflows.ReplayRangeResult{}, fmt.Errorf("%s: %w", what, err)
		}
		var res workflows.ReplayRangeResult
		for _, m := range marks {
			if err := json.Unmarshal([]byte(m.Metadata), &res); err != nil {
				return res, fmt.Errorf("%s: read its marker: %w", what, err)
			}
		}
		res.AlreadyCommitted = true
		activity.GetLogger(ctx).Info("range already replayed by an earlier attempt", "range", what, "replayed", res.Replayed)
		return res, nil
	}
	letters, _, err := r.rp.Letters(ctx, dlqreplay.Selection(in.Selection), dlqreplay.Range(rg))
	if err != nil {
		p.Abort()
		return workflows.ReplayRangeResult{}, fmt.Errorf("%s: %w", what, err)
	}
	res := workflows.ReplayRangeResult{ByTopic: map[string]int64{}}
	var mu sync.Mutex
	var produceErr error
	promise := func(_ *kgo.Record, err error) {
		mu.Lock()
		produceErr = cmp.Or(produceErr, err)
		mu.Unlock()
	}
	cl := p.Client()
	for _, d := range letters {
		cl.Produce(ctx, d.Replay(), promise)
		cl.Produce(ctx, r.rp.LedgerRecord(d, in.WorkflowID), promise)
		res.Replayed++
		res.ByTopic[d.SourceTopic]++
	}
	err = cl.Flush(ctx)
	mu.Lock()
	err = cmp.Or(err, produceErr)
	mu.Unlock()
	if err == nil && r.beforeCommit != nil {
		err = r.beforeCommit(in)
	}
	if err != nil {
		p.Abort()
		return workflows.ReplayRangeResult{}, fmt.Errorf("%s: send %d letters back: %w", what, len(letters), err)
	}
	meta, _ := json.Marshal(workflows.ReplayRangeResult{Replayed: res.Replayed, ByTopic: res.ByTopic}) // counts always encode
	mark := txnmarker.Mark{Topic: r.rp.DLQ(), Partition: rg.Partition, Offset: rg.End, Metadata: string(meta)}
	if err := p.Commit(ctx, []txnmarker.Mark{mark}, 2*len(letters)); err != nil {
		return workflows.ReplayRangeResult{}, fmt.Errorf("%s: %w", what, err)
	}
	keep = true
	for t, n := range res.ByTopic {
		r.replayed.WithLabelValues(t).Add(float64(n))
	}
	return res, nil
}

// ReplayCleanup deletes the markers of ranges the workflow has recorded as
// done.
func (r *Replay) ReplayCleanup(ctx context.Context, in workflows.ReplayCleanupInput) (workflows.ReplayCleanupResult, error) {
	n, err := deleteRangeMarkers(ctx, r.producers, txnmarker.FamilyDLQReplay, in.WorkflowID, in.Ranges)
	return workflows.ReplayCleanupResult{Deleted: n}, err
}

// closeProducers closes the producers the worker keeps.
func (r *Replay) closeProducers() { r.producers.Close() }
