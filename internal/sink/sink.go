// Package sink materialises shopstream's topics into PostgreSQL exactly once.
// A consumer group reads the product, complete-product, filtered-product,
// search and recommendation topics; each poll becomes one transaction that
// upserts and deletes rows (package pgstore) and advances the partitions'
// offsets stored beside them. On assignment the sink starts every partition
// from the offset stored in PostgreSQL, so a crash at any point neither loses
// nor repeats a record. Kafka's own committed offsets are only advisory (for
// lag tools such as AKHQ).
package sink

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

// DefaultGroup is the sink's consumer group.
const DefaultGroup = "shopstream-sink"

// Options configure a Sink: what every component is built with (Deps),
// and the sink's own settings.
type Options struct {
	component.Deps

	// Group is the consumer group; offsets are stored per group.
	Group string
	Store *pgstore.Store
	// BatchSize caps the records of one transaction.
	BatchSize int
	// MinBackoff and MaxBackoff bound the wait between retries while
	// PostgreSQL, the registry or the dead-letter topic is unavailable.
	MinBackoff, MaxBackoff time.Duration
}

// StopWithin bounds how long Run takes to return once its context ends: the
// batch being written is rolled back (PostgreSQL's offsets stay where they
// were) and the consumer leaves the group.
const StopWithin = 10 * time.Second

// Sink is one member of the sink's consumer group. Run returns within
// StopWithin of its context's end.
type Sink struct {
	// afterDeadLetters, set by tests, runs once a batch's dead letters
	// are sent; an error rolls the batch back.
	afterDeadLetters func() error

	opts   Options
	log    *slog.Logger
	m      *metrics
	routes map[string]route
	ready  chan struct{}
	joined sync.Once

	// ownSchemas caches, per schema id and kind, whether the writer schema
	// is shopstream's own, which route.tuple reads.
	ownSchemas sync.Map // schemaKey -> bool

	mu sync.Mutex
	// stored holds the offset PostgreSQL has for each assigned partition
	// (pgstore.NoOffset when none): the compare-and-set base of the next
	// batch.
	stored map[tp]int64
	// advisory are stored offsets that Kafka's committed offsets lag
	// behind: a predecessor wrote to PostgreSQL and died before its
	// advisory commit. Run commits them, since consuming on from there
	// commits nothing for a partition with nothing more to read.
	advisory map[string]map[int32]kgo.EpochOffset
}

type tp struct {
	topic     string
	partition int32
}

// route says how a topic's records become rows.
type route struct {
	table  *pgstore.Table
	values func(ctx context.Context, s *records.Serde, key string, value []byte) ([]any, error)
	// tuple, when set, reads a body written with shopstream's own schema
	// of kind straight into the table's COPY tuple (pgstore.AppendProductTuple).
	tuple func(dst, key, body []byte) ([]byte, error)
	kind  records.Kind
}

// New checks o and builds a sink; it starts nothing.
func New(o Options) (*Sink, error) {
	if err := o.Check("sink"); err != nil {
		return nil, err
	}
	if o.Store == nil {
		return nil, errors.New("sink: no PostgreSQL store given")
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 10 * time.Second
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	t := o.Topics
	return &Sink{
		opts: o,
		log:  o.Logger.With("component", "sink", "group", o.Group),
		m:    m,
		routes: map[string]route{
			t.Products:         {pgstore.Products, productValues, pgstore.AppendProductTuple, records.KindProduct},
			t.Filtered:         {pgstore.FilteredProducts, productValues, pgstore.AppendProductTuple, records.KindProduct},
			t.CompleteProducts: {pgstore.CompleteProducts, completeProductValues, pgstore.AppendCompleteProductTuple, records.KindCompleteProduct},
			t.Find:             {pgstore.Searches, searchValues, nil, ""},
			t.Recommendations:  {pgstore.Recommendations, recommendationValues, nil, ""},
		},
		stored:   map[tp]int64{},
		advisory: map[string]map[int32]kgo.EpochOffset{},
		ready:    make(chan struct{}),
	}, nil
}

// StopWithin is how long Run takes to return once its context ends.
func (s *Sink) StopWithin() time.Duration { return StopWithin }

// Ready is closed once the sink's consumer has joined the group (its first
// partition assignment, even an empty one).
func (s *Sink) Ready() <-chan struct{} { return s.ready }

// Topics lists the topics the sink materialises.
func (s *Sink) Topics() []string {
	t := s.opts.Topics
	return []string{t.Products, t.Filtered, t.CompleteProducts, t.Find, t.Recommendations}
}

// kafkaOpts are the options of the sink's consumer.
func (s *Sink) kafkaOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(s.opts.Group),
		// franz-go's default, named so that it stays: a scale event moves
		// only the partitions that must move.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeTopics(s.Topics()...),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the polled batch is written, so a partition
		// is never revoked in the middle of one.
		kgo.BlockRebalanceOnPoll(),
		// The streamer writes its topics in transactions.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(s.startFromStoredOffsets),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			s.joined.Do(func() { close(s.ready) })
		}),
		kgo.OnPartitionsRevoked(s.forget),
		kgo.OnPartitionsLost(s.forget),
	}
}

// startFromStoredOffsets replaces the offsets Kafka has for newly assigned
// partitions with the ones stored in PostgreSQL, or the log start when none.
// PostgreSQL may be down: it retries until the group session ends.
func (s *Sink) startFromStoredOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	topics := make([]string, 0, len(assigned))
	for t := range assigned {
		topics = append(topics, t)
	}
	var stored map[string]map[int32]int64
	err := s.retry(ctx, "read stored offsets", func() (err error) {
		stored, err = s.opts.Store.Offsets(ctx, s.opts.Group, topics)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[int32]kgo.Offset, len(assigned))
	for topic, parts := range assigned {
		out[topic] = make(map[int32]kgo.Offset, len(parts))
		for p := range parts {
			next, ok := stored[topic][p]
			if ok {
				out[topic][p] = kgo.NewOffset().At(next).WithEpoch(-1)
				s.stored[tp{topic, p}] = next
				if kafka := parts[p].EpochOffset().Offset; kafka < next {
					if s.advisory[topic] == nil {
						s.advisory[topic] = map[int32]kgo.EpochOffset{}
					}
					s.advisory[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: next}
				}
			} else {
				out[topic][p] = kgo.NewOffset().AtStart()
				s.stored[tp{topic, p}] = pgstore.NoOffset
			}
			s.log.Debug("partition assigned", "topic", topic, "partition", p, "stored_offset", s.stored[tp{topic, p}])
		}
	}
	return out, nil
}

// takeAdvisory returns the stored offsets Kafka lags behind, and forgets
// them.
func (s *Sink) takeAdvisory() map[string]map[int32]kgo.EpochOffset {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.advisory
	s.advisory = map[string]map[int32]kgo.EpochOffset{}
	return out
}

func (s *Sink) forget(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, parts := range lost {
		for _, p := range parts {
			delete(s.advisory[topic], p)
			delete(s.stored, tp{topic, p})
			s.m.lag.DeleteLabelValues(topic, strconv.Itoa(int(p)))
		}
	}
}

// Run joins the group and consumes until ctx ends. Every poll is written in
// one transaction, retried with backoff while PostgreSQL, the registry or
// the dead-letter topic is unavailable; records that cannot be decoded or
// stored go to the dead-letter topic. An interrupted batch is rolled back and
// read again by whoever owns the partition next.
func (s *Sink) Run(ctx context.Context) error {
	cl, err := s.opts.Kafka.Connect(ctx, s.kafkaOpts()...)
	if err != nil {
		return err
	}
	// Closing leaves the group, so the partitions move at once.
	defer cl.Close()
	return s.consume(ctx, cl)
}

// consume polls cl until ctx ends or the client is closed.
func (s *Sink) consume(ctx context.Context, cl *kgo.Client) error {
	s.log.Info("sink started", "topics", s.Topics(), "batch_size", s.opts.BatchSize)
	var lastKafkaCommit time.Time
	for {
		// A poll ends after a second without records too, so that the
		// advisory commit below catches up with the last batch: otherwise
		// an idle sink's Kafka offsets stay behind it, and lag tools (and
		// `status`) call it stuck.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollRecords(pctx, s.pollSize())
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.m.fetchErrors.Inc()
				s.log.Warn("fetch", "topic", topic, "partition", p, "err", err)
			}
		})
		err := s.handle(ctx, cl, fetches)
		cl.AllowRebalance()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// Kafka's committed offsets only inform lag tools; PostgreSQL's are
		// the ones the sink resumes from. They are committed at most once a
		// second under load, and whenever a poll finds the sink caught up,
		// so an idle sink never shows the lag of its last second forever.
		caughtUp := fetches.NumRecords() > 0 && fetches.NumRecords() < s.opts.BatchSize
		if now := s.opts.Now(); caughtUp || now.Sub(lastKafkaCommit) > time.Second {
			lastKafkaCommit = now
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if behind := s.takeAdvisory(); len(behind) > 0 {
				cl.CommitOffsetsSync(cctx, behind, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
					if err != nil && ctx.Err() == nil {
						s.log.Debug("advisory Kafka commit of the stored offsets", "err", err)
					}
				})
			}
			if err := cl.CommitUncommittedOffsets(cctx); err != nil && ctx.Err() == nil {
				s.log.Debug("advisory Kafka commit", "err", err)
			}
			cancel()
		}
	}
}

// write writes one decoded batch in one transaction, retrying until it is
// written or ctx ends. dropped says that another consumer had advanced one
// of its partitions: the batch was not written, and its partitions were
// pointed back at their stored offsets.
func (s *Sink) write(ctx context.Context, cl *kgo.Client, b *batch, start time.Time) (dropped bool, err error) {
	produced := map[pgstore.SourceRecord]bool{} // dead letters sent by an earlier attempt of this batch
	var res pgstore.Result
	err = s.retry(ctx, "write batch", func() (err error) {
		s.mu.Lock()
		for i := range b.offsets {
			o := &b.offsets[i]
			stored, ok := s.stored[tp{o.Topic, o.Partition}]
			if !ok {
				stored = pgstore.NoOffset // revoked meanwhile: the store refuses the batch if another member wrote it
			}
			o.Stored = stored
		}
		s.mu.Unlock()
		res, err = s.opts.Store.Apply(ctx, &pgstore.Batch{
			Group: s.opts.Group, Rows: b.rows, Offsets: b.offsets,
			BeforeCommit: func(ctx context.Context, rejected []pgstore.Rejected) error {
				return s.deadLetter(ctx, cl, b, rejected, produced)
			},
		})
		var conflict *pgstore.OffsetConflictError
		if errors.As(err, &conflict) {
			s.m.conflicts.Inc()
			s.log.Warn("batch dropped: another consumer wrote these partitions; reading them again from the stored offsets", "err", err)
			dropped = true
			return s.resync(ctx, cl, b.offsets)
		}
		dropped = false
		return err
	})
	if err != nil || dropped {
		return dropped, err
	}
	if len(produced) > 0 {
		// Committed with the batch: the records are never read again. A
		// row left behind by a failure here is never looked at.
		if err := s.opts.Store.PaidDeadLetters(ctx, s.opts.Group, slices.Collect(maps.Keys(produced))); err != nil {
			s.log.Warn("forget sent dead letters", "err", err)
		}
	}
	s.mu.Lock()
	for _, o := range b.offsets {
		key := tp{o.Topic, o.Partition}
		if _, ok := s.stored[key]; ok {
			s.stored[key] = o.Next
		}
		if hw, ok := b.highWater[key]; ok {
			s.m.lag.WithLabelValues(o.Topic, strconv.Itoa(int(o.Partition))).Set(float64(max(hw-o.Next, 0)))
		}
	}
	s.mu.Unlock()
	for table, n := range res.Upserts {
		s.m.rows.WithLabelValues(table, "upsert").Add(float64(n))
	}
	for table, n := range res.Deletes {
		s.m.rows.WithLabelValues(table, "delete").Add(float64(n))
	}
	s.m.records.Add(float64(b.records))
	now := s.opts.Now()
	s.m.batchSeconds.Observe(now.Sub(start).Seconds())
	for _, ts := range b.products {
		freshness.Observe(s.m.freshness, now, ts)
	}
	return false, nil
}

// resync reloads the stored offsets of a batch's partitions and points the
// consumer at them, dropping what it had buffered.
func (s *Sink) resync(ctx context.Context, cl *kgo.Client, offs []pgstore.Offset) error {
	topics := map[string]bool{}
	for _, o := range offs {
		topics[o.Topic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	stored, err := s.opts.Store.Offsets(ctx, s.opts.Group, names)
	if err != nil {
		return err
	}
	set := map[string]map[int32]kgo.EpochOffset{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range offs {
		key := tp{o.Topic, o.Partition}
		if _, ok := s.stored[key]; !ok {
			continue // no longer ours
		}
		next, ok := stored[o.Topic][o.Partition]
		if !ok {
			continue
		}
		s.stored[key] = next
		if set[o.Topic] == nil {
			set[o.Topic] = map[int32]kgo.EpochOffset{}
		}
		set[o.Topic][o.Partition] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	cl.SetOffsets(set)
	return nil
}

// retry runs f until it succeeds, backing off between attempts, or until ctx
// ends.
func (s *Sink) retry(ctx context.Context, what string, f func() error) error {
	wait := s.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			if attempt > 1 {
				s.log.Info(what+": recovered", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.retries.WithLabelValues(what).Inc()
		s.log.Warn(what+": retrying", "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, s.opts.MaxBackoff)
	}
}
