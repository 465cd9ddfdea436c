package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// batch is one transaction's records, decoded.
type batch struct {
	rows    map[*pgstore.Table][]pgstore.Row
	offsets []pgstore.Offset
	// dead are records that failed before the database saw them.
	dead      []deadLetter
	parts     []part // to find a refused row's record
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

// build decodes a batch's records. It fails only on what a retry can fix
// (the schema registry unreachable); a record that cannot be decoded or
// stored becomes a dead letter. Records are decoded on every core, then
// assembled in log order.
func (s *Sink) build(ctx context.Context, parts []part) (*batch, error) {
	b := &batch{
		rows:      map[*pgstore.Table][]pgstore.Row{},
		parts:     parts,
		highWater: make(map[tp]int64, len(parts)),
	}
	n := 0
	var table *pgstore.Table // the batch's only table, or nil
	for i, p := range parts {
		b.highWater[p.tp] = p.highWater
		last := p.records[len(p.records)-1]
		b.offsets = append(b.offsets, pgstore.Offset{Topic: p.topic, Partition: p.partition, Next: last.Offset + 1})
		n += len(p.records)
		if t := s.routes[p.topic].table; i == 0 || t == table {
			table = t
		} else {
			table = nil
		}
	}
	b.records = n
	// Row i is the batch's i-th record, in parts order.
	rows := make([]pgstore.Row, n)
	dead := make([]*deadLetter, n)
	errs := make([]error, n)
	decode := func(from, to int) {
		// The tuples of a worker's rows share one buffer.
		arena := make([]byte, 0, 512*(to-from))
		i := 0
		for _, p := range parts {
			r, ok := s.routes[p.topic]
			for _, rec := range p.records {
				if i >= from && i < to {
					if !ok { // not ours; cannot happen with ConsumeTopics
						dead[i] = &deadLetter{rec, deadletter.ReasonInvalid, "no table for topic " + rec.Topic}
					} else if rows[i], dead[i], errs[i] = s.row(ctx, r, rec, &arena); errs[i] != nil {
						return
					}
				}
				i++
			}
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if n < 512 || workers == 1 {
		decode(0, n)
	} else {
		var wg sync.WaitGroup
		chunk := (n + workers - 1) / workers
		for from := 0; from < n; from += chunk {
			wg.Go(func() { decode(from, min(from+chunk, n)) })
		}
		wg.Wait()
	}
	clean := table != nil
	for i := range rows {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if dead[i] != nil {
			b.dead = append(b.dead, *dead[i])
			clean = false
		}
	}
	// The product topic's record times, for the freshness histogram.
	i := 0
	for _, p := range parts {
		for _, rec := range p.records {
			if p.topic == s.opts.Topics.Products && dead[i] == nil && rec.Value != nil {
				b.products = append(b.products, rec.Timestamp)
			}
			i++
		}
	}
	if clean { // one table, every record a row: no copy
		b.rows[table] = rows
		return b, nil
	}
	i = 0
	for _, p := range parts {
		t := s.routes[p.topic].table
		for range p.records {
			if dead[i] == nil && t != nil {
				b.rows[t] = append(b.rows[t], rows[i])
			}
			i++
		}
	}
	return b, nil
}

// row turns a record into its row. A value written with shopstream's own
// schema goes straight into a COPY tuple appended to arena, when the route
// can; any other is decoded into Go values first.
func (s *Sink) row(ctx context.Context, r route, rec *kgo.Record, arena *[]byte) (pgstore.Row, *deadLetter, error) {
	row := pgstore.Row{Partition: rec.Partition, Offset: rec.Offset}
	if rec.Key == nil {
		return row, &deadLetter{rec, deadletter.ReasonNoKey, "record has no key: a table row needs one"}, nil
	}
	key := string(rec.Key)
	if rec.Value == nil {
		row.Key, row.Deleted = key, true
		return row, nil, nil
	}
	if r.tuple != nil {
		if id, body, err := records.SplitHeader(rec.Value); err == nil && s.ownSchema(ctx, id, r.kind) {
			start := len(*arena)
			out, err := r.tuple(*arena, rec.Key, body)
			if err != nil {
				dead, err := deadOrFail(rec, err)
				return row, dead, err
			}
			*arena = out
			row.Key, row.Tuple = key, out[start:len(out):len(out)]
			return row, nil, nil
		}
	}
	vals, err := r.values(ctx, s.opts.Serde, key, rec.Value)
	if err != nil {
		dead, err := deadOrFail(rec, err)
		return row, dead, err
	}
	row.Key = vals[0].(string)
	row.Values = vals
	return row, nil, nil
}

// deadOrFail turns a decoding error into the record's dead letter, or into
// the batch's failure when retrying can fix it (the registry unreachable).
func deadOrFail(rec *kgo.Record, err error) (*deadLetter, error) {
	var inv *pgstore.InvalidError
	switch {
	case errors.As(err, &inv):
		return &deadLetter{rec, deadletter.ReasonInvalid, inv.Reason}, nil
	case deadletter.ReasonOf(err) != "":
		return &deadLetter{rec, deadletter.ReasonOf(err), err.Error()}, nil
	default:
		return nil, fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
}

type schemaKey struct {
	id   int
	kind records.Kind
}

// ownSchema says whether schema id is shopstream's own schema of kind, so
// that its bodies can be read without resolution. Whatever it cannot tell
// (the registry unreachable, an unknown id) takes the decoding path, which
// reports it.
func (s *Sink) ownSchema(ctx context.Context, id int, kind records.Kind) bool {
	k := schemaKey{id, kind}
	if v, ok := s.ownSchemas.Load(k); ok {
		return v.(bool)
	}
	w, err := s.opts.Serde.WriterSchema(ctx, id)
	if err != nil {
		return false
	}
	own := w.Fingerprint() == s.opts.Serde.Schemas().Schema(kind).Fingerprint()
	s.ownSchemas.Store(k, own)
	return own
}

// deadLetter sends the batch's dead letters, and the records of the rows
// PostgreSQL refused, to the dead-letter topic before the batch commits.
// produced remembers what an earlier attempt of the same batch already sent.
func (s *Sink) deadLetter(ctx context.Context, cl *kgo.Client, b *batch, refused []pgstore.Rejected, produced map[pgstore.SourceRecord]bool) error {
	all := b.dead
	for _, r := range refused {
		rec := b.record(s.topicOf(r.Table), r.Row.Partition, r.Row.Offset)
		if rec == nil {
			return fmt.Errorf("refused row %s/%d@%d has no record", r.Table.Name, r.Row.Partition, r.Row.Offset)
		}
		all = append(all, deadLetter{rec, deadletter.ReasonRefused, r.Reason})
	}
	var todo []deadLetter
	var srcs []pgstore.SourceRecord
	for _, d := range all {
		if src := sourceOf(d.rec); !produced[src] {
			todo, srcs = append(todo, d), append(srcs, src)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	now := s.opts.Now()
	// Committed before the letters are sent: a sink killed after sending
	// them and before this batch commits finds the rows when it reads the
	// records again, and looks for the letters instead of sending them
	// twice. The margin covers the clocks of two hosts.
	earlier, err := s.opts.Store.OweDeadLetters(ctx, s.opts.Group, srcs, now.Add(-time.Minute))
	if err != nil {
		return err
	}
	var sent map[pgstore.SourceRecord]bool
	if len(earlier) > 0 {
		if sent, err = s.sentBefore(ctx, cl, earlier); err != nil {
			return err
		}
	}
	var out []*kgo.Record
	var outs []deadLetter
	for i, d := range todo {
		if sent[srcs[i]] {
			s.log.Info("dead letter already sent by an earlier attempt whose batch did not commit", "topic", d.rec.Topic,
				"partition", d.rec.Partition, "offset", d.rec.Offset)
			produced[srcs[i]] = true
			continue
		}
		out = append(out, deadletter.Record(s.opts.Topics.DLQ, d.rec, deadletter.Why{Component: "sink", Reason: d.reason, Detail: d.detail}, now))
		outs = append(outs, d)
	}
	if len(out) > 0 {
		if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return fmt.Errorf("send %d records to the dead-letter topic %s: %w", len(out), s.opts.Topics.DLQ, err)
		}
	}
	for _, d := range outs {
		produced[sourceOf(d.rec)] = true
		s.m.dead.WithLabelValues(d.rec.Topic, d.reason).Inc()
		s.log.Warn("record sent to the dead-letter topic", "topic", d.rec.Topic, "partition", d.rec.Partition,
			"offset", d.rec.Offset, "reason", d.reason, "detail", d.detail, "dlq", s.opts.Topics.DLQ)
	}
	if s.afterDeadLetters != nil {
		return s.afterDeadLetters()
	}
	return nil
}

func sourceOf(r *kgo.Record) pgstore.SourceRecord {
	return pgstore.SourceRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// sentBefore reads the dead-letter topic from the earliest time in earlier
// to its end and says which of earlier's records have a letter from the
// sink there.
func (s *Sink) sentBefore(ctx context.Context, cl *kgo.Client, earlier map[pgstore.SourceRecord]time.Time) (map[pgstore.SourceRecord]bool, error) {
	var from time.Time
	for _, at := range earlier {
		if from.IsZero() || at.Before(from) {
			from = at
		}
	}
	dlq := s.opts.Topics.DLQ
	adm := kadm.NewClient(cl)
	starts, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), dlq)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the offsets of %s after %s: %w", dlq, from.Format(time.RFC3339), err)
	}
	ends, err := adm.ListEndOffsets(ctx, dlq)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the end offsets of %s: %w", dlq, err)
	}
	ranges := map[int32]topicread.Range{}
	ends.Each(func(e kadm.ListedOffset) {
		if st, ok := starts.Lookup(dlq, e.Partition); ok && st.Offset >= 0 && st.Offset < e.Offset {
			ranges[e.Partition] = topicread.Range{From: st.Offset, To: e.Offset}
		}
	})
	sent := map[pgstore.SourceRecord]bool{}
	err = topicread.ReadRanges(ctx, s.opts.Kafka, map[string]map[int32]topicread.Range{dlq: ranges}, func(r *kgo.Record) error {
		l := deadletter.Parse(r)
		src := pgstore.SourceRecord{Topic: l.SourceTopic, Partition: l.SourcePartition, Offset: l.SourceOffset}
		if _, ok := earlier[src]; ok && l.Component == "sink" {
			sent[src] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s for dead letters sent before: %w", dlq, err)
	}
	return sent, nil
}

// record finds one of the batch's records.
func (b *batch) record(topic string, partition int32, offset int64) *kgo.Record {
	for _, p := range b.parts {
		if p.topic != topic || p.partition != partition {
			continue
		}
		i, ok := slices.BinarySearchFunc(p.records, offset, func(r *kgo.Record, o int64) int { return cmp.Compare(r.Offset, o) })
		if ok {
			return p.records[i]
		}
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
