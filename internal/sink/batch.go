package sink

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"

	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

// batch is one poll, decoded.
type batch struct {
	rows    map[*pgstore.Table][]pgstore.Row
	offsets []pgstore.Offset
	// dead are records that failed before the database saw them.
	dead      []deadLetter
	byOffset  map[tp]map[int64]*kgo.Record // to find a refused row's record
	highWater map[tp]int64
	records   int
	// products are the timestamps of the product topic's records that
	// became rows, for the freshness histogram.
	products []time.Time
}

type deadLetter struct {
	rec    *kgo.Record
	reason string // deadletter's vocabulary; also the metric's class label
	detail string
}

// build decodes a poll. It fails only on what a retry can fix (the schema
// registry unreachable); a record that cannot be decoded or stored becomes a
// dead letter. Records are decoded on every core, then assembled in log
// order.
func (s *Sink) build(ctx context.Context, fetches kgo.Fetches) (*batch, error) {
	b := &batch{
		rows:      map[*pgstore.Table][]pgstore.Row{},
		byOffset:  map[tp]map[int64]*kgo.Record{},
		highWater: map[tp]int64{},
	}
	type item struct {
		r   route
		rec *kgo.Record
	}
	var items []item
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		key := tp{p.Topic, p.Partition}
		b.highWater[key] = p.HighWatermark
		r, ok := s.routes[p.Topic]
		if !ok {
			return // not ours; cannot happen with ConsumeTopics
		}
		recs := make(map[int64]*kgo.Record, len(p.Records))
		b.byOffset[key] = recs
		for _, rec := range p.Records {
			recs[rec.Offset] = rec
			items = append(items, item{r, rec})
		}
		last := p.Records[len(p.Records)-1]
		b.offsets = append(b.offsets, pgstore.Offset{Topic: p.Topic, Partition: p.Partition, Next: last.Offset + 1})
	})
	type result struct {
		row  pgstore.Row
		dead *deadLetter
		err  error
	}
	results := make([]result, len(items))
	decode := func(from, to int) {
		for i := from; i < to; i++ {
			res := &results[i]
			res.row, res.dead, res.err = s.row(ctx, items[i].r, items[i].rec)
			if res.err != nil {
				return
			}
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if len(items) < 512 || workers == 1 {
		decode(0, len(items))
	} else {
		var wg sync.WaitGroup
		chunk := (len(items) + workers - 1) / workers
		for from := 0; from < len(items); from += chunk {
			wg.Add(1)
			go func(from, to int) {
				defer wg.Done()
				decode(from, to)
			}(from, min(from+chunk, len(items)))
		}
		wg.Wait()
	}
	for i, res := range results {
		if res.err != nil {
			return nil, res.err
		}
		b.records++
		if res.dead != nil {
			b.dead = append(b.dead, *res.dead)
			continue
		}
		t := items[i].r.table
		b.rows[t] = append(b.rows[t], res.row)
		if rec := items[i].rec; rec.Topic == s.opts.Topics.Products && rec.Value != nil {
			b.products = append(b.products, rec.Timestamp)
		}
	}
	return b, nil
}

func (s *Sink) row(ctx context.Context, r route, rec *kgo.Record) (pgstore.Row, *deadLetter, error) {
	row := pgstore.Row{Partition: rec.Partition, Offset: rec.Offset}
	if rec.Key == nil {
		return row, &deadLetter{rec, deadletter.ReasonNoKey, "record has no key: a table row needs one"}, nil
	}
	key := string(rec.Key)
	if rec.Value == nil {
		row.Key, row.Deleted = key, true
		return row, nil, nil
	}
	vals, err := r.values(ctx, s.opts.Serde, key, rec.Value)
	var inv *pgstore.InvalidError
	switch {
	case err == nil:
	case errors.As(err, &inv):
		return row, &deadLetter{rec, deadletter.ReasonInvalid, inv.Reason}, nil
	case deadletter.ReasonOf(err) != "":
		return row, &deadLetter{rec, deadletter.ReasonOf(err), err.Error()}, nil
	default:
		return row, nil, fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	row.Key = vals[0].(string)
	row.Values = vals
	return row, nil, nil
}

// deadLetter sends the batch's dead letters, and the records of the rows
// PostgreSQL refused, to the dead-letter topic before the batch commits.
// produced remembers what an earlier attempt of the same batch already sent.
func (s *Sink) deadLetter(ctx context.Context, cl *kgo.Client, b *batch, refused []pgstore.Rejected, produced map[tp]map[int64]bool) error {
	all := b.dead
	for _, r := range refused {
		rec := b.byOffset[tp{s.topicOf(r.Table), r.Row.Partition}][r.Row.Offset]
		if rec == nil {
			return fmt.Errorf("refused row %s/%d@%d has no record", r.Table.Name, r.Row.Partition, r.Row.Offset)
		}
		all = append(all, deadLetter{rec, deadletter.ReasonRefused, r.Reason})
	}
	var out []*kgo.Record
	var sent []deadLetter
	now := s.opts.Now()
	for _, d := range all {
		key := tp{d.rec.Topic, d.rec.Partition}
		if produced[key][d.rec.Offset] {
			continue
		}
		out = append(out, deadletter.Record(s.opts.Topics.DLQ, d.rec, deadletter.Why{Component: "sink", Reason: d.reason, Detail: d.detail}, now))
		sent = append(sent, d)
	}
	if len(out) == 0 {
		return nil
	}
	if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
		return fmt.Errorf("send %d records to the dead-letter topic %s: %w", len(out), s.opts.Topics.DLQ, err)
	}
	for _, d := range sent {
		key := tp{d.rec.Topic, d.rec.Partition}
		if produced[key] == nil {
			produced[key] = map[int64]bool{}
		}
		produced[key][d.rec.Offset] = true
		s.m.dead.WithLabelValues(d.rec.Topic, d.reason).Inc()
		s.log.Warn("record sent to the dead-letter topic", "topic", d.rec.Topic, "partition", d.rec.Partition,
			"offset", d.rec.Offset, "reason", d.reason, "detail", d.detail, "dlq", s.opts.Topics.DLQ)
	}
	return nil
}

// topicOf returns the topic a table is materialised from.
func (s *Sink) topicOf(t *pgstore.Table) string {
	for topic, r := range s.routes {
		if r.table == t {
			return topic
		}
	}
	return ""
}

func productValues(ctx context.Context, s *records.Serde, key string, value []byte) ([]any, error) {
	var p records.Product
	if err := s.Decode(ctx, value, &p); err != nil {
		return nil, err
	}
	return pgstore.ProductValues(key, &p)
}

func completeProductValues(ctx context.Context, s *records.Serde, key string, value []byte) ([]any, error) {
	var c records.CompleteProduct
	if err := s.Decode(ctx, value, &c); err != nil {
		return nil, err
	}
	return pgstore.CompleteProductValues(key, &c)
}

func searchValues(ctx context.Context, s *records.Serde, key string, value []byte) ([]any, error) {
	var p records.SearchPrompt
	if err := s.Decode(ctx, value, &p); err != nil {
		return nil, err
	}
	return pgstore.SearchValues(key, &p)
}

func recommendationValues(ctx context.Context, s *records.Serde, key string, value []byte) ([]any, error) {
	var r records.Recommendation
	if err := s.Decode(ctx, value, &r); err != nil {
		return nil, err
	}
	return pgstore.RecommendationValues(key, &r)
}
