// Package collector is the product collector: a consumer group on the
// product topic that downloads every image of each product into blob
// storage, records the product's state in PostgreSQL, and emits the complete
// product once its full image set is stored. Offsets are committed in the
// same Kafka transaction as the output (GroupTransactSession), after the
// state is committed in PostgreSQL, so a crash at any point only repeats
// idempotent work.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
	"golang.org/x/sync/errgroup"

	"github.com/shopstream/shopstream/internal/blobstore"
	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// DefaultGroup is the collector's consumer group.
const DefaultGroup = "shopstream-collector"

// DefaultBatchWait is how long a batch waits for its products before it
// parks those still collecting: longer than a healthy image host takes,
// well short of one stalled host's header timeout
// (imagefetch.DefaultHeaderTimeout).
const DefaultBatchWait = 2 * time.Second

// DefaultMaxInFlight bounds the products collecting at once: ten batches of
// the default size.
const DefaultMaxInFlight = 10 * 500

// Options configure a Collector: what every component is built with
// (Deps; its Topics name the products in, the complete products and dead
// letters out), and the collector's own settings.
type Options struct {
	component.Deps

	// Group is the consumer group (DefaultGroup).
	Group string
	// TransactionalID must be unique per running instance; empty: a random one.
	TransactionalID string
	Store           *Store
	Blobs           blobstore.Store
	Fetcher         *imagefetch.Fetcher
	// BatchSize bounds the records collected in one transaction (500).
	BatchSize int
	// BatchWait is how long a batch waits for its products' images
	// (DefaultBatchWait). Products still collecting then go on in the
	// background, parked in PostgreSQL, and the batch commits without
	// them: a mall whose images hang delays its own products, not the
	// others of its batch. Negative: a batch waits for all its products
	// and nothing is parked. Parking is exactly once (park.go says how).
	BatchWait time.Duration
	// MaxInFlight bounds the products collecting at once, parked ones
	// included (DefaultMaxInFlight: 10 batches); the collector reads no
	// more records until some finish.
	MaxInFlight int
	// MaxImages bounds the images collected per product
	// (records.MaxImages); more fail the product with a reason.
	MaxImages int
	// RetryBackoff is the first wait after a batch fails on Kafka, the
	// database or blob storage; it doubles up to 30s (500ms).
	RetryBackoff time.Duration

	// hooks let the package's tests stop Run at the moments a crash
	// matters; nil in production.
	hooks hooks
}

// hooks are called, when set, in a batch that finishes parked products.
// An error they return ends Run at once with that error, as a crash
// would: the transaction aborted if it was still open, nothing else done.
type hooks struct {
	// afterMark: the output is marked in PostgreSQL, not yet committed.
	afterMark func() error
	// afterCommit: the output is committed, the parked records not yet
	// deleted.
	afterCommit func() error
}

// StopWithin bounds how long Run takes to return once its context ends: the
// image downloads in flight are cancelled, the batch's transaction gets 10 s
// to abort (whoever collects it next fetches its images again) and the
// consumer leaves the group.
const StopWithin = 12 * time.Second

// Collector runs the product collector. Run returns within StopWithin of
// its context's end.
type Collector struct {
	o      Options
	ready  chan struct{}
	joined sync.Once

	// jobs are the products being collected, by record key, parked ones
	// included; only Run's goroutine touches the map. wake hears that one
	// finished.
	jobs map[string]*job
	wake chan struct{}
	// parts tracks the partitions the group gave this instance.
	parts partitions
	// instance and tokens name the jobs as owners of parked records:
	// unique across instances and restarts, one per job or resume.
	instance string
	tokens   uint64

	products  *prometheus.CounterVec
	reused    prometheus.Counter
	deleted   prometheus.Counter
	stored    prometheus.Counter
	aborted   prometheus.Counter
	batchTime prometheus.Histogram
	freshness prometheus.Histogram // products complete with their images
	parked    prometheus.Gauge
}

// New checks o, builds a Collector and registers its metrics; it starts
// nothing.
func New(o Options) (*Collector, error) {
	if err := o.Check("collector"); err != nil {
		return nil, err
	}
	if o.Store == nil || o.Blobs == nil || o.Fetcher == nil {
		return nil, errors.New("collector: a store, blob storage and a fetcher are required")
	}
	if o.Topics.Products == "" || o.Topics.CompleteProducts == "" || o.Topics.DLQ == "" {
		return nil, errors.New("collector needs the product, complete-product and dead-letter topics")
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.TransactionalID == "" {
		o.TransactionalID = fmt.Sprintf("%s-%016x", o.Group, rand.Uint64())
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	switch {
	case o.BatchWait == 0:
		o.BatchWait = DefaultBatchWait
	case o.BatchWait < 0:
		o.BatchWait = 0 // await reads 0 as: wait for all
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxImages <= 0 {
		o.MaxImages = records.MaxImages
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 500 * time.Millisecond
	}
	f := telemetry.With(o.Registerer)
	c := &Collector{
		o:         o,
		ready:     make(chan struct{}),
		products:  f.CounterVec("shopstream_collector_products_total", "Products the collector finished, by outcome (complete, failed, deleted, invalid).", "outcome"),
		reused:    f.Counter("shopstream_collector_images_reused_total", "Images of an updated product that were already stored (same URL, blob present) and not fetched again."),
		deleted:   f.Counter("shopstream_collector_blobs_deleted_total", "Stored images deleted because their product was deleted or the image replaced."),
		stored:    f.Counter("shopstream_collector_stored_bytes_total", "Bytes of images written to blob storage (an image written again by a retried batch counts again)."),
		aborted:   f.Counter("shopstream_collector_batches_aborted_total", "Batches rolled back and retried after a Kafka, database or blob-storage error."),
		batchTime: f.Histogram("shopstream_collector_batch_seconds", "Time to collect and commit one polled batch.", prometheus.ExponentialBuckets(0.005, 3, 9)),
		freshness: freshness.Histogram(f, freshness.Complete()),
		parked:    f.Gauge("shopstream_collector_parked_products", "Products still collecting past their batch's wait, their records parked in PostgreSQL."),
		jobs:      map[string]*job{},
		wake:      make(chan struct{}, 1),
		parts:     partitions{owned: map[int32]bool{}},
		// A stable transactional id comes back after a restart; the
		// random part keeps the restarted instance's tokens apart from
		// its predecessor's.
		instance: fmt.Sprintf("%s/%016x", o.TransactionalID, rand.Uint64()),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// StopWithin is how long Run takes to return once its context ends.
func (c *Collector) StopWithin() time.Duration { return StopWithin }

// Ready is closed once the collector's consumer has joined the group (its
// first partition assignment, even an empty one).
func (c *Collector) Ready() <-chan struct{} { return c.ready }

// Run consumes until ctx ends; it returns nil on a clean stop.
func (c *Collector) Run(ctx context.Context) error {
	sess, err := c.o.Kafka.NewGroupTransactSession(
		kgo.ConsumerGroup(c.o.Group),
		// franz-go's default, named so that it stays: a scale event moves
		// only the partitions that must move.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeTopics(c.o.Topics.Products),
		kgo.TransactionalID(c.o.TransactionalID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionTimeout(2*time.Minute),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			c.parts.assign(a[c.o.Topics.Products])
			c.signal() // the poll ends, and what is parked there is resumed
			c.joined.Do(func() { close(c.ready) })
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { c.parts.revoke(r[c.o.Topics.Products]) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { c.parts.revoke(r[c.o.Topics.Products]) }),
	)
	if err != nil {
		return fmt.Errorf("create collector consumer: %w", err)
	}
	defer sess.Close()
	defer c.stopJobs()
	c.o.Logger.Info("collector started", "group", c.o.Group, "topic", c.o.Topics.Products, "txn_id", c.o.TransactionalID)

	backoff := c.o.RetryBackoff
	for {
		c.dropRevoked()
		if err := c.resume(ctx); err != nil && ctx.Err() == nil {
			c.o.Logger.Warn("resume parked products", "err", err)
		}
		var recs []*kgo.Record
		if len(c.jobs) < c.o.MaxInFlight {
			// A bounded batch keeps each transaction short. With products
			// collecting in the background, the poll also ends when one
			// of them finishes, so that it is committed at once.
			fetches := c.poll(ctx, sess)
			if fetches.IsClientClosed() || ctx.Err() != nil {
				return nil
			}
			fetches.EachError(func(t string, p int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					c.o.Logger.Warn("fetch", "topic", t, "partition", p, "err", err)
				}
			})
			recs = fetches.Records()
		} else {
			select {
			case <-ctx.Done():
				return nil
			case <-c.wake:
			}
		}
		if len(recs) == 0 && !c.anyFinished() {
			continue
		}
		t0 := time.Now()
		err := c.batch(ctx, sess, recs)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var fatal *fatalError
			if errors.As(err, &fatal) {
				return err
			}
			c.aborted.Inc()
			c.o.Logger.Warn("batch rolled back; retrying", "records", len(recs), "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = c.o.RetryBackoff
		c.batchTime.Observe(time.Since(t0).Seconds())
	}
}

// poll polls one batch. It gives up after resumeEvery, or as soon as a
// product collecting in the background finishes or partitions are assigned,
// so that the loop commits the one and resumes what is parked on the
// others.
func (c *Collector) poll(ctx context.Context, sess *kgo.GroupTransactSession) kgo.Fetches {
	pctx, cancel := context.WithTimeout(ctx, resumeEvery)
	defer cancel()
	go func() {
		select {
		case <-c.wake:
			cancel()
		case <-pctx.Done():
		}
	}()
	return sess.PollRecords(pctx, c.o.BatchSize)
}

// fatalError ends Run: the transactional producer cannot go on.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// result is one key's outcome within a batch.
type result struct {
	rec     *kgo.Record
	outcome string // complete, failed, deleted, invalid
	reason  string
	change  *change
	out     []*kgo.Record
}

// batch collects one poll's records and the parked products that finished
// meanwhile, and commits them, or rolls back.
func (c *Collector) batch(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record) (err error) {
	if err := sess.Begin(); err != nil {
		return &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	var mine []*job // this poll's products
	ended := false
	defer func() {
		if ended {
			return
		}
		// Roll back: the session rewinds to the committed offsets, so the
		// same records come again and find their products still
		// collecting (the same offset goes on with the same job), except
		// those that failed on Kafka, the database or blob storage. A fresh
		// context lets the abort finish during shutdown.
		for _, j := range mine {
			if j.finished() && j.err != nil {
				c.forget(j)
			}
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, aerr := sess.End(actx, kgo.TryAbort); aerr != nil {
			err = &fatalError{fmt.Errorf("abort transaction: %w (after %v)", aerr, err)}
		}
	}()

	mine, err = c.startAll(ctx, recs)
	if err != nil {
		return err
	}
	c.await(ctx, mine)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var results []*result
	var changes []change
	inBatch := make(map[*job]bool, len(mine))
	for _, j := range mine {
		inBatch[j] = true
		if !j.finished() {
			// Still collecting: the record is parked, its offset committed,
			// and its product goes on in the background.
			changes = append(changes, change{key: string(j.rec.Key), park: j.rec, owner: j.token})
			continue
		}
		if j.err != nil {
			return j.err
		}
		results = append(results, j.res)
	}
	// Parked products that finished since the last batch.
	var unparked []*job
	for _, j := range c.jobs {
		if inBatch[j] || !j.parked || !j.finished() {
			continue
		}
		if j.err != nil {
			// Kafka, database or blob trouble: it stays parked, and is
			// resumed later from PostgreSQL.
			c.o.Logger.Warn("parked product failed to collect; resuming it later", "key", string(j.rec.Key), "err", j.err)
			c.forget(j)
			continue
		}
		results = append(results, j.res)
		unparked = append(unparked, j)
	}
	firstUnparked := len(results) - len(unparked)
	for i, r := range results {
		// A record of this poll replaces whatever of its key was parked,
		// in the same transaction; a parked product's own record is
		// forgotten only once its output is committed (below), and its
		// state is written only while its job still owns the record.
		ch := change{key: string(r.rec.Key), orphansOnly: true}
		if r.change != nil {
			ch = *r.change
		}
		if i < firstUnparked {
			ch.unpark = true
		} else {
			j := unparked[i-firstUnparked]
			ch.finishes, ch.owner = j.rec, j.token
		}
		if r.change != nil || ch.unpark || ch.finishes != nil {
			changes = append(changes, ch)
		}
	}
	// PostgreSQL first: if Kafka then fails to commit, the records come
	// again and find their state already written, which changes nothing.
	refused, lost, err := c.o.Store.apply(ctx, c.o.Topics.Products, changes)
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		// Another instance resumed them (a rebalance), or a newer record
		// replaced them: theirs is the output to emit, not ours.
		results, unparked, changes = c.dropLost(lost, results, unparked, changes)
		firstUnparked = len(results) - len(unparked)
		c.o.Logger.Info("parked products taken over elsewhere; not emitting them here", "products", len(lost))
	}
	if len(refused) > 0 {
		byKey := make(map[string]string, len(refused))
		for _, f := range refused {
			byKey[f.key] = f.reason
		}
		kept := changes[:0]
		for _, ch := range changes {
			if _, ok := byKey[ch.key]; !ok {
				kept = append(kept, ch)
			}
		}
		changes = kept
		for _, r := range results {
			if reason, ok := byKey[string(r.rec.Key)]; ok {
				// What PostgreSQL refused is neither complete nor failed
				// here: the dead-letter topic says why.
				r.out, r.change = nil, nil
				c.invalid(r, deadletter.ReasonRefused, reason)
			}
		}
	}
	var out []*kgo.Record
	for _, r := range results {
		out = append(out, r.out...)
	}
	if len(out) > 0 {
		if err := sess.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return fmt.Errorf("produce collector output: %w", err)
		}
	}
	// Where each parked product's output went, written while its job
	// still owns the record: whoever resumes the record after a crash reads
	// that offset back and knows whether the transaction committed. An
	// instance that lost a record since apply aborts rather than emit it
	// beside the new owner.
	if err := c.markUnparked(ctx, results[firstUnparked:], unparked); err != nil {
		return err
	}
	if len(unparked) > 0 && c.o.hooks.afterMark != nil {
		if err := c.o.hooks.afterMark(); err != nil {
			return &fatalError{err}
		}
	}
	ended = true
	committed, err := sess.End(ctx, kgo.TryCommit)
	if err != nil {
		return &fatalError{fmt.Errorf("commit transaction: %w", err)}
	}
	c.deleteOrphans(ctx, changes)
	if !committed {
		// A rebalance took the partitions; whoever gets them repeats the
		// batch (the session has rewound) and resumes what was parked.
		c.aborted.Inc()
		return nil
	}
	if len(unparked) > 0 && c.o.hooks.afterCommit != nil {
		if err := c.o.hooks.afterCommit(); err != nil {
			return &fatalError{err}
		}
	}
	for _, j := range mine {
		if j.finished() {
			c.forget(j)
		} else {
			j.parked = true
		}
	}
	for _, j := range unparked {
		c.forget(j)
	}
	// Only now: a crash before this point leaves the record parked with
	// its output marked, and whoever resumes it finds that output
	// committed and only deletes it. A fresh context: a stop right after
	// the commit would otherwise leave that work to the next resume.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	err = c.o.Store.unpark(uctx, c.o.Topics.Products, recordsOf(unparked))
	cancel()
	if err != nil {
		c.o.Logger.Warn("forget parked records", "err", err)
	}
	c.parked.Set(float64(len(c.jobs)))
	now := c.o.Now()
	for _, r := range results {
		c.products.WithLabelValues(r.outcome).Inc()
		if r.outcome == "complete" {
			freshness.Observe(c.freshness, now, r.rec.Timestamp)
		}
		lvl := slog.LevelDebug
		if r.outcome == "failed" || r.outcome == "invalid" {
			lvl = slog.LevelWarn
		}
		c.o.Logger.Log(ctx, lvl, "product "+r.outcome, "key", string(r.rec.Key), "offset", r.rec.Offset, "reason", r.reason)
	}
	return nil
}

// deleteOrphans removes blobs that the committed state no longer references.
// A failure only leaves them recorded, to be deleted the next time their
// product is touched.
func (c *Collector) deleteOrphans(ctx context.Context, changes []change) {
	var done []string
	for _, ch := range changes {
		for _, k := range ch.orphans {
			if err := c.o.Blobs.Delete(ctx, k); err != nil {
				c.o.Logger.Warn("delete orphan image", "key", k, "err", err)
				continue
			}
			c.deleted.Inc()
			done = append(done, k)
		}
	}
	if err := c.o.Store.forgetOrphans(ctx, done); err != nil {
		c.o.Logger.Warn("forget deleted images", "err", err)
	}
}

// process decides one key's new state. An error means the batch must be
// rolled back (Kafka, database or blob storage trouble, or shutdown); a
// product's own failures are outcomes, not errors.
func (c *Collector) process(ctx context.Context, rec *kgo.Record, pr *prior) (*result, error) {
	res := &result{rec: rec}
	key := string(rec.Key)
	var prevImages []catalog.Image
	if pr.product != nil {
		prevImages = pr.product.Images
	}
	if len(rec.Key) == 0 {
		return c.invalid(res, deadletter.ReasonNoKey, "record has no key: want mall_id/product_id"), nil
	}

	if rec.Value == nil { // tombstone: delete the product and its images
		res.outcome = "deleted"
		res.change = &change{key: key, remove: true, orphans: orphansOf(prevImages, pr.orphans, nil)}
		res.out = append(res.out, &kgo.Record{Topic: c.o.Topics.CompleteProducts, Key: rec.Key})
		return res, nil
	}

	var p records.Product
	if err := c.o.Serde.Decode(ctx, rec.Value, &p); err != nil {
		reason := deadletter.ReasonOf(err)
		if ctx.Err() != nil || reason == "" {
			return nil, fmt.Errorf("decode %s: %w", key, err)
		}
		return c.invalid(res, reason, "value does not decode as a Product: "+err.Error()), nil
	}
	if p.Key() != key {
		return c.invalid(res, deadletter.ReasonKeyMismatch, fmt.Sprintf("record key %q does not match the product's mall_id/product_id %q", key, p.Key())), nil
	}
	// What PostgreSQL cannot store (a NUL, bytes that are not UTF-8) is
	// refused before any image is fetched, as the sink refuses it.
	if err := pgstore.CheckProduct(key, &p); err != nil {
		return c.invalid(res, deadletter.ReasonInvalid, err.Error()), nil
	}

	images, failures, err := c.collectImages(ctx, &p, prevImages)
	if err != nil {
		return nil, err
	}
	now := c.o.Now().UTC()
	state := &catalog.Product{Product: p, Images: images, UpdatedAt: now}
	keep := make([]string, 0, len(images))
	for _, im := range images {
		keep = append(keep, im.Key)
	}
	res.change = &change{key: key, product: state, keep: keep, orphans: orphansOf(prevImages, pr.orphans, keep), fresh: freshOf(images, prevImages)}
	if len(failures) > 0 {
		state.Status = catalog.StatusFailed
		// The reasons quote image servers' answers: a status line may hold
		// a NUL, which PostgreSQL refuses in text.
		state.Reason = deadletter.Clean(strings.Join(failures, "; "))
		res.outcome, res.reason = "failed", state.Reason
		// Not complete any more: downstream forgets it; the dead-letter
		// topic keeps the record and says why.
		res.out = append(res.out, &kgo.Record{Topic: c.o.Topics.CompleteProducts, Key: rec.Key}, c.deadLetter(rec, deadletter.ReasonImagesFailed, state.Reason))
		return res, nil
	}
	state.Status = catalog.StatusComplete
	state.CollectedAt = now
	cp := state.Complete()
	val, err := c.o.Serde.Encode(ctx, nil, c.o.Topics.CompleteProducts, &cp)
	if err != nil {
		return nil, fmt.Errorf("encode complete product %s: %w", key, err)
	}
	res.outcome = "complete"
	res.out = append(res.out, &kgo.Record{Topic: c.o.Topics.CompleteProducts, Key: rec.Key, Value: val})
	return res, nil
}

// invalid dead-letters a record that can never be collected; detail is
// what the log and the dead letter's error header say.
func (c *Collector) invalid(res *result, reason, detail string) *result {
	res.outcome, res.reason = "invalid", detail
	res.out = append(res.out, c.deadLetter(res.rec, reason, detail))
	return res
}

// deadLetter keeps the original key and bytes and says why in headers.
func (c *Collector) deadLetter(rec *kgo.Record, reason, detail string) *kgo.Record {
	return deadletter.Record(c.o.Topics.DLQ, rec, deadletter.Why{Component: "collector", Reason: reason, Detail: detail}, c.o.Now())
}

// freshOf lists the blobs of images that prev did not reference.
func freshOf(images, prev []catalog.Image) []string {
	had := make(map[string]bool, len(prev))
	for _, im := range prev {
		had[im.Key] = true
	}
	var out []string
	for _, im := range images {
		if !had[im.Key] {
			out = append(out, im.Key)
		}
	}
	return out
}

// orphansOf lists the blobs of the old state (and earlier orphans) that the
// new state does not reference.
func orphansOf(prev []catalog.Image, pending, keep []string) []string {
	kept := make(map[string]bool, len(keep))
	for _, k := range keep {
		kept[k] = true
	}
	var out []string
	seen := map[string]bool{}
	add := func(k string) {
		if !kept[k] && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, im := range prev {
		add(im.Key)
	}
	for _, k := range pending {
		add(k)
	}
	return out
}

// collectImages stores every image of p, reusing those already stored under
// the same URL. It returns the stored images in the product's order and a
// reason per image that could not be collected.
func (c *Collector) collectImages(ctx context.Context, p *records.Product, prev []catalog.Image) ([]catalog.Image, []string, error) {
	byURL := make(map[string]catalog.Image, len(prev))
	for _, im := range prev {
		byURL[im.URL] = im
	}
	var urls []string
	seen := map[string]bool{}
	for _, im := range p.Images {
		if !seen[im.URL] {
			seen[im.URL] = true
			urls = append(urls, im.URL)
		}
	}
	// The API allows MaxImages; a product from elsewhere may name any
	// number, and each costs downloads. The first ones are collected (an
	// update within the limit reuses them), the rest refused.
	var refused string
	if len(urls) > c.o.MaxImages {
		refused = fmt.Sprintf("%d images, more than the %d a product may have: images %d to %d refused",
			len(urls), c.o.MaxImages, c.o.MaxImages+1, len(urls))
		urls = urls[:c.o.MaxImages]
	}
	stored := make([]*catalog.Image, len(urls))
	failed := make([]string, len(urls))
	var mu sync.Mutex
	var reused int
	g, gctx := errgroup.WithContext(ctx)
	for i, u := range urls {
		g.Go(func() error {
			if old, ok := byURL[u]; ok {
				info, err := c.o.Blobs.Stat(gctx, old.Key)
				if err == nil && info.Size == old.Size {
					stored[i] = &old
					mu.Lock()
					reused++
					mu.Unlock()
					return nil
				}
				if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
					return err
				}
			}
			im, err := c.o.Fetcher.FetchFor(gctx, p.MallID, u)
			if err != nil {
				var fe *imagefetch.Error
				if gctx.Err() != nil || !errors.As(err, &fe) {
					return err
				}
				failed[i] = fmt.Sprintf("image %s: %v", u, fe.Err)
				return nil
			}
			k := BlobKey(p.MallID, p.ProductID, im.SHA256, im.Ext())
			if err := c.o.Blobs.Put(gctx, k, im.Data, im.ContentType); err != nil {
				return err
			}
			c.stored.Add(float64(len(im.Data)))
			stored[i] = &catalog.Image{URL: u, Key: k, Path: c.o.Blobs.Location(k), SHA256: im.SHA256, Size: int64(len(im.Data)), ContentType: im.ContentType}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	c.reused.Add(float64(reused))
	var images []catalog.Image
	var reasons []string
	for i := range urls {
		if stored[i] != nil {
			images = append(images, *stored[i])
		}
		if failed[i] != "" {
			reasons = append(reasons, failed[i])
		}
	}
	if refused != "" {
		reasons = append(reasons, refused)
	}
	return images, reasons, nil
}
