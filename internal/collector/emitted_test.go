package collector

import (
	"context"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
)

// A marked output is read back as what Kafka did with its transaction:
// committed, aborted, or still open (undecided, and decided once it
// commits); a record at the offset with another key is not the output.
func TestMarkedOutputsAreReadBackFromKafka(t *testing.T) {
	ctx := context.Background()
	kc := kafkatest.Start(t)
	const topic = "products_with_full_img_set"
	kc.CreateTopic(1, nil, topic)
	c := &Collector{o: Options{Deps: component.Deps{Kafka: kc.Kafka, Logger: slog.New(slog.DiscardHandler)}}}

	// txn produces key in a transaction of its own and ends it as told
	// (nil: left open); it returns the output as a marked row holds it.
	txn := func(id, key string, end *kgo.TransactionEndTry) (*kgo.Record, *kgo.Client) {
		cl := kc.Client(kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic))
		t.Cleanup(cl.Close)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Key: []byte(key), Value: []byte("v")}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if end != nil {
			if err := cl.EndTransaction(ctx, *end); err != nil {
				t.Fatal(err)
			}
		}
		return &kgo.Record{Topic: topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key}, cl
	}
	commit, abort := kgo.TryCommit, kgo.TryAbort
	committed, _ := txn("t-commit", "m1/a", &commit)
	aborted, _ := txn("t-abort", "m1/b", &abort)
	open, openCl := txn("t-open", "m1/c", nil)
	other := &kgo.Record{Topic: topic, Partition: committed.Partition, Offset: committed.Offset, Key: []byte("m1/z")}

	got, err := c.emittedOutputs(ctx, []*kgo.Record{committed, aborted, open, other})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		out  *kgo.Record
		want verdict
	}{{committed, emitted}, {aborted, notEmitted}, {open, undecided}, {other, notEmitted}} {
		if got[tc.out] != tc.want {
			t.Errorf("#%d %s at %d: %v, want %v", i, tc.out.Key, tc.out.Offset, got[tc.out], tc.want)
		}
	}

	if err := openCl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got, err := c.emittedOutputs(ctx, []*kgo.Record{open}); err != nil || got[open] != emitted {
		t.Fatalf("the open transaction, committed since: %v %v, want emitted", got[open], err)
	}
}
