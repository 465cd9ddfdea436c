package kafkatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

// A record encoded with the cluster's serde and produced with its clients
// is read back and decoded by another serde, as by another process.
func TestClusterCarriesARecordEndToEnd(t *testing.T) {
	c := kafkatest.Start(t)
	c.CreateTopic(-1, nil, "products")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := c.Serde.Encode(ctx, nil, "products", &records.Product{ProductID: "p1", MallID: "m1", Name: "mug"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client().ProduceSync(ctx, &kgo.Record{Topic: "products", Key: []byte("m1/p1"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r := c.Client(kgo.ConsumeTopics("products"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := r.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("read %d records, want 1", len(recs))
	}
	var got records.Product
	if err := c.NewSerde().Decode(ctx, recs[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "mug" {
		t.Errorf("decoded %+v, want the mug", got)
	}
	parts, err := c.Admin().ListTopics(ctx, "products")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parts["products"].Partitions); n != 3 {
		t.Errorf("a topic created without a count has %d partitions, want 3 as in `shopstream dev`", n)
	}
}

func TestOptionsShapeTheCluster(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Brokers(3), kafkatest.Partitions(5), kafkatest.AutoCreateTopics())
	if len(c.Brokers) != 3 {
		t.Errorf("%d brokers, want 3", len(c.Brokers))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// With auto-creation a produce creates its topic, with the default count.
	if err := c.Client(kgo.AllowAutoTopicCreation()).ProduceSync(ctx, &kgo.Record{Topic: "auto", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	parts, err := c.Admin().ListTopics(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parts["auto"].Partitions); n != 5 {
		t.Errorf("the auto-created topic has %d partitions, want 5", n)
	}
}
