package recommender

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// restore reads the given partitions of the recommendations topic up to
// their last stable offsets and returns each user's latest Recommendation,
// by partition; only the users keep says yes to when keep is not nil. Only
// committed records are read, so what it returns is exactly the state that
// the committed prompt offsets stand for.
func (j *joiner) restore(ctx context.Context, parts []int32, keep func(part int32, user string) bool) (map[int32]map[string]*records.Recommendation, error) {
	topic := j.cfg.Topics.Recommendations
	latest := make(map[int32]map[string][]byte, len(parts))
	for _, p := range parts {
		latest[p] = map[string][]byte{}
	}
	// Records written after the read began are a newer owner's, not ours to
	// take: the read stops at the ends it found.
	o := topicread.Options{Partitions: parts, OnFetchError: func(t string, p int32, err error) error {
		j.log.Warn("fetch recommendations to restore", "topic", t, "partition", p, "err", err)
		return nil
	}}
	err := topicread.Read(ctx, j.cfg.Kafka, topic, o, func(r *kgo.Record) error {
		if keep != nil && !keep(r.Partition, string(r.Key)) {
			return nil
		}
		latest[r.Partition][string(r.Key)] = r.Value // nil: a tombstone
		return nil
	})
	if err != nil {
		return nil, err
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
