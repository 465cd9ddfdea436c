// Package deadletter is the one shape of a dead-lettered record, whichever
// component sent it: the original key, value and headers, unchanged, plus
// headers that say why, from where, when and by whom. `shopstream dlq list`
// reads them back.
package deadletter

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers a dead letter carries besides the original record's own. These
// are their only definitions: every component writes them through Record,
// and Parse reads them back.
const (
	// HeaderReason is one word of the vocabulary (ReasonNotFramed, …).
	HeaderReason = "shopstream.dlq.reason"
	// HeaderError is the detail: the error that the record caused.
	HeaderError           = "shopstream.dlq.error"
	HeaderComponent       = "shopstream.dlq.component"
	HeaderInstance        = "shopstream.dlq.instance"
	HeaderSourceTopic     = "shopstream.dlq.source.topic"
	HeaderSourcePartition = "shopstream.dlq.source.partition"
	HeaderSourceOffset    = "shopstream.dlq.source.offset"
	HeaderTime            = "shopstream.dlq.time"
	// HeaderReplays is on a record that `shopstream dlq replay` sent back
	// to its source topic: how many times it has been replayed, in decimal.
	// Record keeps it, so a replayed record that fails again is a dead
	// letter that says so, and replay stops at a limit.
	HeaderReplays = "shopstream.dlq.replays"
)

// Why says why a record is dead-lettered and who decided it.
type Why struct {
	Component string // streamer, recommender, sink, collector
	Instance  string // optional
	Reason    string // one of the Reason constants
	Detail    string // optional: the error in full
}

// Record builds the dead letter of r for topic.
func Record(topic string, r *kgo.Record, why Why, now time.Time) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+8)
	h = append(h, r.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(why.Reason)},
		kgo.RecordHeader{Key: HeaderComponent, Value: []byte(why.Component)},
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	if why.Detail != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderError, Value: []byte(Clean(why.Detail))})
	}
	if why.Instance != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderInstance, Value: []byte(why.Instance)})
	}
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: h}
}
