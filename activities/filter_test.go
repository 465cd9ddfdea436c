package activities

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

func newFilterActivities(t *testing.T) (*Filter, *kgo.Client) {
	t.Helper()
	kc := kafkatest.Start(t)
	kc.CreateTopic(1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "control")
	return &Filter{Kafka: kc.Kafka, Serde: kc.Serde, Topic: "control"}, kc.Client()
}

func TestPublishAndLoadFilterState(t *testing.T) {
	f, cl := newFilterActivities(t)
	env := activityEnv(f)

	load := func() workflows.LoadFilterStateResult {
		t.Helper()
		v, err := env.ExecuteActivity(workflows.ActivityLoadFilterState, workflows.LoadFilterStateInput{})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.LoadFilterStateResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := load(); res.Found {
		t.Fatalf("empty topic: %+v", res)
	}

	at := time.UnixMilli(1_700_000_000_000).UTC()
	for _, st := range []workflows.FilterState{
		{Version: 1, Substring: "phone", SetAt: at, SetBy: "ana"},
		{Version: 3, Substring: "Phone", CaseSensitive: true, SetAt: at, SetBy: "bo"},
		{Version: 2, Substring: "late retry of an older state", SetAt: at},
	} {
		v, err := env.ExecuteActivity(workflows.ActivityPublishFilterState, workflows.PublishFilterStateInput{State: st})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.PublishFilterStateResult
		if err := v.Get(&res); err != nil || res.Topic != "control" {
			t.Fatalf("publish: %+v %v", res, err)
		}
	}
	// Something that is not a filter state: skipped, not fatal.
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "control", Key: []byte(streamer.ControlKey), Value: []byte("junk")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	res := load()
	want := workflows.FilterState{Version: 3, Substring: "Phone", CaseSensitive: true, SetAt: at, SetBy: "bo"}
	if !res.Found || res.State != want {
		t.Fatalf("loaded %+v, want %+v", res, want)
	}

	// What was published is what a streamer reads: the framed Avro
	// FilterState under the control key.
	var keys []string
	err := topicread.Read(context.Background(), f.Kafka, "control", topicread.Options{}, func(r *kgo.Record) error {
		keys = append(keys, string(r.Key))
		return nil
	})
	if err != nil || len(keys) != 4 || keys[0] != streamer.ControlKey {
		t.Fatalf("control topic keys %v, %v", keys, err)
	}
}
