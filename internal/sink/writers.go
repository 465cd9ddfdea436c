package sink

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/pgstore"
)

// A poll is written by several transactions at once, each on its own
// connection with the offsets of its own partitions: a partition's records
// and its offset always commit together, so a crash anywhere loses and
// repeats nothing, whichever transactions had committed. Each writer
// decodes its next batch while the current one is written.
//
// The partitions of a poll are dealt to the writers by record count; a
// writer writes its partitions in batches of at most BatchSize records, in
// log order.

// part is one partition's records in a poll, or a stretch of them.
type part struct {
	tp
	records   []*kgo.Record
	highWater int64
}

// writers is how many transactions write a poll at once: one for each
// core the sink decodes on, at least two, and fewer than the connections
// its pool may open.
func (s *Sink) writers() int {
	n := max(2, runtime.GOMAXPROCS(0))
	if s.opts.Store.Pool != nil {
		n = min(n, max(1, int(s.opts.Store.Pool.Config().MaxConns)-1))
	}
	return n
}

// pollSize is how many records Run asks a poll for: a batch for each writer.
func (s *Sink) pollSize() int { return s.opts.BatchSize * s.writers() }

// handle writes one poll's records and returns once all are written (or
// dropped after a conflict, to be read again), so that a rebalance never
// moves a partition in the middle of a batch.
func (s *Sink) handle(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) error {
	var parts []part
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			parts = append(parts, part{tp{p.Topic, p.Partition}, p.Records, p.HighWatermark})
		}
	})
	if len(parts) == 0 {
		return nil
	}
	groups := deal(parts, s.writers())
	if len(groups) == 1 {
		return s.writeGroup(ctx, cl, groups[0])
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { errs[i] = s.writeGroup(ctx, cl, g) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// deal gives each of at most n groups whole partitions, the largest first
// to the group with the fewest records.
func deal(parts []part, n int) [][]part {
	parts = slices.Clone(parts)
	slices.SortStableFunc(parts, func(a, b part) int { return len(b.records) - len(a.records) })
	n = min(n, len(parts))
	groups := make([][]part, n)
	sizes := make([]int, n)
	for _, p := range parts {
		g := 0
		for i := range sizes {
			if sizes[i] < sizes[g] {
				g = i
			}
		}
		groups[g] = append(groups[g], p)
		sizes[g] += len(p.records)
	}
	return groups
}

// batches cuts a group's partitions into batches of at most size records;
// a partition longer than that is cut into consecutive stretches.
func batches(parts []part, size int) [][]part {
	var out [][]part
	var cur []part
	n := 0
	for _, p := range parts {
		for len(p.records) > 0 {
			take := min(len(p.records), size-n)
			cur = append(cur, part{p.tp, p.records[:take], p.highWater})
			p.records = p.records[take:]
			if n += take; n == size {
				out, cur, n = append(out, cur), nil, 0
			}
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// writeGroup writes a group's batches in order, decoding each next one
// while the current one is written.
func (s *Sink) writeGroup(ctx context.Context, cl *kgo.Client, parts []part) error {
	todo := batches(parts, s.opts.BatchSize)
	type decoded struct {
		b     *batch
		start time.Time
		err   error
	}
	decode := func(ps []part) decoded {
		d := decoded{start: s.opts.Now()}
		d.err = s.retry(ctx, "decode records", func() (err error) {
			d.b, err = s.build(ctx, ps)
			return err
		})
		return d
	}
	next := make(chan decoded, 1) // one batch ahead: bounded memory
	cur := decode(todo[0])
	for i := range todo {
		if i+1 < len(todo) {
			go func() { next <- decode(todo[i+1]) }()
		}
		if cur.err != nil {
			return cur.err
		}
		dropped, err := s.write(ctx, cl, cur.b, cur.start)
		if err != nil {
			return err
		}
		if dropped {
			// The rest of the group follows the dropped batch in some
			// partition, or shares nothing with it: point every partition
			// it holds back at its stored offset, to be read again.
			var rest []pgstore.Offset
			for _, ps := range todo[i+1:] {
				for _, p := range ps {
					rest = append(rest, pgstore.Offset{Topic: p.topic, Partition: p.partition})
				}
			}
			if len(rest) == 0 {
				return nil
			}
			return s.retry(ctx, "read stored offsets", func() error { return s.resync(ctx, cl, rest) })
		}
		if i+1 < len(todo) {
			cur = <-next
		}
	}
	return nil
}
