package txnmarker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/topicread"
)

func TestIsMarkerGroup(t *testing.T) {
	for _, f := range families() {
		if g := Group(f, "wf-1", "unit-3"); !IsMarkerGroup(g) {
			t.Errorf("%s is a marker group", g)
		}
	}
	for _, g := range []string{"shopstream-streamer", "shopstream-sink", "connect-shopstream-products", "shopstream-emulate", "shopstream-backfill"} {
		if IsMarkerGroup(g) {
			t.Errorf("%s is not a marker group", g)
		}
	}
}

// A unit committed by one attempt is found by the next, with its marks;
// an attempt fenced by a newer one cannot commit after it; the topic holds
// each record once.
func TestMarkerFindsTheEarlierCommitAndFencesZombies(t *testing.T) {
	kc := kafkatest.Start(t)
	kc.CreateTopic(2, nil, "out")
	ctx := context.Background()
	ps := New(kc.Kafka, kc.Admin())
	t.Cleanup(ps.Close)
	key := Key{TxnID: TransactionalID(FamilyBackfill, "wf", "lane-0"), Topic: "out"}
	marker := Group(FamilyBackfill, "wf", "unit-0")

	zombie, err := ps.Begin(ctx, key, marker, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := ps.Committed(ctx, marker); err != nil || found {
		t.Fatalf("fresh marker: found %v, err %v", found, err)
	}
	if err := zombie.Client().ProduceSync(ctx, &kgo.Record{Key: []byte("z"), Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A retry on another worker: a new producer of the lane fences the
	// zombie, finds no commit, produces and commits.
	other := New(kc.Kafka, kc.Admin())
	t.Cleanup(other.Close)
	p, err := other.Begin(ctx, key, marker, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Client().ProduceSync(ctx, &kgo.Record{Key: []byte("a"), Value: []byte("retry")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	want := Mark{Topic: "out", Partition: 1, Offset: 42, Metadata: `{"records":1}`}
	if err := p.Commit(ctx, []Mark{want}, 1); err != nil {
		t.Fatal(err)
	}
	other.Release(p, true)
	if err := zombie.Commit(ctx, []Mark{{Topic: "out", Partition: 0, Offset: 1, Metadata: "zombie"}}, 1); err == nil {
		t.Fatal("the fenced attempt committed")
	}
	ps.Release(zombie, false)

	// A third attempt, on the kept producer: the marker says what the
	// committed one did.
	p, err = other.Begin(ctx, key, marker, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	marks, found, err := other.Committed(ctx, marker)
	p.AbortMarkerOnly()
	other.Release(p, false)
	if err != nil || !found || len(marks) != 1 || marks[0] != want {
		t.Fatalf("marker after the commit: %+v found %v err %v, want %+v", marks, found, err, want)
	}

	var values []string
	if err := topicread.Read(ctx, kc.Kafka, "out", topicread.Options{}, func(r *kgo.Record) error {
		values = append(values, string(r.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(values) != 1 || values[0] != "retry" {
		t.Fatalf("committed records %q, want only the retry's", values)
	}

	if n, err := ps.DeleteMarkers(ctx, []string{marker, Group(FamilyBackfill, "wf", "never")}); err != nil || n != 1 {
		t.Fatalf("delete markers: %d deleted, err %v; want 1", n, err)
	}
	if _, found, err := ps.Committed(ctx, marker); err != nil || found {
		t.Fatalf("deleted marker: found %v, err %v", found, err)
	}
}
