package streamer

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A restarted instance given its predecessor's transactional id (the Helm
// chart gives the StatefulSet pod name) aborts the transaction the dead
// process left open, so read_committed readers of the filtered topic see
// its output at once. With a fresh id the open transaction holds the last
// stable offset until its timeout (a minute here), and the output behind it
// stays invisible: that case is run too, to show what the stable id buys.
func TestStableTransactionalIDAbortsThePredecessorsTransaction(t *testing.T) {
	for _, c := range []struct {
		name, txnID string
		visible     bool
	}{
		{"same id as the predecessor", "shopstream-streamer-0", true},
		{"a fresh id", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEnv(t, 1)
			ctx := context.Background()

			// The predecessor died inside a transaction on the filtered topic.
			dead := e.kc.Client(kgo.TransactionalID("shopstream-streamer-0"),
				kgo.TransactionTimeout(time.Minute), kgo.DefaultProduceTopic(e.topics.Filtered))
			if err := dead.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			if err := dead.ProduceSync(ctx, &kgo.Record{Key: []byte("half-done")}).FirstErr(); err != nil {
				t.Fatal(err)
			}

			cfg := e.config("streamer-0")
			cfg.TransactionalID = c.txnID
			e.start(cfg)
			want := e.produce(0, 200)
			e.waitProcessed(DefaultGroup, 30*time.Second)
			got := e.read(e.topics.Filtered)
			if c.visible {
				expectSameKeys(t, got, want)
				return
			}
			if len(got) != 0 {
				t.Errorf("read_committed saw %d records behind a transaction left open: the test shows nothing", len(got))
			}
		})
	}
}
