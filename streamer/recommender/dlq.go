package recommender

import (
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// Reasons a record goes to the dead-letter topic, in its dlq.reason header.
const (
	ReasonNotFramed     = "not_framed"
	ReasonUnknownSchema = "unknown_schema_id"
	ReasonWrongSchema   = "wrong_schema"
	ReasonMalformed     = "malformed"
	ReasonMissingKey    = "missing_key"
	ReasonKeyMismatch   = "key_mismatch"
	ReasonEmptyUser     = "empty_user"
	ReasonEmptyQuery    = "empty_query"
	ReasonQueryTooLong  = "query_too_long"
)

// Dead-letter headers: why, where from, and when.
const (
	HeaderReason    = "dlq.reason"
	HeaderError     = "dlq.error"
	HeaderComponent = "dlq.component"
	HeaderTopic     = "dlq.source.topic"
	HeaderPartition = "dlq.source.partition"
	HeaderOffset    = "dlq.source.offset"
	HeaderTime      = "dlq.time"
)

// badRecord is an input that can never be joined: it goes to the DLQ.
type badRecord struct {
	reason string
	err    error
}

func (b *badRecord) Error() string { return b.reason + ": " + b.err.Error() }
func (b *badRecord) Unwrap() error { return b.err }

// classifyDecode tells a record that will never decode (a badRecord) from a
// failure that retrying can fix, such as an unreachable registry.
func classifyDecode(err error) error {
	for _, c := range []struct {
		is     error
		reason string
	}{
		{records.ErrNotFramed, ReasonNotFramed},
		{records.ErrUnknownSchemaID, ReasonUnknownSchema},
		{records.ErrWrongSchema, ReasonWrongSchema},
		{records.ErrMalformed, ReasonMalformed},
	} {
		if errors.Is(err, c.is) {
			return &badRecord{c.reason, err}
		}
	}
	return err
}

// deadLetter builds the DLQ record for r: the original key, value and
// headers, with the reason and origin in front.
func deadLetter(topic string, r *kgo.Record, bad *badRecord, now time.Time) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, 7+len(r.Headers))
	h = append(h,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(bad.reason)},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(bad.err.Error())},
		kgo.RecordHeader{Key: HeaderComponent, Value: []byte("recommender")},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	h = append(h, r.Headers...)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: h}
}
