package activities

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/backfill"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/txnmarker"
	"github.com/shopstream/shopstream/workflows"
)

// Backfill implements the Backfill workflow's activities over package
// backfill (which decides what to write) and package txnmarker (which makes
// each range's transaction happen once). A partition's ranges run in order
// on the partition's transactional id, so the worker keeps its producer
// from one range to the next.
type Backfill struct {
	bf        *backfill.Backfill
	producers *txnmarker.Producers
	written   prometheus.Counter
	now       func() time.Time

	// beforeCommit runs once a range's records are in Kafka, before the
	// check for newer records and the commit; an error from it is the
	// activity's. Tests stall an attempt there, or update a product.
	beforeCommit func(in workflows.BackfillRangeInput) error
}

// BackfillOptions configure the activities.
type BackfillOptions struct {
	Kafka *clients.Kafka
	Admin *kadm.Client
	Serde *records.Serde
	// Topics name the product (read), filtered (written), filter and
	// applied-filter topics.
	Topics records.Topics
	// StreamerGroup is the live streamer's group (its default when empty).
	StreamerGroup string
	Registerer    prometheus.Registerer
}

// NewBackfill builds the activities.
func NewBackfill(o BackfillOptions) (*Backfill, error) {
	bf, err := backfill.New(backfill.Options{Kafka: o.Kafka, Serde: o.Serde, Topics: o.Topics, StreamerGroup: o.StreamerGroup})
	if err != nil {
		return nil, err
	}
	f := telemetry.With(o.Registerer)
	written := f.NewCounter(prometheus.CounterOpts{
		Name: "shopstream_filter_backfill_records_total",
		Help: "Products that backfill ranges wrote to the filtered topic (committed).",
	})
	if err := f.Err(); err != nil {
		return nil, err
	}
	return &Backfill{bf: bf, producers: txnmarker.New(o.Kafka, o.Admin, ProducerOpts()...), written: written, now: time.Now}, nil
}

// BackfillPrepare reads the filter in force and plans the backfill, waiting
// (heartbeating what it waits for) until the live streamer applies that
// filter and has passed the plan's end.
func (b *Backfill) BackfillPrepare(ctx context.Context, in workflows.BackfillPrepareInput) (workflows.BackfillPlan, error) {
	t0 := b.now()
	st, err := b.bf.CurrentFilter(ctx)
	if err != nil {
		return workflows.BackfillPlan{}, err
	}
	var status atomic.Value
	status.Store("planning")
	stop := heartbeat(ctx, status.Load)
	defer stop()
	parts, err := b.bf.Plan(ctx, st.Version, in.From, in.To, func(s string) { status.Store(s) })
	if err != nil {
		return workflows.BackfillPlan{}, err
	}
	plan := workflows.BackfillPlan{
		Filter: workflows.FilterState{Version: st.Version, Substring: st.Substring, CaseSensitive: st.CaseSensitive, SetAt: st.SetAt, SetBy: st.SetBy},
		Source: b.bf.Source(), Target: b.bf.Target(), Waited: b.now().Sub(t0),
	}
	for _, p := range parts {
		plan.Partitions = append(plan.Partitions, workflows.BackfillPartition{Partition: p.Partition, Start: p.Start, End: p.End})
	}
	return plan, nil
}

// BackfillRange backfills one range in one transaction, or reports the
// commit of an earlier attempt.
func (b *Backfill) BackfillRange(ctx context.Context, in workflows.BackfillRangeInput) (workflows.BackfillRangeResult, error) {
	res := workflows.BackfillRangeResult{Partition: in.Partition, Range: in.Range}
	if in.WorkflowID == "" || in.End <= in.Start {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("range %d of partition %d: bad input (offsets %d to %d, workflow %q)",
			in.Range, in.Partition, in.Start, in.End, in.WorkflowID), workflows.ErrTypeInvalidInput, nil)
	}
	what := fmt.Sprintf("range %d of partition %d (offsets %d to %d)", in.Range, in.Partition, in.Start, in.End-1)
	stop := heartbeat(ctx, func() any { return what })
	defer stop()
	st, err := b.bf.CurrentFilter(ctx)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	if st.Version != in.Filter.Version {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("the filter in force is v%d now", st.Version), workflows.ErrTypeFilterChanged, nil)
	}
	f := records.FilterState{Version: in.Filter.Version, Substring: in.Filter.Substring, CaseSensitive: in.Filter.CaseSensitive}
	sel, err := b.bf.Select(ctx, backfill.Partition{Partition: in.Partition, Start: in.Start, End: in.End}, f, in.BackfillID)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	key := txnmarker.Key{TxnID: rangeTxnID(txnmarker.FamilyBackfill, in.WorkflowID, in.Partition), Topic: b.bf.Target()}
	marker := rangeMarker(txnmarker.FamilyBackfill, in.WorkflowID, in.Partition, in.Range)
	for attempt := 0; ; attempt++ {
		p, err := b.producers.Begin(ctx, key, marker, 5*time.Minute)
		if err != nil {
			return res, fmt.Errorf("%s: %w", what, err)
		}
		marks, found, err := b.producers.Committed(ctx, marker)
		if err != nil || found {
			p.AbortMarkerOnly()
			b.producers.Release(p, false)
			if err != nil {
				return res, fmt.Errorf("%s: %w", what, err)
			}
			return b.recovered(ctx, res, marks)
		}
		superseded, err := b.write(ctx, p, in, sel)
		if err != nil {
			b.producers.Release(p, false)
			return res, fmt.Errorf("%s: %w", what, err)
		}
		if len(superseded) > 0 {
			// Newer records of these products came while the range was
			// written: leave them to those, and write the rest again.
			p.Abort()
			b.producers.Release(p, true)
			activity.GetLogger(ctx).Info("products updated during the backfill; writing the range again without them", "range", what, "products", len(superseded), "attempt", attempt)
			sel.Without(superseded)
			continue
		}
		b.producers.Release(p, true)
		b.written.Add(float64(sel.Counts.Forwarded))
		res.Counts = sel.Counts
		return res, nil
	}
}

// write produces the selection in p's transaction and, if no product got a
// newer record meanwhile, commits it with the range's marker; otherwise it
// returns those products, with the transaction still open.
func (b *Backfill) write(ctx context.Context, p *txnmarker.Producer, in workflows.BackfillRangeInput, sel *backfill.Selection) ([]string, error) {
	cl := p.Client()
	var mu sync.Mutex
	var produceErr error
	for _, r := range sel.Records {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			mu.Lock()
			produceErr = cmp.Or(produceErr, err)
			mu.Unlock()
		})
	}
	err := cl.Flush(ctx)
	mu.Lock()
	err = cmp.Or(err, produceErr)
	mu.Unlock()
	if err != nil {
		p.Abort()
		return nil, fmt.Errorf("produce %d records to %s: %w", len(sel.Records), b.bf.Target(), err)
	}
	if b.beforeCommit != nil {
		if err := b.beforeCommit(in); err != nil {
			p.Abort()
			return nil, err
		}
	}
	superseded, err := b.bf.Superseded(ctx, sel)
	if err != nil {
		p.Abort()
		return nil, err
	}
	if len(superseded) > 0 {
		return superseded, nil
	}
	mark := txnmarker.Mark{Topic: b.bf.Source(), Partition: in.Partition, Offset: in.End, Metadata: backfill.EncodeCounts(sel.Counts)}
	return nil, p.Commit(ctx, []txnmarker.Mark{mark}, len(sel.Records))
}

// recovered reports the commit of an earlier attempt from its marker.
func (b *Backfill) recovered(ctx context.Context, res workflows.BackfillRangeResult, marks []txnmarker.Mark) (workflows.BackfillRangeResult, error) {
	for _, m := range marks {
		c, err := backfill.DecodeCounts(m.Metadata)
		if err != nil {
			return res, fmt.Errorf("read the marker of range %d of partition %d: %w", res.Range, res.Partition, err)
		}
		res.Counts, res.AlreadyCommitted = c, true
	}
	activity.GetLogger(ctx).Info("range already committed by an earlier attempt", "partition", res.Partition, "range", res.Range, "forwarded", res.Counts.Forwarded)
	return res, nil
}

// BackfillCleanup deletes the markers of ranges the workflow has recorded
// as done.
func (b *Backfill) BackfillCleanup(ctx context.Context, in workflows.BackfillCleanupInput) (workflows.BackfillCleanupResult, error) {
	n, err := deleteRangeMarkers(ctx, b.producers, txnmarker.FamilyBackfill, in.WorkflowID, in.Ranges)
	return workflows.BackfillCleanupResult{Deleted: n}, err
}

// rangeMarker is the marker group of one range of a partition: of a
// backfill (family backfill) or a replay.
func rangeMarker(family, workflowID string, partition int32, index int) string {
	return txnmarker.Group(family, workflowID, fmt.Sprintf("p%d-r%d", partition, index))
}

// rangeTxnID is the transactional id of a partition's lane: its ranges run
// in order on it.
func rangeTxnID(family, workflowID string, partition int32) string {
	return txnmarker.TransactionalID(family, workflowID, "p"+strconv.Itoa(int(partition)))
}

// deleteRangeMarkers deletes the markers of ranges a workflow has recorded
// as done.
func deleteRangeMarkers(ctx context.Context, ps *txnmarker.Producers, family, workflowID string, ranges []workflows.BackfillRangeID) (int, error) {
	groups := make([]string, 0, len(ranges))
	for _, r := range ranges {
		groups = append(groups, rangeMarker(family, workflowID, r.Partition, r.Range))
	}
	return ps.DeleteMarkers(ctx, groups)
}

// closeProducers closes the producers the worker keeps.
func (b *Backfill) closeProducers() { b.producers.Close() }
