package recommender

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
)

// badRecord is an input that can never be joined: it goes to the DLQ.
type badRecord struct {
	reason string // one of deadletter's reasons
	err    error
}

func (b *badRecord) Error() string { return b.reason + ": " + b.err.Error() }
func (b *badRecord) Unwrap() error { return b.err }

// classifyDecode tells a record that will never decode (a badRecord) from a
// failure that retrying can fix, such as an unreachable registry.
func classifyDecode(err error) error {
	if reason := deadletter.ReasonOf(err); reason != "" {
		return &badRecord{reason, err}
	}
	return err
}

// deadLetter builds the DLQ record for r: the original key, value and
// headers, with the reason and origin in front.
func deadLetter(topic string, r *kgo.Record, bad *badRecord, now time.Time) *kgo.Record {
	return deadletter.Record(topic, r, deadletter.Why{Component: "recommender", Reason: bad.reason, Detail: bad.err.Error()}, now)
}
