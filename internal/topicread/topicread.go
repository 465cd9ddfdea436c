// Package topicread reads a topic as a read_committed consumer outside any
// group: every partition (or some) up to the last stable offset it had when
// the read began, only the last N offsets of each, or on from there as new
// records are committed.
//
// Reaching the last stable offset is less simple than it looks. The offset
// before it is often a transaction marker, which a consumer never hands out,
// so a reader that waits for a record at end-1 waits forever; this one
// keeps control records (kgo.KeepControlRecords) to see its position pass
// them, and hands out only data records. A compacted topic can lose its
// newest offset altogether; Options.Idle gives up on such an end.
package topicread

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

// ErrNoTopic says the topic to read does not exist.
var ErrNoTopic = errors.New("topic does not exist (run `shopstream bootstrap`)")

// Options say which part of a topic to read, and how.
type Options struct {
	// Partitions limits the read to these partitions; nil reads them all.
	Partitions []int32
	// Tail > 0 starts each partition Tail offsets before its end (markers
	// count as offsets), or at its start when it holds fewer.
	Tail int64
	// FromEnd starts each partition at its end: only records committed
	// afterwards are read. For Open and Poll; Read then reads nothing.
	FromEnd bool
	// Idle > 0 ends the catch-up once no record (nor marker) came for that
	// long, for a compacted topic whose newest offset may be gone. With 0,
	// the catch-up waits for every end, bounded by its context.
	Idle time.Duration
	// OnFetchError decides about an error fetching a partition: nil goes
	// on (franz-go retries), an error ends the read. Unset, every fetch
	// error ends the read.
	OnFetchError func(topic string, partition int32, err error) error
}

// Read reads topic up to the last stable offset of each partition as it
// was when Read began, and hands each data record before it to each, in
// offset order within a partition, with clients made by k. An error from
// each ends the read.
func Read(ctx context.Context, k *clients.Kafka, topic string, o Options, each func(*kgo.Record) error) error {
	if o.FromEnd {
		return nil
	}
	spans, err := listSpans(ctx, k, nil, topic, o)
	if err != nil {
		return err
	}
	return readSpans(ctx, k, map[string]map[int32]*span{topic: spans}, o, each)
}

// Range is the offsets [From, To) of one partition.
type Range struct{ From, To int64 }

// ReadRanges reads the given offsets of several topics in one pass and
// hands each data record in its range to each. Each range's end must be
// reachable: at most the partition's last stable offset.
func ReadRanges(ctx context.Context, k *clients.Kafka, ranges map[string]map[int32]Range, each func(*kgo.Record) error) error {
	spans := map[string]map[int32]*span{}
	for t, ps := range ranges {
		for p, r := range ps {
			if r.From >= r.To {
				continue
			}
			if spans[t] == nil {
				spans[t] = map[int32]*span{}
			}
			spans[t][p] = &span{next: r.From, end: r.To}
		}
	}
	return readSpans(ctx, k, spans, Options{}, each)
}

// span is one partition's read: the next offset to see, and the end to
// reach.
type span struct{ next, end int64 }

func (s *span) done() bool { return s.next >= s.end }

// listSpans lists the start and last stable offsets of topic's partitions
// and says where each read starts and ends. adm may be nil: a short-lived
// client made by k then lists them.
func listSpans(ctx context.Context, k *clients.Kafka, adm *kadm.Client, topic string, o Options) (map[int32]*span, error) {
	if adm == nil {
		cl, err := k.NewClient()
		if err != nil {
			return nil, fmt.Errorf("create a reader of topic %s: %w", topic, err)
		}
		defer cl.Close()
		adm = kadm.NewClient(cl)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, listErr(topic, err)
	}
	// The committed offsets of ListOffsets are the last stable offsets:
	// what a read_committed consumer can reach.
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
	parts := o.Partitions
	if parts == nil {
		for p := range ends[topic] {
			parts = append(parts, p)
		}
	}
	spans := make(map[int32]*span, len(parts))
	for _, p := range parts {
		end, ok := ends.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("list offsets of topic %s: it has no partition %d", topic, p)
		}
		s := &span{next: end.Offset, end: end.Offset}
		if start, ok := starts.Lookup(topic, p); ok && !o.FromEnd {
			s.next = start.Offset
			if o.Tail > 0 && end.Offset-o.Tail > s.next {
				s.next = end.Offset - o.Tail
			}
		}
		spans[p] = s
	}
	return spans, nil
}

// Stable is the last stable offset of one partition of topic: where a
// read_committed reader of it stops now.
func Stable(ctx context.Context, k *clients.Kafka, topic string, partition int32) (int64, error) {
	cl, err := k.NewClient()
	if err != nil {
		return 0, fmt.Errorf("create an admin client: %w", err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("list the last stable offsets of %s: %w", topic, err)
	}
	o, ok := offs.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	return o.Offset, nil
}

func listErr(topic string, err error) error {
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("%s: %w", topic, ErrNoTopic)
	}
	return fmt.Errorf("list offsets of topic %s: %w", topic, err)
}

// clientOpts are a read_committed reader's options that start each
// partition of spans at its next offset.
func clientOpts(spans map[string]map[int32]*span) []kgo.Opt {
	from := make(map[string]map[int32]kgo.Offset, len(spans))
	for t, ps := range spans {
		from[t] = make(map[int32]kgo.Offset, len(ps))
		for p, s := range ps {
			from[t][p] = kgo.NewOffset().At(s.next)
		}
	}
	return append(kgoReaderOpts(), kgo.ConsumePartitions(from))
}

// kgoReaderOpts are what every reader here sets: committed records only,
// markers kept to see the position pass them, and a short fetch wait so
// that an idle timeout or a cancelled context is noticed soon.
func kgoReaderOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}
}

// readSpans reads every span that is not done yet, handing out the data
// records before each span's end.
func readSpans(ctx context.Context, k *clients.Kafka, spans map[string]map[int32]*span, o Options, each func(*kgo.Record) error) error {
	pending := map[string]map[int32]*span{}
	var topics []string
	for t, ps := range spans {
		topics = append(topics, t)
		for p, s := range ps {
			if !s.done() {
				if pending[t] == nil {
					pending[t] = map[int32]*span{}
				}
				pending[t][p] = s
			}
		}
	}
	if len(pending) == 0 {
		return nil
	}
	what := "topic " + topics[0]
	if len(topics) > 1 {
		what = fmt.Sprintf("topics %v", topics)
	}
	cl, err := k.NewClient(clientOpts(pending)...)
	if err != nil {
		return fmt.Errorf("create a reader of %s: %w", what, err)
	}
	defer cl.Close()
	left := 0
	for _, ps := range pending {
		left += len(ps)
	}
	for left > 0 {
		fs, idle, err := poll(ctx, cl, o, what)
		if err != nil {
			return err
		}
		if idle {
			return nil // the ends we waited for are not there
		}
		var herr error
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			s := pending[fp.Topic][fp.Partition]
			if s == nil || s.done() || len(fp.Records) == 0 || herr != nil {
				return
			}
			for _, r := range fp.Records {
				if r.Offset >= s.end {
					break // written after the read began
				}
				if !r.Attrs.IsControl() {
					if herr = each(r); herr != nil {
						return
					}
				}
			}
			s.next = max(s.next, fp.Records[len(fp.Records)-1].Offset+1)
			if s.done() {
				left--
			}
		})
		if herr != nil {
			return herr
		}
	}
	return nil
}

// poll fetches once. idle says that o.Idle passed without anything
// fetched; err that ctx ended, the client was closed, or o.OnFetchError
// said to stop.
func poll(ctx context.Context, cl *kgo.Client, o Options, what string) (fs kgo.Fetches, idle bool, err error) {
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if o.Idle > 0 {
		pctx, cancel = context.WithTimeout(ctx, o.Idle)
	}
	fs = cl.PollFetches(pctx)
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("read %s: %w", what, err)
	}
	if fs.IsClientClosed() {
		return nil, false, fmt.Errorf("read %s: %w", what, kgo.ErrClientClosed)
	}
	for _, fe := range fs.Errors() {
		if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
			continue // the idle timeout
		}
		err := fmt.Errorf("read topic %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		if o.OnFetchError != nil {
			err = o.OnFetchError(fe.Topic, fe.Partition, fe.Err)
		}
		if err != nil {
			return nil, false, err
		}
	}
	return fs, o.Idle > 0 && fs.Empty(), nil
}
