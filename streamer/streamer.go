package streamer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"golang.org/x/sync/errgroup"

	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/internal/records"
)

// DefaultGroup is the consumer group the instances share unless told
// otherwise.
const DefaultGroup = "shopstream-streamer"

// Defaults of the optional Options fields.
const (
	DefaultMaxBatch          = 10000
	DefaultHeartbeatInterval = 5 * time.Second
	// A fetch brings at most 768 KiB, 128 KiB a partition (franz-go's
	// defaults are 50 MiB and 1 MiB). franz-go decompresses a whole fetch
	// before it hands over any record, and the filter then reads each
	// value's name: a fetch this size is still in the core's cache when
	// it does, a fetch of several megabytes is not. At 10% pass this
	// made the streamer and the strict ceiling, which uses the same
	// client options, 10-30% faster, and the streamer's share of the
	// ceiling 0.92 -> 0.97 (README, "strict ceiling").
	DefaultFetchMaxBytes          = 768 << 10
	DefaultFetchMaxPartitionBytes = 128 << 10
)

// Bounds of Options.FetchMaxBytes and FetchMaxPartitionBytes.
const (
	MinFetchBytes = 1 << 10
	MaxFetchBytes = 256 << 20
)

// Shutdown bounds: after ctx ends, the open transaction gets endGrace to
// commit or abort, then leaving the group gets leaveGrace; together well
// inside the 10 s an orchestrator gives between SIGTERM and SIGKILL.
const (
	endGrace   = 5 * time.Second
	leaveGrace = 3 * time.Second
)

// StopWithin bounds how long Run takes to return once its context ends:
// endGrace and leaveGrace, then reportGrace to delete the applied report.
const StopWithin = endGrace + leaveGrace + reportGrace

// Options configure one streamer instance: what every component is built
// with (Deps: Kafka, Topics, Serde, Registerer, Logger, Now), and the
// streamer's own settings.
type Options struct {
	component.Deps

	// Group is the consumer group; DefaultGroup when empty.
	Group string
	// InstanceID names the instance on the applied topic and in its
	// transactional id; it must be unique among live instances.
	// DefaultInstanceID() when empty.
	InstanceID string
	// TransactionalID, when set, is the instance's transactional id as is.
	// Give it a name that stays the same across restarts and is unique among
	// live instances (a StatefulSet's pod name): the restarted instance's
	// first transaction then fences its predecessor and aborts the
	// transaction it left open, instead of leaving it to the transaction
	// timeout while read_committed readers wait behind it. Empty: one derived
	// from InstanceID with a random suffix.
	TransactionalID string
	// CaseSensitive makes this instance match case-sensitively whatever the
	// filter state says.
	CaseSensitive bool
	// MaxBatch bounds the records of one transaction.
	MaxBatch int
	// FetchMaxBytes and FetchMaxPartitionBytes bound one fetch response,
	// and a partition's share of it (Kafka's fetch.max.bytes and
	// max.partition.fetch.bytes); DefaultFetchMaxBytes and
	// DefaultFetchMaxPartitionBytes when 0.
	FetchMaxBytes          int32
	FetchMaxPartitionBytes int32
	// HeartbeatInterval is how often the instance reports its applied
	// filter.
	HeartbeatInterval time.Duration
	// SessionTimeout and TransactionTimeout override franz-go's defaults
	// (45 s and 40 s) when set: how soon a dead instance's partitions move
	// and its open transaction is aborted.
	SessionTimeout     time.Duration
	TransactionTimeout time.Duration
}

// DefaultInstanceID is the host name and a random suffix, unique per process.
func DefaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "streamer"
	}
	return host + "-" + randid.Hex(3)
}

// Streamer is one instance: it follows the control topic, reports its
// applied filter and runs the exactly-once consume-filter-produce loop.
// Run returns within StopWithin of its context's end.
type Streamer struct {
	cfg     Options
	txnID   string
	m       *metrics
	layouts layoutCache
	control atomic.Pointer[control]
	ready   chan struct{}
	started atomic.Bool
	// joined is closed on the first partition assignment (which may assign
	// nothing, when the group has more members than partitions).
	joined   chan struct{}
	joinOnce sync.Once

	// Batch state, owned by the consume loop. out and hdrs are slabs reused
	// by every transaction, so forwarding allocates nothing per record.
	out        []kgo.Record
	nOut       int
	hdrs       []kgo.RecordHeader
	tallies    []tally
	produceErr atomic.Pointer[error]
	promise    func(*kgo.Record, error)
	// precheckOn says whether fetches check their records (precheck).
	precheckOn atomic.Bool
}

// New checks cfg, fills in its defaults and registers the metrics; it
// starts nothing.
func New(cfg Options) (*Streamer, error) {
	if err := cfg.Check("streamer"); err != nil {
		return nil, err
	}
	t := cfg.Topics
	for _, name := range []string{t.Products, t.Filtered, t.DLQ, t.Filter, t.FilterApplied} {
		if name == "" {
			return nil, fmt.Errorf("streamer: a topic is not named: %+v", t)
		}
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = DefaultInstanceID()
	}
	if strings.ContainsAny(cfg.InstanceID, " \t\n/") {
		return nil, fmt.Errorf("streamer: instance id %q: use letters, digits, '-', '_' or '.'", cfg.InstanceID)
	}
	if strings.ContainsAny(cfg.TransactionalID, " \t\n") {
		return nil, fmt.Errorf("streamer: transactional id %q: use no white space", cfg.TransactionalID)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxBatch < 1 || cfg.MaxBatch > 1_000_000 {
		return nil, fmt.Errorf("streamer: max batch %d: want 1 to 1000000", cfg.MaxBatch)
	}
	if cfg.FetchMaxBytes == 0 {
		cfg.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if cfg.FetchMaxPartitionBytes == 0 {
		cfg.FetchMaxPartitionBytes = DefaultFetchMaxPartitionBytes
	}
	if cfg.FetchMaxBytes < MinFetchBytes || cfg.FetchMaxBytes > MaxFetchBytes ||
		cfg.FetchMaxPartitionBytes < MinFetchBytes || cfg.FetchMaxPartitionBytes > cfg.FetchMaxBytes {
		return nil, fmt.Errorf("streamer: fetch max bytes %d, a partition's %d: want %d <= partition's <= fetch's <= %d",
			cfg.FetchMaxBytes, cfg.FetchMaxPartitionBytes, MinFetchBytes, MaxFetchBytes)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	cfg.Logger = cfg.Logger.With("instance", cfg.InstanceID)
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	// The group's generation fences a zombie (KIP-447), so the
	// transactional id only has to be unique; the random suffix keeps two
	// instances given the same id from fencing each other.
	txnID := cfg.TransactionalID
	if txnID == "" {
		txnID = "shopstream-streamer-" + cfg.InstanceID + "-" + randid.Hex(4)
	}
	s := &Streamer{
		cfg:   cfg,
		txnID: txnID,
		m:     m,
		layouts: layoutCache{
			serde: cfg.Serde, ours: cfg.Serde.Schemas().Schema(records.KindProduct),
			now: cfg.Now, m: map[int]layoutEntry{},
		},
		ready:  make(chan struct{}),
		joined: make(chan struct{}),
		out:    make([]kgo.Record, cfg.MaxBatch),
	}
	s.promise = func(_ *kgo.Record, err error) {
		if err != nil {
			// A copy: taking err's own address would move every call's
			// err to the heap, an allocation per forwarded record.
			failed := err
			s.produceErr.CompareAndSwap(nil, &failed)
		}
	}
	return s, nil
}

// StopWithin is how long Run takes to return once its context ends.
func (s *Streamer) StopWithin() time.Duration { return StopWithin }

// InstanceID is the instance's id on the applied topic.
func (s *Streamer) InstanceID() string { return s.cfg.InstanceID }

// Ready is closed once the instance applied the control topic's newest
// filter, created its group session and joined the group (its first
// partition assignment, even an empty one).
func (s *Streamer) Ready() <-chan struct{} { return s.ready }

// Filter is the filter the instance applies now; nil before Ready.
func (s *Streamer) Filter() *Filter {
	if c := s.control.Load(); c != nil {
		return c.current.Load()
	}
	return nil
}

// Run runs the instance until ctx ends or it fails; it may be called once.
// On ctx's end it commits or aborts the open transaction and leaves the
// group (within endGrace + leaveGrace, 8 s), then deletes its applied report
// (within reportGrace, 2 s more): StopWithin in all.
func (s *Streamer) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("streamer: Run called twice")
	}
	log := s.cfg.Logger
	if err := s.waitForTopics(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	c := newControl(&s.cfg, s.m)
	defer c.close()
	if err := c.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("load the filter from control topic %s: %w", s.cfg.Topics.Filter, err)
	}
	s.control.Store(c)

	kp := kprom.NewMetrics("shopstream_streamer_kafka")
	kc := newKafkaClientMetrics(kp)
	if err := s.cfg.Registerer.Register(kc); err != nil {
		return fmt.Errorf("register the Kafka client metrics: %w", err)
	}
	defer s.cfg.Registerer.Unregister(kc)
	sess, err := s.cfg.Kafka.WithLogger(log).NewGroupTransactSession(append(s.sessionOpts(kp), kgo.WithHooks(precheck{s}))...)
	if err != nil {
		return fmt.Errorf("create the group transact session: %w", err)
	}
	log.Info("streamer started", "group", s.cfg.Group, "transactional_id", s.txnID,
		"from", s.cfg.Topics.Products, "to", s.cfg.Topics.Filtered, "filter", c.current.Load().String())
	go func() {
		select {
		case <-s.joined:
			close(s.ready)
		case <-ctx.Done():
		}
	}()

	// The loop and the control follower end together; the reporter ends
	// after the loop left the group, so its last act, deleting this
	// instance's report, comes when the instance really is gone.
	g, gctx := errgroup.WithContext(ctx)
	rctx, stopReporter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReporter()
	rep := newReporter(&s.cfg, c.rd.Client(), c)
	repDone := make(chan struct{})
	go func() {
		defer close(repDone)
		_ = rep.run(rctx)
	}()
	g.Go(func() error { return c.follow(gctx) })
	g.Go(func() error { return s.consume(gctx, sess) })
	err = g.Wait()
	stopReporter()
	<-repDone
	log.Info("streamer stopped", "err", err)
	return err
}

func (s *Streamer) sessionOpts(kp *kprom.Metrics) []kgo.Opt {
	log := s.cfg.Logger
	opts := []kgo.Opt{
		kgo.TransactionalID(s.txnID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumerGroup(s.cfg.Group),
		// franz-go's default, named so that it stays: an instance joining or
		// leaving moves only the partitions that must move, and the session
		// aborts only when this instance loses partitions.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeTopics(s.cfg.Topics.Products),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RequireStableFetchOffsets(),
		kgo.FetchMaxBytes(s.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(s.cfg.FetchMaxPartitionBytes),
		kgo.WithHooks(kp),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Info("partitions assigned", "partitions", m)
			s.joinOnce.Do(func() { close(s.joined) })
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Info("partitions revoked", "partitions", m)
		}),
	}
	if s.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(s.cfg.SessionTimeout))
	}
	if s.cfg.TransactionTimeout > 0 {
		opts = append(opts, kgo.TransactionTimeout(s.cfg.TransactionTimeout))
	}
	return opts
}

// waitForTopics waits until every topic the instance uses exists: `shopstream
// dev` starts the streamer before its bootstrap creates them.
func (s *Streamer) waitForTopics(ctx context.Context) error {
	cl, err := s.cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	t := s.cfg.Topics
	want := []string{t.Products, t.Filtered, t.DLQ, t.Filter, t.FilterApplied}
	// `shopstream dev` creates the topics within seconds: say nothing
	// unless the wait lasts.
	lastLog := time.Now().Add(-10 * time.Second)
	for {
		details, err := adm.ListTopics(ctx, want...)
		var missing []string
		if err == nil {
			for _, name := range want {
				if d, ok := details[name]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
					missing = append(missing, name)
				} else if d.Err != nil {
					err = fmt.Errorf("describe topic %s: %w", name, d.Err)
				}
			}
		}
		if err == nil && len(missing) == 0 {
			return nil
		}
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			if err != nil {
				s.cfg.Logger.Warn("cannot list topics yet, retrying", "err", err)
			} else {
				s.cfg.Logger.Warn("waiting for topics (run `shopstream bootstrap`)", "missing", missing)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// consume is the exactly-once loop: poll a batch, filter it inside one
// transaction, commit the output and the consumed offsets together.
func (s *Streamer) consume(ctx context.Context, sess *kgo.GroupTransactSession) error {
	defer s.leave(sess)
	for {
		polled := time.Now()
		fs := sess.PollRecords(ctx, s.cfg.MaxBatch)
		// Records waiting when the loop came back mean that the loop, not
		// the fetching, is what holds the instance back: then the next
		// fetches check their records themselves (precheck). Otherwise the
		// loop checks them, in the time it would spend waiting anyway.
		s.precheckOn.Store(time.Since(polled) < pollWaited)
		if ctx.Err() != nil || fs.IsClientClosed() {
			// Polled but unprocessed records were never committed: the
			// partitions' next owner reads them again.
			return nil
		}
		var fetchErr bool
		fs.EachError(func(topic string, p int32, err error) {
			fetchErr = true
			s.cfg.Logger.Error("fetch", "topic", topic, "partition", p, "err", err)
		})
		if fs.NumRecords() == 0 {
			if fetchErr {
				_ = clock.Sleep(ctx, time.Second)
			}
			continue
		}
		if err := s.batch(ctx, sess, fs); err != nil {
			return err
		}
	}
}

// batch runs one transaction over the polled records.
func (s *Streamer) batch(ctx context.Context, sess *kgo.GroupTransactSession, fs kgo.Fetches) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin a transaction: %w", err)
	}
	s.nOut, s.hdrs, s.tallies = 0, s.hdrs[:0], s.tallies[:0]
	s.produceErr.Store(nil)
	// Producing must not stop half-way when ctx ends: the batch is
	// finished, then committed or aborted, within endGrace.
	pctx := context.WithoutCancel(ctx)
	now := s.cfg.Now()
	var transient error
	var w walker
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if transient == nil {
			transient = s.walk(pctx, sess, &w, p.Records, now)
		}
	})
	produceErr := s.produceErr.Load()
	ectx, cancel := endContext(ctx)
	committed, err := sess.End(ectx, kgo.TransactionEndTry(transient == nil && produceErr == nil))
	cancel()
	if err != nil {
		s.m.aborts.Inc()
		return fmt.Errorf("end a transaction of %d records: %w", fs.NumRecords(), err)
	}
	if !committed {
		s.m.aborts.Inc()
		switch {
		case transient != nil:
			s.cfg.Logger.Warn("transaction aborted, retrying", "err", transient)
			_ = clock.Sleep(ctx, time.Second)
		case produceErr != nil:
			s.cfg.Logger.Error("transaction aborted: a produce failed, retrying", "err", *produceErr)
			_ = clock.Sleep(ctx, time.Second)
		default:
			s.cfg.Logger.Info("transaction aborted: the group rebalanced; the records are read again by their new owner")
		}
		return nil
	}
	s.m.commits.Inc()
	s.m.flush(s.tallies)
	done := s.cfg.Now()
	for i := range s.out[:s.nOut] {
		s.m.latency.Observe(done.Sub(s.out[i].Timestamp).Seconds())
	}
	return nil
}

// walker is the filter in force while a batch's records are walked, and
// its tally.
type walker struct {
	f *Filter
	t *tally
	// dropped is f's mark on a record it checked and dropped.
	dropped context.Context
}

// walk filters records in order inside the open transaction. The filter
// in force is loaded for each record, so a change applies from the next
// record on. A record the filter in force checked and dropped beforehand
// (precheck) costs one comparison and a count. It returns handle's
// error.
func (s *Streamer) walk(ctx context.Context, sess *kgo.GroupTransactSession, w *walker, rs []*kgo.Record, now time.Time) error {
	c := s.control.Load()
	for _, r := range rs {
		if f := c.current.Load(); f != w.f {
			w.f, w.t, w.dropped = f, s.tallyFor(f), f.marks[0]
		}
		if r.Context == w.dropped {
			w.t.in++
			w.t.dropped++
			continue
		}
		if err := s.handle(ctx, sess, r, now, w.f, w.t); err != nil {
			return err
		}
	}
	return nil
}

// handle filters one record with the filter f in force, tallied in t,
// inside the open transaction. It returns an error only for a failure that
// is not the record's fault (the registry did not answer), which aborts
// the batch to be tried again.
func (s *Streamer) handle(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record, now time.Time, f *Filter, t *tally) error {
	t.in++
	pass, checked := false, false
	if m, ok := r.Context.(*checkedMark); ok && m.filter == f {
		// Checked beforehand by the filter still in force (and so framed,
		// with a key).
		pass, checked = m.pass, true
	}
	switch {
	case checked:
	case r.Key == nil:
		t.deadLetter(deadletter.ReasonNoKey)
		sess.Produce(ctx, deadLetter(s.cfg.Topics.DLQ, r, deadletter.ReasonNoKey, errNoKey, s.cfg.InstanceID, now), s.promise)
		return nil
	case r.Value == nil: // a tombstone: pass it, so downstream tables delete too
		pass = true
	default:
		var err error
		pass, err = s.check(ctx, r, f)
		if err != nil && s.layouts.forgetReplayed(r) {
			// An operator replays dead letters once their cause is fixed
			// (a schema registered): ask the registry again, not the cache.
			pass, err = s.check(ctx, r, f)
		}
		if err != nil {
			reason := deadletter.ReasonOf(err)
			if reason == "" {
				return err
			}
			t.deadLetter(reason)
			sess.Produce(ctx, deadLetter(s.cfg.Topics.DLQ, r, reason, err, s.cfg.InstanceID, now), s.promise)
			return nil
		}
	}
	if !pass {
		t.dropped++
		return nil
	}
	t.passed++
	s.forward(ctx, sess, r, f)
	return nil
}

// check says whether the filter f passes a framed product. A record the
// streamer forwards is checked whole: the filtered topic holds only
// products that decode. A record it drops is checked only up to its name
// (the framing, the schema id, the three leading strings): walking the rest
// would cost a dropped record several times what reading its name does, and
// the components that decode the product topic (the sink, the collector)
// dead-letter a value that is malformed after its name.
func (s *Streamer) check(ctx context.Context, r *kgo.Record, f *Filter) (bool, error) {
	id, body, err := records.SplitHeader(r.Value)
	if err != nil {
		return false, err
	}
	lay, err := s.layouts.get(ctx, id)
	if err != nil {
		return false, err
	}
	pass, err := checkBody(lay, body, f)
	if err != nil {
		return false, fmt.Errorf("schema id %d: %w", id, err)
	}
	return pass, nil
}

// checkBody is check once the layout is known: the name's bounds, the
// match, and the fields after the name only when it passes.
func checkBody(lay *Layout, body []byte, f *Filter) (bool, error) {
	start, end, err := nameBounds(body)
	if err != nil {
		return false, err
	}
	if !f.Match(body[start:end]) {
		return false, nil
	}
	return true, lay.Rest(body, end)
}

// precheck checks product values as franz-go buffers them, on its fetch
// goroutines: it reads the name, matches it with the filter in force and
// walks the rest of a value that passes (check), and marks the record with
// the outcome. The consume loop, which every record passes through one at
// a time, then only tallies and forwards, unless the filter changed
// meanwhile. A value it cannot check at once (a schema id not looked up
// yet, or any fault) is left to the loop, which reports it.
type precheck struct{ s *Streamer }

// pollWaited is how long a poll takes when no records were waiting: it
// waited for a fetch. (One that finds records returns in microseconds.)
const pollWaited = 200 * time.Microsecond

func (p precheck) OnFetchRecordBuffered(r *kgo.Record) {
	// A Context franz-go set (record pools) is left alone.
	if !p.s.precheckOn.Load() || r.Context != nil || r.Key == nil || r.Value == nil || r.Topic != p.s.cfg.Topics.Products {
		return
	}
	id, body, err := records.SplitHeader(r.Value)
	if err != nil {
		return
	}
	lay := p.s.layouts.ready(id)
	c := p.s.control.Load()
	if lay == nil || c == nil {
		return
	}
	f := c.current.Load()
	if pass, err := checkBody(lay, body, f); err == nil {
		r.Context = f.marks[b2i(pass)]
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// forward produces r unchanged to the filtered topic, plus the filter
// version header.
func (s *Streamer) forward(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record, f *Filter) {
	out := &s.out[s.nOut]
	s.nOut++
	headers := f.headers // a record with none of its own: the filter's, shared
	if len(r.Headers) > 0 {
		start := len(s.hdrs)
		s.hdrs = append(s.hdrs, r.Headers...)
		s.hdrs = append(s.hdrs, f.header)
		end := len(s.hdrs)
		headers = s.hdrs[start:end:end]
	}
	*out = kgo.Record{
		Topic: s.cfg.Topics.Filtered, Key: r.Key, Value: r.Value,
		Headers: headers, Timestamp: r.Timestamp,
	}
	sess.Produce(ctx, out, s.promise)
}

func (s *Streamer) tallyFor(f *Filter) *tally {
	if n := len(s.tallies); n > 0 && s.tallies[n-1].filter == f {
		return &s.tallies[n-1]
	}
	s.tallies = append(s.tallies, tally{filter: f, version: string(f.header.Value)})
	return &s.tallies[len(s.tallies)-1]
}

// leave closes the session, which leaves the group, within leaveGrace.
func (s *Streamer) leave(sess *kgo.GroupTransactSession) {
	done := make(chan struct{})
	go func() {
		sess.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(leaveGrace):
		s.cfg.Logger.Warn("leaving the group takes longer than expected; stopping anyway", "waited", leaveGrace)
	}
}

// endContext bounds ending a transaction: normally by the transaction
// timeout, and by endGrace once ctx ends.
func endContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(endGrace, cancel) })
	return ectx, func() {
		stop()
		cancel()
	}
}

// layoutCache maps schema ids to layouts, asking the registry once per id.
// A negative answer is kept for a minute: a registry that lost its state
// may learn the id again. Only the consume loop uses it, but for ready.
type layoutCache struct {
	serde *records.Serde
	ours  avro.Schema
	now   func() time.Time
	m     map[int]layoutEntry
	// found holds the layouts found so far, for the fetch goroutines
	// (precheck): replaced, never changed, when one is added.
	found atomic.Pointer[foundLayouts]
	// The last id and its layout: nearly every record carries the id the
	// one before it did.
	lastID  int
	lastLay *Layout
}

// foundLayouts are the layouts found so far, and the one found last apart:
// producers write with the newest schema, so nearly every record carries
// its id, and comparing it costs less than a map lookup.
type foundLayouts struct {
	byID      map[int]*Layout
	newestID  int
	newestLay *Layout
}

type layoutEntry struct {
	lay     *Layout
	err     error
	retryAt time.Time
}

// forgetReplayed drops the cached failure of a replayed record's schema id
// (a record `shopstream dlq replay` sent back) and says whether it did.
func (c *layoutCache) forgetReplayed(r *kgo.Record) bool {
	id, _, err := records.SplitHeader(r.Value)
	if e, ok := c.m[id]; err != nil || !ok || e.err == nil {
		return false
	}
	for _, h := range r.Headers {
		if h.Key == deadletter.HeaderReplays {
			delete(c.m, id)
			return true
		}
	}
	return false
}

func (c *layoutCache) get(ctx context.Context, id int) (*Layout, error) {
	if id == c.lastID && c.lastLay != nil {
		return c.lastLay, nil
	}
	if e, ok := c.m[id]; ok && (e.err == nil || c.now().Before(e.retryAt)) {
		if e.err == nil {
			c.lastID, c.lastLay = id, e.lay
		}
		return e.lay, e.err
	}
	w, err := c.serde.WriterSchema(ctx, id)
	if err != nil {
		if deadletter.ReasonOf(err) != "" {
			c.m[id] = layoutEntry{err: err, retryAt: c.now().Add(time.Minute)}
		}
		return nil, err
	}
	lay, err := NewLayout(w, c.ours)
	if err != nil {
		err = fmt.Errorf("schema id %d: %w", id, err)
	}
	c.m[id] = layoutEntry{lay: lay, err: err, retryAt: c.now().Add(time.Minute)}
	if err == nil {
		c.lastID, c.lastLay = id, lay
		found := &foundLayouts{byID: map[int]*Layout{id: lay}, newestID: id, newestLay: lay}
		if old := c.found.Load(); old != nil {
			for k, v := range old.byID {
				found.byID[k] = v
			}
		}
		c.found.Store(found)
	}
	return lay, err
}

// ready returns the layout of id when the consume loop has found it, nil
// otherwise; it never blocks, and any goroutine may call it.
func (c *layoutCache) ready(id int) *Layout {
	found := c.found.Load()
	switch {
	case found == nil:
		return nil
	case id == found.newestID:
		return found.newestLay
	}
	return found.byID[id]
}
