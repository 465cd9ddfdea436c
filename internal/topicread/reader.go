package topicread

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
)

// Reader reads one topic on and on: first up to the last stable offsets it
// found when it was opened (the catch-up), then whatever is committed
// afterwards (follow). Its client may also produce: a table that
// dead-letters what it cannot hold, an instance that reports itself.
type Reader struct {
	cl    *kgo.Client
	topic string
	o     Options
	// pending holds the partitions not caught up yet.
	pending map[int32]*span
	buf     []*kgo.Record
}

// Open starts a reader of topic with a client made by k. A read of every
// partition from its start also follows partitions that are added to the
// topic later.
func Open(ctx context.Context, k *clients.Kafka, topic string, o Options) (*Reader, error) {
	r := &Reader{topic: topic, o: o}
	whole := o.Partitions == nil && o.Tail <= 0 && !o.FromEnd
	var err error
	if whole {
		r.cl, err = k.NewClient(append(kgoReaderOpts(), kgo.ConsumeTopics(topic))...)
		if err != nil {
			return nil, fmt.Errorf("create a reader of topic %s: %w", topic, err)
		}
		spans, err := listSpans(ctx, k, kadm.NewClient(r.cl), topic, o)
		if err != nil {
			r.cl.Close()
			return nil, err
		}
		r.setPending(spans)
		return r, nil
	}
	spans, err := listSpans(ctx, k, nil, topic, o)
	if err != nil {
		return nil, err
	}
	if r.cl, err = k.NewClient(clientOpts(map[string]map[int32]*span{topic: spans})...); err != nil {
		return nil, fmt.Errorf("create a reader of topic %s: %w", topic, err)
	}
	r.setPending(spans)
	return r, nil
}

func (r *Reader) setPending(spans map[int32]*span) {
	r.pending = map[int32]*span{}
	for p, s := range spans {
		if !s.done() {
			r.pending[p] = s
		}
	}
}

// Client is the reader's client, to produce with.
func (r *Reader) Client() *kgo.Client { return r.cl }

// Close closes the reader's client.
func (r *Reader) Close() { r.cl.Close() }

// CaughtUp says that every partition was read up to the end it had when the
// reader was opened (or that Options.Idle gave up on one).
func (r *Reader) CaughtUp() bool { return len(r.pending) == 0 }

// Behind is the number of partitions not caught up yet.
func (r *Reader) Behind() int { return len(r.pending) }

// Poll returns the data records of the next fetch, in offset order within
// a partition; they stay valid until the next Poll. During the catch-up,
// records written after Open come too. Poll returns an error when ctx ends,
// the client is closed, or Options.OnFetchError says so.
func (r *Reader) Poll(ctx context.Context) ([]*kgo.Record, error) {
	o := r.o
	if r.CaughtUp() {
		o.Idle = 0 // only the catch-up gives up
	}
	fs, idle, err := poll(ctx, r.cl, o, "topic "+r.topic)
	if err != nil {
		return nil, err
	}
	r.buf = r.buf[:0]
	if idle {
		clear(r.pending)
		return r.buf, nil
	}
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		for _, rec := range fp.Records {
			if !rec.Attrs.IsControl() {
				r.buf = append(r.buf, rec)
			}
		}
		if s := r.pending[fp.Partition]; s != nil {
			if s.next = max(s.next, fp.Records[len(fp.Records)-1].Offset+1); s.done() {
				delete(r.pending, fp.Partition)
			}
		}
	})
	return r.buf, nil
}

// CatchUp polls until the reader is caught up, handing each record to each.
// An error from each ends it.
func (r *Reader) CatchUp(ctx context.Context, each func(*kgo.Record) error) error {
	for !r.CaughtUp() {
		recs, err := r.Poll(ctx)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := each(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// Follow hands each record to each until ctx ends or the client is closed,
// and then returns nil. A fetch error that Options.OnFetchError does not
// let pass, or an error from each, ends it too.
func (r *Reader) Follow(ctx context.Context, each func(*kgo.Record) error) error {
	for {
		recs, err := r.Poll(ctx)
		if ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := each(rec); err != nil {
				return err
			}
		}
	}
}
