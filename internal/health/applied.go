package health

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// ReadApplied returns the newest report of every streamer instance that did
// not stop cleanly, sorted by instance id.
func ReadApplied(ctx context.Context, k *clients.Kafka, topic string) ([]records.AppliedReport, error) {
	latest := map[string]*records.AppliedReport{}
	var bad error
	// The topic is compacted: its newest offset may be gone, so the read
	// gives up after a second without records.
	err := topicread.Read(ctx, k, topic, topicread.Options{Idle: time.Second}, func(r *kgo.Record) error {
		if r.Value == nil {
			delete(latest, string(r.Key))
			return nil
		}
		var rep records.AppliedReport
		if err := json.Unmarshal(r.Value, &rep); err != nil {
			bad = fmt.Errorf("topic %s partition %d offset %d is not an applied report: %w", topic, r.Partition, r.Offset, err)
			return nil
		}
		latest[string(r.Key)] = &rep
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bad != nil && len(latest) == 0 {
		return nil, bad
	}
	out := make([]records.AppliedReport, 0, len(latest))
	for _, r := range latest {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out, nil
}
