package recommender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/records"
)

// joiner consumes prompts as a group member and, in one transaction per
// polled batch, produces each user's new Recommendation and commits the
// prompts' offsets.
type joiner struct {
	cfg   *Options
	table *Table
	admin *kadm.Client
	m     *metrics
	log   *slog.Logger
	parts topicPartitions

	// users holds the committed Recommendation of the users of the
	// partitions this instance has restored, at most MaxUsers of them after
	// each batch; only the poll loop touches it. lastUse says when each was
	// last joined (restored users have none: they go first). partial marks
	// the partitions some of whose users were forgotten: a prompt of a user
	// not held there reads the user back from the recommendations topic.
	users   map[int32]map[string]*records.Recommendation
	lastUse map[int32]map[string]time.Time
	partial map[int32]bool

	// stale lists partitions revoked or lost since the last batch; the
	// group's callbacks fill it, the poll loop empties it.
	mu    sync.Mutex
	stale map[int32]bool

	matches []Product // reused lookup buffer

	// onJoined, when set, is called on every partition assignment.
	onJoined func()
}

func newJoiner(cfg *Options, table *Table, admin *kadm.Client, m *metrics, parts topicPartitions) *joiner {
	return &joiner{
		cfg: cfg, table: table, admin: admin, m: m, parts: parts,
		log:     cfg.Logger.With("part", "join"),
		users:   map[int32]map[string]*records.Recommendation{},
		lastUse: map[int32]map[string]time.Time{},
		partial: map[int32]bool{},
		stale:   map[int32]bool{},
	}
}

func (j *joiner) markStale(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, p := range lost[j.cfg.Topics.Find] {
		j.stale[p] = true
	}
}

// pending is one batch's work: the new state of the users it touched, kept
// apart until the transaction commits.
type pending struct {
	users    map[int32]map[string]*records.Recommendation
	prompts  []time.Time // record timestamps of joined prompts, for latency
	matched  int
	products int
	dead     map[string]int // reason -> count
}

func (j *joiner) run(ctx context.Context) error {
	sess, err := j.cfg.Kafka.NewGroupTransactSession(
		kgo.ConsumerGroup(j.cfg.Group),
		kgo.ConsumeTopics(j.cfg.Topics.Find),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(j.cfg.Group+"-"+j.cfg.InstanceID),
		kgo.TransactionTimeout(j.cfg.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		// kfake holds a new member's first fetch for the whole max wait
		// even when prompts arrive; a second bounds that first answer.
		kgo.FetchMaxWait(time.Second),
		// Each user's recommendation goes to the partition number of the
		// user's prompts; see checkTopics.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsRevoked(j.markStale),
		kgo.OnPartitionsLost(j.markStale),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			j.log.Info("partitions assigned", "topic", j.cfg.Topics.Find, "partitions", a[j.cfg.Topics.Find])
			if j.onJoined != nil {
				j.onJoined()
			}
		}),
	)
	if err != nil {
		return fmt.Errorf("create the recommender's transactional Kafka client: %w", err)
	}
	crashed := false
	defer func() {
		if !crashed {
			sess.Close()
		}
	}()
	j.log.Info("joining prompts", "group", j.cfg.Group, "topic", j.cfg.Topics.Find, "transactional_id", j.cfg.Group+"-"+j.cfg.InstanceID)

	for backoff := time.Duration(0); ; {
		fetches := sess.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				j.log.Warn("fetch prompts", "topic", t, "partition", p, "err", err)
			}
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		committed, err := j.batch(ctx, sess, fetches)
		var crash *crashError
		if errors.As(err, &crash) {
			crashed = true
			sess.Client().Close()
			return crash.err
		}
		if err != nil {
			// Nothing of the batch was committed, and the session has
			// rewound to the committed offsets: the same prompts come again.
			backoff = min(max(2*backoff, 250*time.Millisecond), 5*time.Second)
			j.log.Warn("batch not joined; retrying", "err", err, "backoff", backoff)
			if clock.Sleep(ctx, backoff) != nil {
				return nil
			}
			continue
		}
		if committed {
			backoff = 0
		}
	}
}

// crashError stops the loop without ending the transaction (tests only).
type crashError struct{ err error }

func (c *crashError) Error() string { return c.err.Error() }

// batch joins one poll's prompts in one transaction. It returns whether the
// transaction committed; an error means it did not.
func (j *joiner) batch(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) (bool, error) {
	t0 := time.Now()
	var tRestored, tJoined time.Time
	defer func() {
		if !tJoined.IsZero() {
			j.log.Debug("batch", "records", fetches.NumRecords(), "restore", tRestored.Sub(t0), "join", tJoined.Sub(tRestored), "commit", time.Since(tJoined))
		}
	}()
	j.dropStale()
	var need []int32
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if _, ok := j.users[fp.Partition]; !ok && len(fp.Records) > 0 {
			need = append(need, fp.Partition)
		}
	})
	if len(need) > 0 {
		restored, err := j.restore(ctx, need, nil)
		if err != nil {
			return false, j.abort(sess, fmt.Errorf("restore recommendations of partitions %v: %w", need, err))
		}
		maps.Copy(j.users, restored)
		j.m.restores.Add(float64(len(need)))
		j.log.Info("restored users' recommendations", "partitions", need, "users", countUsers(restored))
		j.evict()
	}
	if err := j.recall(ctx, fetches); err != nil {
		return false, j.abort(sess, err)
	}

	tRestored = time.Now()
	if err := sess.Begin(); err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}
	pend := &pending{users: map[int32]map[string]*records.Recommendation{}, dead: map[string]int{}}
	var produceErr error
	var produceMu sync.Mutex
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			produceMu.Lock()
			if produceErr == nil {
				produceErr = fmt.Errorf("produce to %s partition %d: %w", r.Topic, r.Partition, err)
			}
			produceMu.Unlock()
		}
	}
	var err error
	fetches.EachRecord(func(r *kgo.Record) {
		if err != nil {
			return
		}
		var out *kgo.Record
		out, err = j.join(ctx, r, pend)
		if err == nil {
			sess.Produce(ctx, out, promise)
		}
	})
	if err != nil {
		return false, j.abort(sess, err)
	}
	if err := sess.Client().Flush(ctx); err != nil {
		return false, j.abort(sess, fmt.Errorf("flush: %w", err))
	}
	if j.cfg.hooks != nil && j.cfg.hooks.afterProduce != nil {
		if herr := j.cfg.hooks.afterProduce(); herr != nil {
			return false, &crashError{herr}
		}
	}
	produceMu.Lock()
	perr := produceErr
	produceMu.Unlock()
	if perr != nil {
		return false, j.abort(sess, perr)
	}
	tJoined = time.Now()
	// Ending must not be cut short by a shutdown: the batch is already
	// produced, and a clean end beats a transaction left to time out.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	committed, err := sess.End(ectx, kgo.TryCommit)
	if err != nil {
		j.m.transactions.WithLabelValues("aborted").Inc()
		return false, fmt.Errorf("end transaction: %w", err)
	}
	if !committed {
		j.m.transactions.WithLabelValues("aborted").Inc()
		j.log.Info("transaction aborted by a rebalance; the prompts will be joined again")
		return false, nil
	}
	j.commit(pend)
	return true, nil
}

// abort ends the open transaction without committing and returns err.
func (j *joiner) abort(sess *kgo.GroupTransactSession, err error) error {
	ectx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, aerr := sess.End(ectx, kgo.TryAbort); aerr != nil {
		err = errors.Join(err, fmt.Errorf("abort transaction: %w", aerr))
	}
	j.m.transactions.WithLabelValues("aborted").Inc()
	return err
}

// commit makes a committed batch's state the instance's and counts it.
func (j *joiner) commit(p *pending) {
	now := j.cfg.Now()
	for part, users := range p.users {
		if j.users[part] == nil {
			j.users[part] = map[string]*records.Recommendation{}
		}
		maps.Copy(j.users[part], users)
		if j.lastUse[part] == nil {
			j.lastUse[part] = map[string]time.Time{}
		}
		for u := range users {
			j.lastUse[part][u] = now
		}
	}
	j.evict()
	for _, ts := range p.prompts {
		j.m.joinLatency.Observe(max(now.Sub(ts).Seconds(), 0))
	}
	j.m.transactions.WithLabelValues("committed").Inc()
	j.m.prompts.WithLabelValues("matched").Add(float64(p.matched))
	j.m.prompts.WithLabelValues("unmatched").Add(float64(len(p.prompts) - p.matched))
	j.m.matches.Add(float64(p.products))
	for reason, n := range p.dead {
		j.m.deadLetters.WithLabelValues("prompts", reason).Add(float64(n))
	}
	j.m.users.Set(float64(countUsers(j.users)))
}

// dropStale forgets the users of partitions revoked or lost: another
// instance may change them, and they are restored again if they come back.
func (j *joiner) dropStale() {
	j.mu.Lock()
	stale := slices.Collect(maps.Keys(j.stale))
	clear(j.stale)
	j.mu.Unlock()
	for _, p := range stale {
		delete(j.users, p)
		delete(j.lastUse, p)
		delete(j.partial, p)
	}
}

// join turns one prompt into the record to produce: the user's new
// Recommendation, or a dead letter.
func (j *joiner) join(ctx context.Context, r *kgo.Record, pend *pending) (*kgo.Record, error) {
	var prompt records.SearchPrompt
	err := classifyDecode(j.cfg.Serde.Decode(ctx, r.Value, &prompt))
	var bad *badRecord
	switch {
	case errors.As(err, &bad):
		return j.deadLetter(r, bad, pend), nil
	case err != nil:
		return nil, fmt.Errorf("decode prompt at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	norm := Normalize(prompt.Query)
	switch {
	case prompt.UserID == "":
		return j.deadLetter(r, &badRecord{deadletter.ReasonEmptyUser, errors.New("the prompt has no user_id")}, pend), nil
	case len(prompt.UserID) > MaxUserIDBytes:
		return j.deadLetter(r, &badRecord{deadletter.ReasonUserTooLong, fmt.Errorf("the prompt's user_id is %d bytes, more than %d", len(prompt.UserID), MaxUserIDBytes)}, pend), nil
	case string(r.Key) != prompt.UserID:
		return j.deadLetter(r, &badRecord{deadletter.ReasonKeyMismatch, fmt.Errorf("record key %q is not the prompt's user_id %q", r.Key, prompt.UserID)}, pend), nil
	case norm == "":
		return j.deadLetter(r, &badRecord{deadletter.ReasonEmptyQuery, errors.New("the prompt's query is empty")}, pend), nil
	case len(prompt.Query) > MaxQueryBytes:
		return j.deadLetter(r, &badRecord{deadletter.ReasonQueryTooLong, fmt.Errorf("the prompt's query is %d bytes, more than %d", len(prompt.Query), MaxQueryBytes)}, pend), nil
	}

	users := pend.users[r.Partition]
	if users == nil {
		users = map[string]*records.Recommendation{}
		pend.users[r.Partition] = users
	}
	prev, ok := users[prompt.UserID]
	if !ok {
		prev = j.users[r.Partition][prompt.UserID]
	}
	j.matches = j.table.Lookup(j.matches[:0], norm)
	next := Apply(prev, &prompt, j.matches)
	users[prompt.UserID] = next
	pend.prompts = append(pend.prompts, r.Timestamp)
	if len(j.matches) > 0 {
		pend.matched++
		pend.products += len(j.matches)
	}
	value, err := j.cfg.Serde.Encode(ctx, nil, j.cfg.Topics.Recommendations, next)
	if err != nil {
		return nil, fmt.Errorf("encode the recommendation of user %q: %w", prompt.UserID, err)
	}
	return &kgo.Record{Topic: j.cfg.Topics.Recommendations, Partition: r.Partition, Key: r.Key, Value: value}, nil
}

func (j *joiner) deadLetter(r *kgo.Record, bad *badRecord, pend *pending) *kgo.Record {
	pend.dead[bad.reason]++
	j.log.Warn("prompt to the dead-letter topic", "partition", r.Partition, "offset", r.Offset, "reason", bad.reason, "err", bad.err)
	d := deadLetter(j.cfg.Topics.DLQ, r, bad, j.cfg.Now())
	d.Partition = r.Partition % j.parts.dlq
	return d
}
