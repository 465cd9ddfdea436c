package main

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
)

// markerProbeMax is the largest per-partition lag that markerLag reads to
// tell records from markers; larger lags are real work in any case.
const markerProbeMax = 64

// markerLag counts, per group, the lag that is only transaction control
// records. An exactly-once consumer commits the offset after its last
// record, and the commit markers of the transactions that ended there
// (several, when producers ran concurrently) take offsets it never commits
// past: it is caught up although the raw lag is not zero. For every partition
// lagging by a little, this reads from the committed offset to the end with
// read_committed and counts the records really there.
func markerLag(ctx context.Context, k *clients.Kafka, lags kadm.DescribedGroupLags) map[string]int64 {
	type at struct {
		topic     string
		partition int32
		from, end int64
	}
	found := map[at]int64{}
	for _, l := range lags {
		for _, m := range l.Lag.Sorted() {
			if m.Lag > 0 && m.Lag <= markerProbeMax {
				found[at{m.Topic, m.Partition, m.Commit.At, m.End.Offset}] = 0
			}
		}
	}
	out := map[string]int64{}
	if len(found) == 0 {
		return out
	}
	// One read per partition, from the lowest committed offset any group has.
	parts := map[string]map[int32]kgo.Offset{}
	lowest := map[string]map[int32]int64{}
	for p := range found {
		if lowest[p.topic] == nil {
			lowest[p.topic] = map[int32]int64{}
		}
		if cur, ok := lowest[p.topic][p.partition]; !ok || p.from < cur {
			lowest[p.topic][p.partition] = p.from
		}
	}
	for t, ps := range lowest {
		parts[t] = map[int32]kgo.Offset{}
		for p, o := range ps {
			parts[t][p] = kgo.NewOffset().At(o)
		}
	}
	cl, err := k.NewClient(kgo.ConsumePartitions(parts), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return out
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			for p := range found {
				if p.topic == r.Topic && p.partition == r.Partition && r.Offset >= p.from && r.Offset < p.end {
					found[p]++
				}
			}
		})
	}
	for _, l := range lags {
		for _, m := range l.Lag.Sorted() {
			if n, ok := found[at{m.Topic, m.Partition, m.Commit.At, m.End.Offset}]; ok {
				out[l.Group] += m.Lag - n
			}
		}
	}
	return out
}
