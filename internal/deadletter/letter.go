package deadletter

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/topicread"
)

// Letter is one record of the dead-letter topic, explained: why, by whom,
// from where and when, whichever component sent it.
type Letter struct {
	Reason          string
	Error           string // the detail, when the component gave one
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Time            time.Time
	Component       string
	Instance        string
	// Replays is how many times the record had been replayed when it
	// failed (HeaderReplays; 0 for a first failure).
	Replays int
	Key     []byte
	Value   []byte
	// Headers are the record's original headers, without the ones above.
	Headers []kgo.RecordHeader
	// Partition and Offset locate it in the dead-letter topic.
	Partition int32
	Offset    int64
}

// Parse reads the headers of a dead-letter record.
func Parse(r *kgo.Record) Letter {
	d := Letter{Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderReason:
			d.Reason = v
		case HeaderError:
			d.Error = v
		case HeaderComponent:
			d.Component = v
		case HeaderInstance:
			d.Instance = v
		case HeaderSourceTopic:
			d.SourceTopic = v
		case HeaderSourcePartition:
			p, _ := strconv.ParseInt(v, 10, 32)
			d.SourcePartition = int32(p)
		case HeaderSourceOffset:
			d.SourceOffset, _ = strconv.ParseInt(v, 10, 64)
		case HeaderTime:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d.Time = t
			}
		case HeaderReplays:
			d.Replays, _ = strconv.Atoi(v)
		default:
			d.Headers = append(d.Headers, h)
		}
	}
	return d
}

// Replay is the record to send back to the letter's source topic: its
// original key, value and headers, counted as replayed once more.
func (d Letter) Replay() *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(d.Headers)+1)
	h = append(h, d.Headers...)
	h = append(h, kgo.RecordHeader{Key: HeaderReplays, Value: strconv.AppendInt(nil, int64(d.Replays)+1, 10)})
	return &kgo.Record{Topic: d.SourceTopic, Key: d.Key, Value: d.Value, Headers: h}
}

// Read returns the newest limit records of the dead-letter topic (all when
// limit <= 0), oldest first, with clients made by k.
func Read(ctx context.Context, k *clients.Kafka, topic string, limit int) ([]Letter, error) {
	var out []Letter
	// The newest limit of the topic are among the newest limit of each
	// partition (plus a transaction marker after each record at most). The
	// topic may be compacted: a second without records ends the read.
	o := topicread.Options{Tail: 2 * int64(max(limit, 0)), Idle: time.Second}
	err := topicread.Read(ctx, k, topic, o, func(r *kgo.Record) error {
		out = append(out, Parse(r))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
