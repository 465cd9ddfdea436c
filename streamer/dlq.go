package streamer

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
)

// Headers a dead-lettered record carries besides its original ones.
const (
	HeaderDLQReason          = deadletter.HeaderReason
	HeaderDLQError           = deadletter.HeaderError
	HeaderDLQSourceTopic     = deadletter.HeaderSourceTopic
	HeaderDLQSourcePartition = deadletter.HeaderSourcePartition
	HeaderDLQSourceOffset    = deadletter.HeaderSourceOffset
	HeaderDLQTime            = deadletter.HeaderTime
	HeaderDLQInstance        = deadletter.HeaderInstance
)

// Reason says why a record went to the dead-letter topic.
type Reason uint8

// The reasons, as the reason header spells them.
const (
	ReasonNotFramed Reason = iota
	ReasonUnknownSchema
	ReasonWrongSchema
	ReasonMalformed
	// ReasonNoKey: the filtered topic is compacted, and Kafka refuses a
	// record without a key there; forwarding it would abort every
	// transaction that carries it.
	ReasonNoKey
	numReasons
)

var reasonNames = [numReasons]string{"not-framed", "unknown-schema-id", "wrong-schema", "malformed", "no-key"}

// errNoKey is the DLQ error of a record without a key.
var errNoKey = errors.New("the record has no key (mall_id/product_id): a compacted topic cannot hold it")

func (r Reason) String() string { return reasonNames[r] }

// reasonOf classifies a decoding error; ok is false for an error that is not
// the record's fault (the registry did not answer).
func reasonOf(err error) (Reason, bool) {
	switch {
	case errors.Is(err, records.ErrNotFramed):
		return ReasonNotFramed, true
	case errors.Is(err, records.ErrUnknownSchemaID):
		return ReasonUnknownSchema, true
	case errors.Is(err, records.ErrWrongSchema):
		return ReasonWrongSchema, true
	case errors.Is(err, records.ErrMalformed):
		return ReasonMalformed, true
	}
	return 0, false
}

// deadLetter builds the dead-letter record of r: its key, value and headers
// unchanged, plus headers that say why, from where and when.
func deadLetter(topic string, r *kgo.Record, reason Reason, err error, instance string, now time.Time) *kgo.Record {
	return deadletter.Record(topic, r, deadletter.Why{Component: "streamer", Instance: instance, Reason: reason.String(), Detail: err.Error()}, now)
}

// DeadLetter is one record of the dead-letter topic as `shopstream dlq list`
// shows it.
type DeadLetter struct {
	Reason          string
	Error           string
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Time            time.Time
	Component       string
	Instance        string
	Key             []byte
	Value           []byte
	// Headers are the record's original headers, without the DLQ ones.
	Headers []kgo.RecordHeader
	// Partition and Offset locate it in the dead-letter topic.
	Partition int32
	Offset    int64
}

// ParseDeadLetter reads the DLQ headers of a dead-letter record.
func ParseDeadLetter(r *kgo.Record) DeadLetter {
	d := DeadLetter{Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderDLQReason:
			d.Reason = v
		case HeaderDLQError:
			d.Error = v
		case HeaderDLQSourceTopic:
			d.SourceTopic = v
		case HeaderDLQSourcePartition:
			p, _ := strconv.ParseInt(v, 10, 32)
			d.SourcePartition = int32(p)
		case HeaderDLQSourceOffset:
			d.SourceOffset, _ = strconv.ParseInt(v, 10, 64)
		case HeaderDLQTime:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d.Time = t
			}
		case HeaderDLQInstance:
			d.Instance = v
		case deadletter.HeaderComponent:
			d.Component = v
		default:
			d.Headers = append(d.Headers, h)
		}
	}
	return d
}

// ReadDeadLetters returns the newest limit records of the dead-letter topic
// (all when limit <= 0), oldest first.
func ReadDeadLetters(ctx context.Context, k *clients.Kafka, topic string, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	// The newest limit of the topic are among the newest limit of each
	// partition (plus a transaction marker after each record at most).
	err := ReadTopicTail(ctx, k, topic, 2*int64(max(limit, 0)), time.Second, func(r *kgo.Record) {
		out = append(out, ParseDeadLetter(r))
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
