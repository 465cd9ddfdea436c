package status

import (
	"context"
	"time"

	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/process"
)

// hangingStatus reports each hanging transaction as a problem, naming its
// producer: the lag of the consumers it stops, measured against the last
// stable offset it holds, says 0.
func hangingStatus(ctx context.Context, e *process.Env, r *Report, interval time.Duration) {
	if e.Client == nil {
		return // kafkaStatus said why
	}
	t := e.Config.Topics
	topics := []string{t.Products, t.CompleteProducts, t.Filtered, t.Find, t.Recommendations, t.DLQ, t.Filter, t.FilterApplied}
	k := health.Kafka{Admin: e.Admin, Kafka: e.Kafka}
	txns, err := k.Transactions(ctx, topics, time.Now())
	if err != nil {
		r.problem("find the transactions that hold last stable offsets: %v", err)
		return
	}
	for _, h := range txns.Hanging() {
		id := ""
		if h.TransactionalID != "" {
			id = ", " + h.TransactionalID
		}
		r.problem("%s/%d: a hanging transaction of producer %d (epoch %d%s, started %s) holds the last stable offset at %d while the end is %d; "+
			"read_committed consumers stop there and their lag does not show it (%s); abort it: shopstream kafka abort-hanging --topic %s --partition %d --producer-id %d",
			h.Topic, h.Partition, h.ProducerID, h.ProducerEpoch, id, h.Started.Format(time.RFC3339), h.Stable, h.End, h.Reason, h.Topic, h.Partition, h.ProducerID)
	}
	if len(txns.Held) == 0 {
		return
	}
	// One sample cannot tell a partition held by nobody from one whose
	// transaction ended between two requests: look again.
	select {
	case <-ctx.Done():
		return
	case <-time.After(interval):
	}
	again, err := k.Transactions(ctx, topics, time.Now())
	if err != nil {
		r.problem("find the transactions that hold last stable offsets: %v", err)
		return
	}
	for _, h := range txns.StillHeld(again) {
		r.problem("%s/%d: the last stable offset stays at %d while the end is %d and no broker names a producer holding it: "+
			"read_committed consumers stop there; `shopstream kafka hanging --topic %s --scan` says more", h.Topic, h.Partition, h.Stable, h.End, h.Topic)
	}
}
