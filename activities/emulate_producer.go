package activities

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/workflows"
)

// commitMarker commits, inside the open transaction (which fencedProducer
// added the marker group to), the batch's end offsets for its marker group:
// they become visible exactly when the records do, and a retry reads them
// to learn the batch was committed.
func commitMarker(ctx context.Context, cl *kgo.Client, txnID, group, topic string, topicID kadm.TopicID, ends map[int32]int64, count int64) error {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("read producer id for the commit marker: %w", err)
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txnID, group, id, epoch
	req.Generation, req.MemberID = -1, ""
	meta := markerPrefix + strconv.FormatInt(count, 10)
	t := kmsg.NewTxnOffsetCommitRequestTopic()
	t.Topic, t.TopicID = topic, topicID // the name up to v5, the id from v6
	for p, off := range ends {
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = p, off, -1, &meta
		t.Partitions = append(t.Partitions, rp)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("commit marker offsets for group %s: %w", group, err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return fmt.Errorf("commit marker offset %s[%d] for group %s: %w", rt.Topic, rp.Partition, group, err)
			}
		}
	}
	return nil
}

// producerKey names the producer of one slot of one run.
type producerKey struct{ txnID, topic string }

// producer is a slot's transactional client, kept by a worker between
// batches.
type producer struct {
	cl      *kgo.Client
	topicID kadm.TopicID
	idle    *time.Timer
}

// producerIdle is how long a worker keeps a slot's producer unused.
const producerIdle = time.Minute

// fencedProducer returns the slot's producer with a transaction open that
// holds the marker group, once no other producer of the slot can commit:
// a kept producer proves it by the broker accepting the marker group, a new
// one by initialising the transactional id.
func (e *Emulate) fencedProducer(ctx context.Context, key producerKey, marker string, in workflows.EmulateBatchInput) (*producer, error) {
	if p := e.take(key); p != nil {
		if err := beginWithMarker(ctx, p.cl, key.txnID, marker); err == nil {
			return p, nil
		}
		// Fenced by another worker's producer of this slot, or broken:
		// start over with a new one, which fences the other.
		p.cl.Close()
	}
	p, err := e.newProducer(ctx, key, in)
	if err != nil {
		return nil, err
	}
	if err := beginWithMarker(ctx, p.cl, key.txnID, marker); err != nil {
		p.cl.Close()
		return nil, err
	}
	return p, nil
}

func (e *Emulate) newProducer(ctx context.Context, key producerKey, in workflows.EmulateBatchInput) (*producer, error) {
	txnTimeout := time.Minute
	if in.Rate > 0 {
		txnTimeout = max(txnTimeout, time.Duration(2*float64(in.Count)/in.Rate*float64(time.Second)))
	}
	opts := append([]kgo.Opt{
		kgo.WithCompressor(e.compressor),
		kgo.TransactionalID(key.txnID),
		kgo.TransactionTimeout(txnTimeout),
		kgo.DefaultProduceTopic(key.topic),
	}, ProducerOpts()...)
	cl, err := e.kafka.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("create transactional producer %s: %w", key.txnID, err)
	}
	// A new client has no cached metadata: a topic created a moment ago (as
	// `shopstream dev` does before the first run) is seen.
	tid, err := topicID(ctx, kadm.NewClient(cl), key.topic)
	if err != nil {
		cl.Close()
		return nil, err
	}
	// Initialising the transactional id fences every earlier producer of
	// the slot: from now on none of them can commit.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("initialise transactional id %s: %w", key.txnID, err)
	}
	return &producer{cl: cl, topicID: tid}, nil
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

// take hands out the slot's kept producer, if this worker has one.
func (e *Emulate) take(key producerKey) *producer {
	e.prodsMu.Lock()
	defer e.prodsMu.Unlock()
	p := e.prods[key]
	if p != nil {
		delete(e.prods, key)
		p.idle.Stop()
	}
	return p
}

// park keeps a producer whose transaction has ended for the slot's next
// batch, and closes it if none comes within producerIdle.
func (e *Emulate) park(key producerKey, p *producer) {
	e.prodsMu.Lock()
	defer e.prodsMu.Unlock()
	if old := e.prods[key]; old != nil {
		old.idle.Stop()
		old.cl.Close()
	}
	e.prods[key] = p
	p.idle = time.AfterFunc(producerIdle, func() {
		e.prodsMu.Lock()
		mine := e.prods[key] == p
		if mine {
			delete(e.prods, key)
		}
		e.prodsMu.Unlock()
		if mine {
			p.cl.Close()
		}
	})
}

// closeProducers closes the producers the worker keeps. (Not exported: the
// worker registers every exported method as an activity.)
func (e *Emulate) closeProducers() {
	e.prodsMu.Lock()
	defer e.prodsMu.Unlock()
	for k, p := range e.prods {
		p.idle.Stop()
		p.cl.Close()
		delete(e.prods, k)
	}
}

// topicID looks the topic up, so a missing topic is a clear error and the
// marker can name the topic by id where the protocol wants that.
func topicID(ctx context.Context, admin *kadm.Client, topic string) (kadm.TopicID, error) {
	details, err := admin.ListTopics(ctx, topic)
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
	return d.ID, nil
}

// committedBatch reads a batch's marker. Only call it after fencing the
// batch's transactional id, so that no commit of it can still be pending.
func (e *Emulate) committedBatch(ctx context.Context, group string) (workflows.EmulateBatchResult, bool, error) {
	var res workflows.EmulateBatchResult
	offs, err := e.admin.FetchOffsets(kadm.RequireStable(ctx), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("read commit marker of group %s: %w", group, err)
	}
	if err := offs.Error(); err != nil {
		return res, false, fmt.Errorf("read commit marker of group %s: %w", group, err)
	}
	res.Partitions = map[int32]int64{}
	found := false
	offs.Each(func(o kadm.OffsetResponse) {
		if !strings.HasPrefix(o.Metadata, markerPrefix) {
			return
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(o.Metadata, markerPrefix), 10, 64)
		if err != nil {
			return
		}
		found = true
		res.Records = n
		res.Partitions[o.Partition] = o.At
	})
	res.AlreadyCommitted = found
	return res, found, nil
}

// abort ends the open transaction without committing, with a context of its
// own: the activity's may be the reason we are aborting.
func abort(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = cl.AbortBufferedRecords(ctx)
	_ = cl.EndTransaction(ctx, kgo.TryAbort)
}

// abortOpen ends a transaction that holds only the marker group: kgo did not
// add it, so kgo's EndTransaction would not end it. The producer is closed
// afterwards, as its epoch has moved on.
func abortOpen(cl *kgo.Client, txnID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return
	}
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = txnID, id, epoch, false
	_, _ = req.RequestWith(ctx, cl)
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
