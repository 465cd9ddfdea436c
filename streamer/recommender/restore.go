package recommender

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// restore reads the given partitions of the recommendations topic up to
// their last stable offsets and returns each user's latest Recommendation,
// by partition. Only committed records are read, so what it returns is
// exactly the state that the committed prompt offsets stand for.
func (j *joiner) restore(ctx context.Context, parts []int32) (map[int32]map[string]*records.Recommendation, error) {
	topic := j.cfg.Topics.Recommendations
	ends, err := j.admin.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	starts, err := j.admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	latest := make(map[int32]map[string][]byte, len(parts))
	pending := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	for _, p := range parts {
		latest[p] = map[string][]byte{}
		e, ok := ends.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("list end offsets of %s: no partition %d", topic, p)
		}
		if s, ok := starts.Lookup(topic, p); ok && s.Offset >= e.Offset {
			continue
		}
		pending[p] = e.Offset
		consume[p] = kgo.NewOffset().AtStart()
	}
	if len(pending) > 0 {
		cl, err := j.cfg.Kafka.NewClient(
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords(),
		)
		if err != nil {
			return nil, fmt.Errorf("create a Kafka client to restore %s: %w", topic, err)
		}
		defer cl.Close()
		for len(pending) > 0 {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fetches.EachError(func(t string, p int32, err error) {
				j.log.Warn("fetch recommendations to restore", "topic", t, "partition", p, "err", err)
			})
			fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
				end, ok := pending[fp.Partition]
				if !ok || len(fp.Records) == 0 {
					return
				}
				for _, r := range fp.Records {
					if r.Offset >= end {
						break // written after we looked: a newer owner's, not ours to take
					}
					if !r.Attrs.IsControl() {
						latest[fp.Partition][string(r.Key)] = r.Value // nil: a tombstone
					}
				}
				if fp.Records[len(fp.Records)-1].Offset+1 >= end {
					delete(pending, fp.Partition)
				}
			})
		}
	}
	out := make(map[int32]map[string]*records.Recommendation, len(parts))
	for _, p := range slices.Sorted(maps.Keys(latest)) {
		users := make(map[string]*records.Recommendation, len(latest[p]))
		for user, v := range latest[p] {
			if v == nil {
				continue
			}
			rec := new(records.Recommendation)
			err := classifyDecode(j.cfg.Serde.Decode(ctx, v, rec))
			var bad *badRecord
			switch {
			case errors.As(err, &bad):
				// Our own output topic: nothing to dead-letter, but the
				// user starts afresh rather than blocking everyone.
				j.log.Warn("a stored recommendation does not decode; the user starts with none", "user", user, "partition", p, "err", err)
				continue
			case err != nil:
				return nil, fmt.Errorf("decode the recommendation of user %q: %w", user, err)
			}
			users[user] = rec
		}
		out[p] = users
	}
	return out, nil
}

// countUsers counts the users held in a by-partition state.
func countUsers(m map[int32]map[string]*records.Recommendation) int {
	n := 0
	for _, u := range m {
		n += len(u)
	}
	return n
}
