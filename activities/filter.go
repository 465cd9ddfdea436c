package activities

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/activity"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// Filter implements the StreamFilter workflow's activities: it writes filter
// states to the compacted control topic and reads the newest one back.
type Filter struct {
	// Kafka makes the activity's own producer and readers.
	Kafka *clients.Kafka
	Serde *records.Serde
	// Topic is the control topic.
	Topic string

	once     sync.Once
	producer *kgo.Client
	err      error
}

// publisher is a producer that sends at once: the process's shared client
// lingers to batch, and a filter change should not wait for a batch. It
// lives as long as the worker process.
func (f *Filter) publisher() (*kgo.Client, error) {
	f.once.Do(func() {
		f.producer, f.err = f.Kafka.NewClient(kgo.ProducerLinger(0))
		if f.err != nil {
			f.err = fmt.Errorf("create the control-topic producer: %w", f.err)
		}
	})
	return f.producer, f.err
}

// PublishFilterState writes one state to the control topic, under the key
// that compaction keeps one record of.
func (f *Filter) PublishFilterState(ctx context.Context, in workflows.PublishFilterStateInput) (workflows.PublishFilterStateResult, error) {
	st := records.FilterState{
		Version: in.State.Version, Substring: in.State.Substring, CaseSensitive: in.State.CaseSensitive,
		SetAt: in.State.SetAt, SetBy: in.State.SetBy,
	}
	v, err := f.Serde.Encode(ctx, nil, f.Topic, &st)
	if err != nil {
		return workflows.PublishFilterStateResult{}, fmt.Errorf("encode filter v%d: %w", st.Version, err)
	}
	p, err := f.publisher()
	if err != nil {
		return workflows.PublishFilterStateResult{}, err
	}
	rec := &kgo.Record{Topic: f.Topic, Key: []byte(streamer.ControlKey), Value: v}
	if err := p.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return workflows.PublishFilterStateResult{}, fmt.Errorf("publish filter v%d to %s: %w", st.Version, f.Topic, err)
	}
	activity.GetLogger(ctx).Info("filter published", "version", st.Version, "topic", f.Topic, "partition", rec.Partition, "offset", rec.Offset)
	return workflows.PublishFilterStateResult{Topic: f.Topic, Partition: rec.Partition, Offset: rec.Offset}, nil
}

// LoadFilterState returns the newest state on the control topic. States that
// do not decode are skipped and logged.
func (f *Filter) LoadFilterState(ctx context.Context, _ workflows.LoadFilterStateInput) (workflows.LoadFilterStateResult, error) {
	var res workflows.LoadFilterStateResult
	log := activity.GetLogger(ctx)
	err := topicread.Read(ctx, f.Kafka, f.Topic, topicread.Options{}, func(r *kgo.Record) error {
		if r.Value == nil {
			return nil
		}
		var st records.FilterState
		if err := f.Serde.Decode(ctx, r.Value, &st); err != nil {
			log.Warn("skip a filter state that does not decode", "topic", f.Topic, "offset", r.Offset, "err", err)
			return nil
		}
		if !res.Found || st.Version > res.State.Version {
			res.Found = true
			res.State = workflows.FilterState{Version: st.Version, Substring: st.Substring, CaseSensitive: st.CaseSensitive, SetAt: st.SetAt, SetBy: st.SetBy}
		}
		return nil
	})
	if err != nil {
		return workflows.LoadFilterStateResult{}, fmt.Errorf("read control topic %s: %w", f.Topic, err)
	}
	return res, nil
}
