package environment

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
)

// A dev stack whose Kafka was killed with a transaction open aborts it
// before anyone can connect, and says so; one stopped cleanly is started
// as it is.
func TestStartRecoversKafkaFromAnUncleanStop(t *testing.T) {
	ctx := context.Background()
	running := t.TempDir()
	first, err := Start(ctx, Options{DataDir: running, StartKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if first.KafkaRecovery != nil {
		t.Fatalf("a new data directory was recovered: %+v", first.KafkaRecovery)
	}
	tx, err := kgo.NewClient(kgo.SeedBrokers(first.KafkaBrokers...), kgo.TransactionalID("emulate-slot-0"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := kadm.NewClient(tx).CreateTopic(ctx, 1, 1, nil, "shop_products"); err != nil {
		t.Fatal(err)
	}
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// What a SIGKILL leaves: the directory as it is while the broker runs.
	killed := t.TempDir()
	kafkatest.CopyDir(t, running, killed)
	if !StoppedUncleanly(killed) {
		t.Fatal("a killed broker's directory reads as stopped cleanly")
	}

	stack, err := Start(ctx, Options{DataDir: killed, StartKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := stack.KafkaRecovery
	if rec == nil || len(rec.Aborted) != 1 || rec.Aborted[0].Topic != "shop_products" || len(rec.Left) != 0 {
		t.Fatalf("recovery %+v: want the one open transaction on shop_products aborted", rec)
	}
	if err := stack.Close(); err != nil {
		t.Fatal(err)
	}
	if StoppedUncleanly(killed) {
		t.Fatal("a cleanly closed broker's directory reads as killed")
	}
	stack, err = Start(ctx, Options{DataDir: killed, StartKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	if stack.KafkaRecovery != nil {
		t.Fatalf("after a clean stop, start recovered %+v", stack.KafkaRecovery)
	}
}
