package activities

import (
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

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/internal/txnmarker"
	"github.com/shopstream/shopstream/workflows"
)

// Emulate implements the EmulateShop workflow's activities.
//
// Exactly once: a batch produces its records in one Kafka transaction that
// also commits its marker (package txnmarker says how a retry then finds an
// earlier commit instead of producing again). The transactional id belongs
// to the batch's slot (one of the run's Concurrency lanes; the workflow
// never runs two batches in one slot), so a worker can keep the slot's
// producer from one batch to the next instead of building a client,
// connections and buffers each time.
type Emulate struct {
	serde   *records.Serde
	metrics *emulateMetrics
	now     func() time.Time
	// Every slot's producer shares one compressor: a new client would
	// otherwise build its own each time.
	producers *txnmarker.Producers
	chunks    sync.Pool // *[]byte of chunkSize, for keys and values, reused by every batch
	gensMu    sync.Mutex
	gens      []cachedGenerator

	// Test hooks. beforeCommit runs once a batch's records are all in Kafka,
	// before the marker and the commit; afterCommit runs after the commit,
	// before the batch reports. An error from either is the activity's
	// error: tests use them to stall an attempt into a zombie, or to lose a
	// commit's report the way a worker that dies at that moment does.
	beforeCommit func(in workflows.EmulateBatchInput) error
	afterCommit  func(in workflows.EmulateBatchInput) error
}

// NewEmulate builds the activities over kafka (which makes each slot's
// transactional producer), an admin client on the same cluster and the
// serde. Metrics register on reg.
func NewEmulate(kafka *clients.Kafka, admin *kadm.Client, serde *records.Serde, reg prometheus.Registerer) (*Emulate, error) {
	m, err := newEmulateMetrics(reg)
	if err != nil {
		return nil, err
	}
	compressor, err := kgo.DefaultCompressor(kgo.SnappyCompression(), kgo.NoCompression())
	if err != nil {
		return nil, fmt.Errorf("build the producers' compressor: %w", err)
	}
	return &Emulate{serde: serde, metrics: m, now: time.Now,
		producers: txnmarker.New(kafka, admin, append([]kgo.Opt{kgo.WithCompressor(compressor)}, ProducerOpts()...)...)}, nil
}

// generator returns the generator for o, built once: building one makes
// its vocabulary tables, and AppendKeyValue, all a batch uses, only reads
// them. A worker serves a handful of runs at a time; the cache keeps the
// latest few.
func (e *Emulate) generator(o shopgen.Options) (*shopgen.Generator, error) {
	e.gensMu.Lock()
	defer e.gensMu.Unlock()
	for _, g := range e.gens {
		if g.opts == o {
			return g.gen, nil
		}
	}
	gen, err := shopgen.New(o)
	if err != nil {
		return nil, err
	}
	e.gens = append(e.gens, cachedGenerator{o, gen})
	if len(e.gens) > 8 {
		e.gens = e.gens[1:]
	}
	return gen, nil
}

type cachedGenerator struct {
	opts shopgen.Options
	gen  *shopgen.Generator
}

// ProducerOpts are the producer settings of a batch; the benchmark's plain
// producer uses the same, so the comparison is fair.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(20_000),
		// KIP-714 telemetry: every slot's producer would gather and compress
		// its own metrics for the broker.
		kgo.DisableClientMetrics(),
	}
}

// SlotTransactionalID is the transactional id of one slot of a run.
func SlotTransactionalID(workflowID string, slot int) string {
	return txnmarker.TransactionalID(txnmarker.FamilyEmulate, workflowID, "slot-"+strconv.Itoa(slot))
}

// BatchMarkerGroup is the consumer group whose committed offsets mark a
// batch as committed.
func BatchMarkerGroup(workflowID string, batch int64) string {
	return txnmarker.Group(txnmarker.FamilyEmulate, workflowID, "batch-"+strconv.FormatInt(batch, 10))
}

// IsBatchMarkerGroup says whether a consumer group is the commit marker of
// a unit of work (an emulation batch, a backfill or replay range), not a
// consumer.
func IsBatchMarkerGroup(group string) bool { return txnmarker.IsMarkerGroup(group) }

// chunkSize is the size of the pooled buffers records are cut from.
const chunkSize = 1 << 20

// EmulateBatch produces records [in.First, in.First+in.Count) in one
// transaction, or reports the commit of an earlier attempt.
func (e *Emulate) EmulateBatch(ctx context.Context, in workflows.EmulateBatchInput) (res workflows.EmulateBatchResult, err error) {
	t0 := e.now()
	info := activity.GetInfo(ctx)
	outcome := "failed"
	defer func() {
		e.metrics.batchSeconds.WithLabelValues(outcome).Observe(e.now().Sub(t0).Seconds())
	}()
	if in.Count < 1 || in.Topic == "" || in.WorkflowID == "" {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("batch %d: bad input (count %d, topic %q, workflow %q)", in.Batch, in.Count, in.Topic, in.WorkflowID), workflows.ErrTypeInvalidInput, nil)
	}
	gen, err := e.generator(shopgen.Options{Seed: in.Seed, Shops: in.Shops, ImageBaseURL: in.ImageBaseURL, Now: in.ProductTime})
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("batch %d: %v", in.Batch, err), workflows.ErrTypeInvalidInput, err)
	}
	schemaID, err := e.serde.SchemaID(ctx, in.Topic, records.KindProduct)
	if err != nil {
		return res, fmt.Errorf("batch %d: %w", in.Batch, err)
	}

	key := txnmarker.Key{TxnID: SlotTransactionalID(in.WorkflowID, in.Slot), Topic: in.Topic}
	marker := BatchMarkerGroup(in.WorkflowID, in.Batch)
	sent := new(atomic.Int64)
	stopBeats := heartbeat(ctx, func() any { return sent.Load() })
	defer stopBeats()

	txnTimeout := time.Minute
	if in.Rate > 0 {
		txnTimeout = max(txnTimeout, time.Duration(2*float64(in.Count)/in.Rate*float64(time.Second)))
	}
	p, err := e.producers.Begin(ctx, key, marker, txnTimeout)
	if err != nil {
		return res, fmt.Errorf("batch %d: %w", in.Batch, err)
	}
	// Keys and values are cut from pooled chunks; they go back to the pool
	// once the producer has let go of them (closed, or all committed).
	var chunks []*[]byte
	keep := false
	defer func() {
		e.producers.Release(p, keep)
		for _, c := range chunks {
			e.chunks.Put(c)
		}
	}()

	if prior, ok, err := e.committedBatch(ctx, marker); err != nil {
		p.AbortMarkerOnly()
		return res, fmt.Errorf("batch %d: %w", in.Batch, err)
	} else if ok {
		p.AbortMarkerOnly()
		outcome = "recovered"
		prior.Batch = in.Batch
		activity.GetLogger(ctx).Info("batch already committed by an earlier attempt", "batch", in.Batch, "attempt", info.Attempt, "records", prior.Records)
		return prior, nil
	}
	tReady := e.now()

	ends, err := e.produce(ctx, p.Client(), gen, in, schemaID, sent, &chunks)
	tProduced := e.now()
	if err == nil && e.beforeCommit != nil {
		err = e.beforeCommit(in)
	}
	if err != nil {
		p.Abort()
		return res, fmt.Errorf("batch %d: %w", in.Batch, err)
	}
	if err := p.Commit(ctx, batchMarks(in.Topic, ends, in.Count), int(in.Count)); err != nil {
		return res, fmt.Errorf("batch %d: %w", in.Batch, err)
	}
	e.metrics.records.Add(float64(in.Count))
	if e.afterCommit != nil {
		if err := e.afterCommit(in); err != nil {
			return res, err
		}
	}
	keep = true
	outcome = "committed"
	activity.GetLogger(ctx).Debug("batch committed", "batch", in.Batch, "records", in.Count,
		"setup", tReady.Sub(t0), "produce", tProduced.Sub(tReady), "commit", e.now().Sub(tProduced))
	return workflows.EmulateBatchResult{Batch: in.Batch, Records: in.Count, Partitions: ends}, nil
}

// produce generates and sends the batch's records and waits until Kafka has
// them all; it returns, per partition, the offset after the last one.
func (e *Emulate) produce(ctx context.Context, cl *kgo.Client, gen *shopgen.Generator, in workflows.EmulateBatchInput, schemaID int, sent *atomic.Int64, chunks *[]*[]byte) (map[int32]int64, error) {
	var (
		mu       sync.Mutex
		firstErr error
		ends     = map[int32]int64{}
	)
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
		} else if r.Offset+1 > ends[r.Partition] {
			ends[r.Partition] = r.Offset + 1
		}
		mu.Unlock()
	}
	// One allocation for the records and none for their bytes once the
	// worker has run a batch: keys and values are cut from pooled chunks.
	recs := make([]kgo.Record, in.Count)
	var p records.Product
	chunk := func() []byte {
		c, ok := e.chunks.Get().(*[]byte)
		if !ok {
			b := make([]byte, 0, chunkSize)
			c = &b
		}
		*chunks = append(*chunks, c)
		return (*c)[:0]
	}
	buf := chunk()
	start := e.now()
	var err error
	// The generator writes key and value itself, several times cheaper than
	// filling a Product for the generic encoder; only while it writes
	// exactly our schema.
	fast := shopgen.WritesSchema(e.serde.Schemas().Schema(records.KindProduct))
	filler := gen // Fill uses scratch space: the shared generator is not for it
	if !fast {
		if filler, err = shopgen.New(shopgen.Options{Seed: in.Seed, Shops: in.Shops, ImageBaseURL: in.ImageBaseURL, Now: in.ProductTime}); err != nil {
			return nil, err
		}
	}
	header := [5]byte{0, byte(schemaID >> 24), byte(schemaID >> 16), byte(schemaID >> 8), byte(schemaID)}

	for i := range recs {
		index := uint64(in.First) + uint64(i)
		if cap(buf)-len(buf) < 4096 {
			buf = chunk()
		}
		k := len(buf)
		var v int
		if fast {
			var keyLen int
			buf, keyLen = gen.AppendKeyValue(buf, index, header[:])
			v = k + keyLen
		} else {
			filler.Fill(&p, index)
			buf = append(buf, p.MallID...)
			buf = append(buf, '/')
			buf = append(buf, p.ProductID...)
			v = len(buf)
			if buf, err = e.serde.AppendEncode(buf, schemaID, records.KindProduct, &p); err != nil {
				return nil, fmt.Errorf("encode product %d: %w", index, err)
			}
		}
		r := &recs[i]
		r.Key, r.Value = buf[k:v:v], buf[v:len(buf):len(buf)] // the value starts with the header
		cl.Produce(ctx, r, promise)

		sent.Store(int64(i) + 1)
		if i&255 == 255 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("stopped after %d of %d records: %w", i+1, in.Count, err)
			}
		}
		if in.Rate > 0 {
			if err := pace(ctx, start, i+1, in.Rate); err != nil {
				return nil, err
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flush %d records: %w", in.Count, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return nil, fmt.Errorf("produce to %s: %w", in.Topic, firstErr)
	}
	return ends, nil
}

// heartbeat heartbeats every second until stopped, with what details
// returns (a batch: the records sent so far), for the whole activity, flush
// and commit included: that is how a cancel, or the server giving up on
// this attempt, reaches ctx. A broker that went away stalls the activity
// without failing it, and it goes on when the broker returns.
func heartbeat(ctx context.Context, details func() any) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, details())
			}
		}
	}()
	return func() { close(done) }
}

// pace sleeps until sent records are due at rate records a second.
func pace(ctx context.Context, start time.Time, sent int, rate float64) error {
	due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
	d := time.Until(due)
	if d <= time.Millisecond {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// EmulateCleanup deletes the markers of batches the workflow has recorded as
// done; a marker that is already gone is fine.
func (e *Emulate) EmulateCleanup(ctx context.Context, in workflows.EmulateCleanupInput) (workflows.EmulateCleanupResult, error) {
	var res workflows.EmulateCleanupResult
	const chunk = 200
	for first := in.FirstBatch; first < in.EndBatch; first += chunk {
		var groups []string
		for b := first; b < min(first+chunk, in.EndBatch); b++ {
			groups = append(groups, BatchMarkerGroup(in.WorkflowID, b))
		}
		n, err := e.producers.DeleteMarkers(ctx, groups)
		res.Deleted += n
		if err != nil {
			return res, err
		}
		activity.RecordHeartbeat(ctx, first)
	}
	return res, nil
}
