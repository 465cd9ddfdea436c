package streamer

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
)

// errNoKey is the DLQ error of a record without a key: the filtered topic is
// compacted, and Kafka refuses a record without a key there; forwarding it
// would abort every transaction that carries it.
var errNoKey = errors.New("the record has no key (mall_id/product_id): a compacted topic cannot hold it")

// deadLetter builds the dead-letter record of r: its key, value and headers
// unchanged, plus headers that say why, from where and when.
func deadLetter(topic string, r *kgo.Record, reason string, err error, instance string, now time.Time) *kgo.Record {
	return deadletter.Record(topic, r, deadletter.Why{Component: "streamer", Instance: instance, Reason: reason, Detail: err.Error()}, now)
}
