// Package txnmarker makes one unit of work that produces Kafka records (an
// emulation batch, a backfill range, a dead-letter replay range) happen
// exactly once across retries, with Kafka alone.
//
// The unit's records and an offset commit for a consumer group of its own
// (the unit's marker) go into one transaction, so the marker becomes visible
// exactly when the records do. A retried attempt first makes sure that no
// earlier attempt can commit any more: a new producer's InitProducerID
// fences every earlier producer of the same transactional id (their open
// transactions are aborted, or completed if already committing); a producer
// kept from an earlier unit adds the marker group to its transaction, which
// the broker only accepts while nobody has fenced it. Only then does it read
// the marker: found, the unit was committed by an earlier attempt, which the
// marker's offsets and metadata describe; not found, it was not, and the
// attempt produces. A producer that fences ours later makes our commit fail,
// and the retry finds the other commit's marker.
//
// The transactional id must belong to one unit at a time (a slot of a run,
// or a partition whose ranges run in order); the marker group to one unit.
package txnmarker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/clients"
)

// Marker group families: the first part of every marker group's name, so
// that lag tools can tell markers from consumers.
const (
	FamilyEmulate   = "emulate"
	FamilyBackfill  = "backfill"
	FamilyDLQReplay = "dlq-replay"
)

func families() []string { return []string{FamilyEmulate, FamilyBackfill, FamilyDLQReplay} }

// Group names the marker group of one unit of a workflow run:
// shopstream-<family>/<workflow id>/<unit>.
func Group(family, workflowID, unit string) string {
	return "shopstream-" + family + "/" + workflowID + "/" + unit
}

// TransactionalID names the transactional id of one lane of a workflow run
// (the same shape as Group; the two namespaces are apart in Kafka).
func TransactionalID(family, workflowID, lane string) string {
	return "shopstream-" + family + "/" + workflowID + "/" + lane
}

// IsMarkerGroup says whether a consumer group is a unit's marker, not a
// consumer.
func IsMarkerGroup(group string) bool {
	for _, f := range families() {
		if strings.HasPrefix(group, "shopstream-"+f+"/") {
			return true
		}
	}
	return false
}

// Mark is one committed offset of a marker: where the unit ended in a
// partition, and what it says about itself.
type Mark struct {
	Topic     string
	Partition int32
	Offset    int64
	Metadata  string
}

// Key names one lane's producer: its transactional id and the topic it
// produces to by default (which must exist).
type Key struct{ TxnID, Topic string }

// Producers hands out fenced transactional producers and keeps each lane's
// producer between units, so a lane does not build a client, connections and
// buffers for every unit.
type Producers struct {
	kafka *clients.Kafka
	admin *kadm.Client
	opts  []kgo.Opt
	// Idle is how long a lane's producer is kept unused.
	idle time.Duration

	mu    sync.Mutex
	prods map[Key]*Producer
}

// New hands out producers made by kafka with opts added; admin reads the
// markers and deletes them.
func New(kafka *clients.Kafka, admin *kadm.Client, opts ...kgo.Opt) *Producers {
	return &Producers{kafka: kafka, admin: admin, opts: opts, idle: time.Minute, prods: map[Key]*Producer{}}
}

// Producer is a lane's transactional client with a transaction open that
// holds the unit's marker group.
type Producer struct {
	cl       *kgo.Client
	key      Key
	marker   string
	topicIDs map[string]kadm.TopicID
	idle     *time.Timer
}

// Client is the transactional client: produce the unit's records with it.
func (p *Producer) Client() *kgo.Client { return p.cl }

// Begin returns the lane's producer with a transaction open that holds the
// marker group, once no other producer of the lane can commit any more.
// txnTimeout applies to a new producer.
func (ps *Producers) Begin(ctx context.Context, key Key, marker string, txnTimeout time.Duration) (*Producer, error) {
	if p := ps.take(key); p != nil {
		if err := beginWithMarker(ctx, p.cl, key.TxnID, marker); err == nil {
			p.marker = marker
			return p, nil
		}
		// Fenced by another worker's producer of this lane, or broken:
		// start over with a new one, which fences the other.
		p.cl.Close()
	}
	p, err := ps.newProducer(ctx, key, txnTimeout)
	if err != nil {
		return nil, err
	}
	if err := beginWithMarker(ctx, p.cl, key.TxnID, marker); err != nil {
		p.cl.Close()
		return nil, err
	}
	p.marker = marker
	return p, nil
}

func (ps *Producers) newProducer(ctx context.Context, key Key, txnTimeout time.Duration) (*Producer, error) {
	opts := append([]kgo.Opt{
		kgo.TransactionalID(key.TxnID),
		kgo.TransactionTimeout(txnTimeout),
		kgo.DefaultProduceTopic(key.Topic),
	}, ps.opts...)
	cl, err := ps.kafka.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("create transactional producer %s: %w", key.TxnID, err)
	}
	p := &Producer{cl: cl, key: key, topicIDs: map[string]kadm.TopicID{}}
	// A new client has no cached metadata: a topic created a moment ago (as
	// `shopstream dev` does before the first run) is seen.
	if _, err := p.topicID(ctx, key.Topic); err != nil {
		cl.Close()
		return nil, err
	}
	// Initialising the transactional id fences every earlier producer of
	// the lane: from now on none of them can commit.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("initialise transactional id %s: %w", key.TxnID, err)
	}
	return p, nil
}

// topicID looks the topic up once, so a missing topic is a clear error and
// the marker can name the topic by id where the protocol wants that.
func (p *Producer) topicID(ctx context.Context, topic string) (kadm.TopicID, error) {
	if id, ok := p.topicIDs[topic]; ok {
		return id, nil
	}
	details, err := kadm.NewClient(p.cl).ListTopics(ctx, topic)
	if err != nil {
		return kadm.TopicID{}, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return kadm.TopicID{}, fmt.Errorf("topic %s does not exist: run `shopstream bootstrap` (or `shopstream dev`) to create it", topic)
	}
	if d.Err != nil {
		return kadm.TopicID{}, fmt.Errorf("describe topic %s: %w", topic, d.Err)
	}
	p.topicIDs[topic] = d.ID
	return d.ID, nil
}

// beginWithMarker opens a transaction and adds the marker group to it.
func beginWithMarker(ctx context.Context, cl *kgo.Client, txnID, group string) error {
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("read producer id of %s: %w", txnID, err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	code, err := retryConcurrent(ctx, func() (int16, error) {
		r, err := add.RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		return r.ErrorCode, nil
	})
	if err = errors.Join(err, kerr.ErrorForCode(code)); err != nil {
		return fmt.Errorf("add marker group %s to a transaction of %s: %w", group, txnID, err)
	}
	return nil
}

// Committed reads a marker: the marks an earlier attempt committed, and
// whether it committed at all. Only call it with the lane fenced (after
// Begin), so that no commit of the unit can still be pending.
func (ps *Producers) Committed(ctx context.Context, marker string) ([]Mark, bool, error) {
	offs, err := ps.admin.FetchOffsets(kadm.RequireStable(ctx), marker)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil, false, nil
	}
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return nil, false, fmt.Errorf("read commit marker of group %s: %w", marker, err)
	}
	var marks []Mark
	offs.Each(func(o kadm.OffsetResponse) {
		marks = append(marks, Mark{Topic: o.Topic, Partition: o.Partition, Offset: o.At, Metadata: o.Metadata})
	})
	return marks, len(marks) > 0, nil
}

// Commit commits the open transaction, in which the unit produced records
// records, with the unit's marks: they become visible exactly when the
// records do. A unit must leave at least one mark. On an error the
// transaction is aborted.
func (p *Producer) Commit(ctx context.Context, marks []Mark, records int) error {
	if len(marks) == 0 {
		p.Abort()
		return errors.New("a unit must commit at least one mark")
	}
	if err := p.commitMarks(ctx, marks); err != nil {
		p.Abort()
		return err
	}
	if records == 0 {
		// kgo ends only transactions it produced in; this one holds only
		// the marker.
		if err := p.endMarkerOnly(ctx, true); err != nil {
			p.AbortMarkerOnly()
			return fmt.Errorf("commit transaction: %w", err)
		}
		return nil
	}
	if err := p.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		p.Abort()
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

func (p *Producer) commitMarks(ctx context.Context, marks []Mark) error {
	id, epoch, err := p.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("read producer id for the commit marker: %w", err)
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = p.key.TxnID, p.marker, id, epoch
	req.Generation, req.MemberID = -1, ""
	byTopic := map[string]int{}
	for _, m := range marks {
		i, ok := byTopic[m.Topic]
		if !ok {
			tid, err := p.topicID(ctx, m.Topic)
			if err != nil {
				return err
			}
			t := kmsg.NewTxnOffsetCommitRequestTopic()
			t.Topic, t.TopicID = m.Topic, tid // the name up to v5, the id from v6
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			byTopic[m.Topic] = i
		}
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		meta := m.Metadata
		rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = m.Partition, m.Offset, -1, &meta
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	resp, err := req.RequestWith(ctx, p.cl)
	if err != nil {
		return fmt.Errorf("commit marker offsets for group %s: %w", p.marker, err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return fmt.Errorf("commit marker offset %s[%d] for group %s: %w", rt.Topic, rp.Partition, p.marker, err)
			}
		}
	}
	return nil
}

// Abort ends the open transaction without committing, with a context of
// its own: the caller's may be the reason it aborts.
func (p *Producer) Abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.cl.AbortBufferedRecords(ctx)
	_ = p.cl.EndTransaction(ctx, kgo.TryAbort)
}

// AbortMarkerOnly ends a transaction that holds only the marker group: kgo
// did not add it, so kgo's EndTransaction would not end it. Release the
// producer without keeping it afterwards: kgo does not know the transaction
// ended.
func (p *Producer) AbortMarkerOnly() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.endMarkerOnly(ctx, false)
}

// endMarkerOnly ends a transaction that holds only the marker group.
func (p *Producer) endMarkerOnly(ctx context.Context, commit bool) error {
	id, epoch, err := p.cl.ProducerID(ctx)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = p.key.TxnID, id, epoch, commit
	code, err := retryConcurrent(ctx, func() (int16, error) {
		r, err := req.RequestWith(ctx, p.cl)
		if err != nil {
			return 0, err
		}
		return r.ErrorCode, nil
	})
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(code)
}

// Release gives the producer back: kept for the lane's next unit when keep
// (its transaction committed), closed otherwise.
func (ps *Producers) Release(p *Producer, keep bool) {
	if !keep {
		p.cl.Close()
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if old := ps.prods[p.key]; old != nil {
		old.idle.Stop()
		old.cl.Close()
	}
	ps.prods[p.key] = p
	p.idle = time.AfterFunc(ps.idle, func() {
		ps.mu.Lock()
		mine := ps.prods[p.key] == p
		if mine {
			delete(ps.prods, p.key)
		}
		ps.mu.Unlock()
		if mine {
			p.cl.Close()
		}
	})
}

// take hands out the lane's kept producer, if there is one.
func (ps *Producers) take(key Key) *Producer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.prods[key]
	if p != nil {
		delete(ps.prods, key)
		p.idle.Stop()
	}
	return p
}

// Close closes every kept producer.
func (ps *Producers) Close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.prods {
		p.idle.Stop()
		p.cl.Close()
		delete(ps.prods, k)
	}
}

// DeleteMarkers deletes marker groups whose units the workflow has recorded
// as done (so never retried again); one that is already gone is fine. It
// returns how many it deleted.
func (ps *Producers) DeleteMarkers(ctx context.Context, groups []string) (int, error) {
	deleted := 0
	const chunk = 200
	for len(groups) > 0 {
		n := min(chunk, len(groups))
		resp, err := ps.admin.DeleteGroups(ctx, groups[:n]...)
		if err != nil {
			return deleted, fmt.Errorf("delete commit markers %s to %s: %w", groups[0], groups[n-1], err)
		}
		for _, r := range resp {
			switch {
			case r.Err == nil:
				deleted++
			case errors.Is(r.Err, kerr.GroupIDNotFound):
			default:
				return deleted, fmt.Errorf("delete commit marker %s: %w", r.Group, r.Err)
			}
		}
		groups = groups[n:]
	}
	return deleted, nil
}

// retryConcurrent repeats a transactional request while the coordinator says
// an earlier transaction of this id is still ending.
func retryConcurrent(ctx context.Context, do func() (int16, error)) (int16, error) {
	backoff := 20 * time.Millisecond
	for {
		code, err := do()
		if err != nil || code != kerr.ConcurrentTransactions.Code {
			return code, err
		}
		select {
		case <-ctx.Done():
			return code, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
