package sink

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
)

// The streamer reads a product its filter drops only up to the name (the
// framing, the schema id and the three leading strings), so a value that
// is malformed after its name is the sink's to find: with the streamer and
// the sink on the same product topic, such a record reaches the
// dead-letter topic from the sink, never the filtered topic, and the
// streamer does not dead-letter it. A product the filter passes is checked
// whole by the streamer, which dead-letters it when it is malformed.
func TestSinkDeadLettersWhatTheStreamerDrops(t *testing.T) {
	r := newRig(t, 1)
	store := openStore(t, pgtest.DB(t))
	ctx := context.Background()
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	r.kc.CreateTopic(1, compact, r.topics.Filter)
	r.kc.CreateTopic(1, compact, r.topics.FilterApplied)
	state, err := r.serde.Encode(ctx, nil, r.topics.Filter, &records.FilterState{Version: 1, Substring: "phone", SetAt: time.Now(), SetBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	product := func(id, name string) []byte {
		p := randProductFixed("m", id, 1)
		p.Name = name
		v, err := r.serde.Encode(ctx, nil, r.topics.Products, &p)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	phone, laptop := product("1", "Galaxy Phone 15"), product("2", "Laptop 14")
	in := []*kgo.Record{
		{Key: []byte("m/1"), Value: phone},
		{Key: []byte("m/2"), Value: laptop},
		// Dropped by the streamer, malformed after the name.
		{Key: []byte("m/cut"), Value: laptop[:len(laptop)-1]},
		{Key: []byte("m/trailing"), Value: append(bytes.Clone(laptop), 0, 0)},
		// Passed by the streamer's filter, malformed after the name.
		{Key: []byte("m/phone-cut"), Value: phone[:len(phone)-1]},
	}
	for _, rec := range in {
		rec.Topic = r.topics.Products
	}
	if err := r.prod.ProduceSync(ctx, append(in, &kgo.Record{Topic: r.topics.Filter, Key: []byte(streamer.ControlKey), Value: state})...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	st, err := streamer.New(streamer.Options{Deps: component.Deps{Kafka: r.kc.Kafka, Topics: r.topics, Serde: r.serde},
		Group: "streamer-beside-the-sink", InstanceID: "beside-the-sink"})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopStreamer := context.WithCancel(ctx)
	streamerDone := make(chan error, 1)
	go func() { streamerDone <- st.Run(sctx) }()
	defer func() {
		stopStreamer()
		if err := <-streamerDone; err != nil {
			t.Errorf("streamer: %v", err)
		}
	}()
	_, stopSink := runInBackground(t, r, store, prometheus.NewRegistry())
	defer stopSink()

	// Both have read everything once the streamer committed the product
	// topic's end and the sink dead-lettered all three broken records.
	byComponent := map[string]map[string]string{} // component → key → reason
	deadline := time.Now().Add(30 * time.Second)
	for {
		committed, err := r.admin.FetchOffsets(ctx, "streamer-beside-the-sink")
		o, ok := committed.Lookup(r.topics.Products, 0)
		streamed := err == nil && ok && o.At == int64(len(in))
		byComponent = map[string]map[string]string{}
		if err := topicread.Read(ctx, r.kc.Kafka, r.topics.DLQ, topicread.Options{}, func(rec *kgo.Record) error {
			d := deadletter.Parse(rec)
			if byComponent[d.Component] == nil {
				byComponent[d.Component] = map[string]string{}
			}
			byComponent[d.Component][string(d.Key)] = d.Reason
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if streamed && len(byComponent["sink"]) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: streamer committed %v (%v), dead letters %v", o, err, byComponent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, key := range []string{"m/cut", "m/trailing", "m/phone-cut"} {
		if reason := byComponent["sink"][key]; reason != deadletter.ReasonMalformed {
			t.Errorf("%s: the sink's dead letter says %q, want %q", key, reason, deadletter.ReasonMalformed)
		}
	}
	if got := byComponent["streamer"]; len(got) != 1 || got["m/phone-cut"] != deadletter.ReasonMalformed {
		t.Errorf("the streamer dead-lettered %v, want only m/phone-cut as %s", got, deadletter.ReasonMalformed)
	}
	var filtered []string
	if err := topicread.Read(ctx, r.kc.Kafka, r.topics.Filtered, topicread.Options{}, func(rec *kgo.Record) error {
		filtered = append(filtered, string(rec.Key))
		if !bytes.Equal(rec.Value, phone) {
			t.Errorf("%s: the filtered topic holds %d bytes that are not the whole phone", rec.Key, len(rec.Value))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(filtered) != 1 || filtered[0] != "m/1" {
		t.Errorf("the filtered topic holds %v, want only the whole phone m/1", filtered)
	}
}
