package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A fault aimed at one client's fetches takes that client's and no other's,
// and the client it took from reads again once its request times out.
func TestDropReachesOnlyTheNamedClient(t *testing.T) {
	f := newRequestFaults()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(f.listen), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.install(c)
	consumer := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ClientID(id), kgo.ConsumeTopics("t"),
			kgo.FetchMaxWait(200*time.Millisecond), kgo.RequestTimeoutOverhead(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	victim, bystander := consumer("shopstream-sink"), consumer("shopstream-recommender")
	// Every fetch of the victim for 3s: a rule that took anyone's would
	// hold the bystander as long.
	drop := &rule{Key: kmsg.Fetch, Drop: true, Client: "shopstream-sink", Until: time.Now().Add(3 * time.Second), Left: -1}
	f.add(drop)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	read := func(cl *kgo.Client) time.Duration {
		t0 := time.Now()
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatal("no record within 30s")
			}
			if fs.NumRecords() > 0 {
				return time.Since(t0)
			}
		}
	}
	if d := read(bystander); d > 2*time.Second {
		t.Errorf("the bystander read its record after %s; a fault for another client held it", d)
	}
	if d := read(victim); d < 2*time.Second {
		t.Errorf("the victim read its record after %s, while its fetches were dropped", d)
	}
	if drop.hits.Load() == 0 {
		t.Error("the rule dropped nothing")
	}
}
