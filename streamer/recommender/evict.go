package recommender

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// evict forgets the users idle longest once the instance holds more than
// MaxUsers, down to nine tenths of it, so that the sort is paid once per
// tenth of growth rather than on every batch. Their state stays in the
// compacted recommendations topic, from which recall reads it back.
func (j *joiner) evict() {
	defer func() { j.m.users.Set(float64(countUsers(j.users))) }()
	n := countUsers(j.users)
	if n <= j.cfg.MaxUsers {
		return
	}
	type held struct {
		part int32
		user string
		at   time.Time
	}
	all := make([]held, 0, n)
	for part, users := range j.users {
		for u := range users {
			all = append(all, held{part, u, j.lastUse[part][u]})
		}
	}
	slices.SortFunc(all, func(a, b held) int { return a.at.Compare(b.at) })
	drop := n - j.cfg.MaxUsers*9/10
	for _, h := range all[:drop] {
		delete(j.users[h.part], h.user)
		delete(j.lastUse[h.part], h.user)
		j.partial[h.part] = true
	}
	j.m.evicted.Add(float64(drop))
	j.log.Debug("users forgotten", "users", drop, "held", n-drop, "max", j.cfg.MaxUsers)
}

// recall reads back, from the recommendations topic, the users of a batch
// that the instance forgot: one read of each partition concerned for the
// whole batch. A user not found there is new.
func (j *joiner) recall(ctx context.Context, fetches kgo.Fetches) error {
	want := map[int32]map[string]bool{}
	fetches.EachRecord(func(r *kgo.Record) {
		if !j.partial[r.Partition] || len(r.Key) == 0 || len(r.Key) > MaxUserIDBytes {
			return
		}
		if _, held := j.users[r.Partition][string(r.Key)]; held {
			return
		}
		if want[r.Partition] == nil {
			want[r.Partition] = map[string]bool{}
		}
		want[r.Partition][string(r.Key)] = true
	})
	if len(want) == 0 {
		return nil
	}
	parts := slices.Sorted(maps.Keys(want))
	back, err := j.restore(ctx, parts, func(part int32, user string) bool { return want[part][user] })
	if err != nil {
		return fmt.Errorf("read back forgotten users of partitions %v: %w", parts, err)
	}
	for part, users := range back {
		if j.users[part] == nil {
			j.users[part] = map[string]*records.Recommendation{}
		}
		maps.Copy(j.users[part], users)
		j.m.recalled.Add(float64(len(users)))
	}
	return nil
}
