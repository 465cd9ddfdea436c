package recommender

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"

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
	HeaderReason    = deadletter.HeaderReason
	HeaderError     = deadletter.HeaderError
	HeaderComponent = deadletter.HeaderComponent
	HeaderTopic     = deadletter.HeaderSourceTopic
	HeaderPartition = deadletter.HeaderSourcePartition
	HeaderOffset    = deadletter.HeaderSourceOffset
	HeaderTime      = deadletter.HeaderTime
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
	return deadletter.Record(topic, r, deadletter.Why{Component: "recommender", Reason: bad.reason, Detail: bad.err.Error()}, now)
}
