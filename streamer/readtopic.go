package streamer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
)

// ErrNoTopic says a topic the streamer needs does not exist.
var ErrNoTopic = errors.New("topic does not exist (run `shopstream bootstrap`)")

// catchUp knows, for each partition of a topic, the end offset a
// read_committed reader could see when it started, and how far the reader
// has got. Control records (transaction markers) count as progress, so the
// reader must keep them (kgo.KeepControlRecords).
type catchUp struct {
	end  map[int32]int64
	next map[int32]int64
}

// newCatchUp lists the stable end offsets of topic.
func newCatchUp(ctx context.Context, adm *kadm.Client, topic string) (*catchUp, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, listErr(topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, listErr(topic, err)
	}
	if len(ends[topic]) == 0 {
		return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
	}
	c := &catchUp{end: map[int32]int64{}, next: map[int32]int64{}}
	for p, o := range ends[topic] {
		c.end[p] = o.Offset
		c.next[p] = starts[topic][p].Offset
	}
	return c, nil
}

func listErr(topic string, err error) error {
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("%s: %w", topic, ErrNoTopic)
	}
	return fmt.Errorf("list offsets of topic %s: %w", topic, err)
}

func (c *catchUp) see(r *kgo.Record) {
	if r.Offset+1 > c.next[r.Partition] {
		c.next[r.Partition] = r.Offset + 1
	}
}

func (c *catchUp) done() bool {
	for p, end := range c.end {
		if c.next[p] < end {
			return false
		}
	}
	return true
}

// readerOpts are the options of a plain (no group) read_committed reader of
// topic from its start.
func readerOpts(topic string) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}
}

// ReadTopic reads topic from its start up to the end it had when the call
// began, as a read_committed consumer outside any group, and hands every
// data record to each, with clients made by k.
//
// A compacted topic can lose its newest offset (a tombstone cleaned away);
// idle > 0 then stops the read once no record came for that long. With idle
// 0 the read waits for every offset, bounded by ctx.
func ReadTopic(ctx context.Context, k *clients.Kafka, topic string, idle time.Duration, each func(*kgo.Record)) error {
	return ReadTopicTail(ctx, k, topic, 0, idle, each)
}

// ReadTopicTail is ReadTopic over only the last tail offsets of each
// partition (tail <= 0: all of them).
func ReadTopicTail(ctx context.Context, k *clients.Kafka, topic string, tail int64, idle time.Duration, each func(*kgo.Record)) error {
	adm, err := k.NewClient()
	if err != nil {
		return fmt.Errorf("create a reader of topic %s: %w", topic, err)
	}
	cu, err := newCatchUp(ctx, kadm.NewClient(adm), topic)
	adm.Close()
	if err != nil {
		return err
	}
	from := map[int32]kgo.Offset{}
	for p, end := range cu.end {
		if tail > 0 && end-tail > cu.next[p] {
			cu.next[p] = end - tail
		}
		from[p] = kgo.NewOffset().At(cu.next[p])
	}
	cl, err := k.NewClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
	if err != nil {
		return fmt.Errorf("create a reader of topic %s: %w", topic, err)
	}
	defer cl.Close()
	return readUntil(ctx, cl, topic, cu, idle, each)
}

func readUntil(ctx context.Context, cl *kgo.Client, topic string, cu *catchUp, idle time.Duration, each func(*kgo.Record)) error {
	for !cu.done() {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if idle > 0 {
			pctx, cancel = context.WithTimeout(ctx, idle)
		}
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read topic %s: %w", topic, err)
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return fmt.Errorf("read topic %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		if fs.Empty() && idle > 0 {
			return nil // idle: the tail we waited for is not there
		}
		fs.EachRecord(func(r *kgo.Record) {
			cu.see(r)
			if !r.Attrs.IsControl() {
				each(r)
			}
		})
	}
	return nil
}
