package clients_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/testtool"
)

func TestNewKafkaRefusesNoBrokers(t *testing.T) {
	// franz-go would dial localhost:9092 instead, and a misconfigured
	// component would talk to whatever listens there.
	if _, err := clients.NewKafka(clients.KafkaOptions{}); err == nil || !strings.Contains(err.Error(), "no seed brokers") {
		t.Fatalf("NewKafka without brokers: %v", err)
	}
}

func TestKafkaClientsReachTheCluster(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := k.Connect(ctx, kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// With adds options for one client without changing the base.
	withID := k.With(kgo.ClientID("reader"))
	r, err := withID.NewClient(kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if id := r.OptValue(kgo.ClientID); id != "reader" {
		t.Errorf("client id %v, want reader", id)
	}
	if len(k.Opts()) == len(withID.Opts()) {
		t.Errorf("With changed the base: %d options, and %d with one added", len(k.Opts()), len(withID.Opts()))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fs := r.PollFetches(pctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	if got := fs.Records(); len(got) != 1 || string(got[0].Value) != "v" {
		t.Fatalf("read %v, want the one record produced", got)
	}
	sess, err := k.NewGroupTransactSession(kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"), kgo.TransactionalID("tx"))
	if err != nil {
		t.Fatal(err)
	}
	sess.Close()
}

func TestConnectToASilentBrokerSaysWhatToDo(t *testing.T) {
	// A broker that accepts connections and never answers: only the dial
	// timeout ends the wait.
	silent := testtool.SilentListener(t)
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: []string{silent}, DialTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = k.Connect(context.Background())
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s to give up, want about the 500ms dial timeout", took)
	}
	for _, want := range []string{"cannot reach Kafka at " + silent + " within 500ms", "shopstream dev", "KAFKA_BROKERS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
