package collector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/records"
)

func TestStoreStateAndReads(t *testing.T) {
	ctx := context.Background()
	s := NewTestStore(t)
	now := time.UnixMilli(1_700_000_000_000).UTC()
	mk := func(mall, id string, st catalog.Status) change {
		p := &catalog.Product{Product: records.Product{MallID: mall, ProductID: id, Name: id}, Status: st, UpdatedAt: now,
			Images: []catalog.Image{{URL: "http://x/" + id, Key: mall + "/" + id + "/k.png", Size: 3}}}
		if st == catalog.StatusComplete {
			p.CollectedAt = now
		} else {
			p.Reason = "boom"
		}
		return change{key: mall + "/" + id, product: p, keep: []string{mall + "/" + id + "/k.png"}}
	}
	if _, _, err := s.apply(ctx, "shop_products", []change{
		mk("m1", "a", catalog.StatusComplete), mk("m1", "b", catalog.StatusFailed),
		mk("m2", "a", catalog.StatusComplete), mk("m2", "c", catalog.StatusComplete),
	}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListComplete(ctx, catalog.ListQuery{Limit: 2})
	if err != nil || len(page) != 2 || page[0].Product.Key() != "m1/a" || page[1].Product.Key() != "m2/a" {
		t.Fatalf("first page: %v %+v", err, page)
	}
	page, _ = s.ListComplete(ctx, catalog.ListQuery{Limit: 2, After: &catalog.Identity{MallID: "m2", ProductID: "a"}})
	if len(page) != 1 || page[0].Product.Key() != "m2/c" || page[0].Images[0].Key != "m2/c/k.png" || !page[0].CollectedAt.Equal(now) {
		t.Fatalf("second page: %+v", page)
	}
	page, _ = s.ListComplete(ctx, catalog.ListQuery{Limit: 10, MallID: "m1"})
	if len(page) != 1 || page[0].Product.Key() != "m1/a" {
		t.Fatalf("mall m1 (failed b left out): %+v", page)
	}
	got, _ := s.Lookup(ctx, "a", "")
	if len(got) != 2 {
		t.Fatalf("lookup a in every mall: %+v", got)
	}
	got, _ = s.Lookup(ctx, "b", "m1")
	if len(got) != 1 || got[0].Status != catalog.StatusFailed || got[0].Reason != "boom" {
		t.Fatalf("lookup failed b: %+v", got)
	}

	// Replacing an image orphans the old blob; deleting orphans the rest;
	// taking a blob back un-orphans it.
	ch := mk("m1", "a", catalog.StatusComplete)
	ch.product.Images[0].Key, ch.keep = "m1/a/new.png", []string{"m1/a/new.png"}
	ch.orphans = []string{"m1/a/k.png"}
	if _, _, err := s.apply(ctx, "shop_products", []change{ch, {key: "m2/c", remove: true, orphans: []string{"m2/c/k.png"}}}); err != nil {
		t.Fatal(err)
	}
	pr, err := s.load(ctx, []string{"m1/a", "m2/c", "m9/z"})
	if err != nil {
		t.Fatal(err)
	}
	if pr["m2/c"].product != nil || len(pr["m2/c"].orphans) != 1 || pr["m9/z"].product != nil {
		t.Fatalf("deleted m2/c: %+v", pr["m2/c"])
	}
	if pr["m1/a"].product.Images[0].Key != "m1/a/new.png" || len(pr["m1/a"].orphans) != 1 || pr["m1/a"].orphans[0] != "m1/a/k.png" {
		t.Fatalf("updated m1/a: %+v %+v", pr["m1/a"].product, pr["m1/a"].orphans)
	}
	back := mk("m1", "a", catalog.StatusComplete)
	if _, _, err := s.apply(ctx, "shop_products", []change{back}); err != nil {
		t.Fatal(err)
	}
	if pr, _ := s.load(ctx, []string{"m1/a"}); len(pr["m1/a"].orphans) != 0 {
		t.Fatalf("a re-referenced blob is still orphaned: %v", pr["m1/a"].orphans)
	}
	if err := s.forgetOrphans(ctx, []string{"m2/c/k.png"}); err != nil {
		t.Fatal(err)
	}
	if pr, _ := s.load(ctx, []string{"m2/c"}); len(pr["m2/c"].orphans) != 0 {
		t.Fatalf("forgotten orphan still there: %v", pr["m2/c"].orphans)
	}
}

// A value PostgreSQL refuses (a NUL in text: SQLSTATE 22021; in jsonb:
// 22P05) costs its own change only: the others of the batch are written,
// the refused one is named, and the images it stored are recorded as
// orphans. Before, the whole batch rolled back, and was retried forever.
func TestStoreWritesAroundARefusedChange(t *testing.T) {
	ctx := context.Background()
	s := NewTestStore(t)
	now := time.UnixMilli(1_700_000_000_000).UTC()
	mk := func(id, name, reason string) change {
		p := &catalog.Product{Product: records.Product{MallID: "m1", ProductID: id, Name: name}, Status: catalog.StatusFailed,
			Reason: reason, UpdatedAt: now, Images: []catalog.Image{{Key: "m1/" + id + "/k.png"}}}
		return change{key: "m1/" + id, product: p, keep: []string{"m1/" + id + "/k.png"}, fresh: []string{"m1/" + id + "/k.png"}}
	}
	refused, _, err := s.apply(ctx, "shop_products", []change{
		mk("before", "ok", "fine"),
		mk("nul-reason", "ok", "server answered 404 Not\x00Found"),
		mk("nul-name", "Mug\x00", "fine"),
		mk("after", "ok", "fine"),
	})
	if err != nil {
		t.Fatalf("a refused value failed the whole batch: %v", err)
	}
	if len(refused) != 2 || refused[0].key != "m1/nul-reason" || refused[1].key != "m1/nul-name" ||
		!strings.Contains(refused[0].reason, "22021") || !strings.Contains(refused[1].reason, "22P05") {
		t.Fatalf("refused %+v, want the two NUL changes with their SQLSTATE", refused)
	}
	for _, id := range []string{"before", "after"} {
		if st, err := s.Status(ctx, "m1", id); err != nil || st == nil {
			t.Errorf("%s was not written: %v", id, err)
		}
	}
	pr, err := s.load(ctx, []string{"m1/nul-reason"})
	if err != nil {
		t.Fatal(err)
	}
	if p := pr["m1/nul-reason"]; p.product != nil || len(p.orphans) != 1 || p.orphans[0] != "m1/nul-reason/k.png" {
		t.Fatalf("the refused change: %+v, want no row and its image recorded as an orphan", p)
	}
}

// The rebalance half of parking exactly once, in PostgreSQL: once another
// instance claimed a parked record, the job that parked it can neither
// write its product's state nor mark its output (so it aborts its
// transaction), while the claimer can; and a claim returns the output a
// job marked, for the claimer to look up in Kafka.
func TestParkedRecordsAreFinishedOnlyByTheirOwner(t *testing.T) {
	ctx := context.Background()
	s := NewTestStore(t)
	const topic = "shop_products"
	now := time.UnixMilli(1_700_000_000_000).UTC()
	rec := &kgo.Record{Topic: topic, Key: []byte("m1/p"), Partition: 1, Offset: 7, Value: []byte("v"), Timestamp: now}
	if _, _, err := s.apply(ctx, topic, []change{{key: "m1/p", park: rec, owner: "a/1"}}); err != nil {
		t.Fatal(err)
	}
	state := func(name string) change {
		p := &catalog.Product{Product: records.Product{MallID: "m1", ProductID: "p", Name: name}, Status: catalog.StatusComplete, UpdatedAt: now, CollectedAt: now}
		return change{key: "m1/p", product: p, finishes: rec}
	}
	out := &kgo.Record{Topic: "products_with_full_img_set", Partition: 2, Offset: 41}

	claimed, err := s.claim(ctx, topic, []int32{1}, "b/1", nil)
	if err != nil || len(claimed) != 1 || claimed[0].out != nil || claimed[0].rec.Offset != 7 || string(claimed[0].rec.Value) != "v" {
		t.Fatalf("claim: %v %+v, want the parked record, no output marked", err, claimed)
	}
	byA := state("by a")
	byA.owner = "a/1"
	if _, lost, err := s.apply(ctx, topic, []change{byA}); err != nil || len(lost) != 1 {
		t.Fatalf("the displaced job's state: lost %v, err %v; want it refused as lost", lost, err)
	}
	if st, _ := s.Status(ctx, "m1", "p"); st != nil {
		t.Fatalf("the displaced job wrote the state %+v", st)
	}
	if lost, err := s.markEmitted(ctx, topic, []emission{{from: rec, owner: "a/1", out: out}}); err != nil || len(lost) != 1 {
		t.Fatalf("the displaced job's mark: lost %v, err %v; want it refused", lost, err)
	}

	byB := state("by b")
	byB.owner = "b/1"
	if _, lost, err := s.apply(ctx, topic, []change{byB}); err != nil || len(lost) != 0 {
		t.Fatalf("the owner's state: lost %v, err %v", lost, err)
	}
	if st, _ := s.Status(ctx, "m1", "p"); st == nil || st.Product.Name != "by b" {
		t.Fatalf("state %+v, want the owner's", st)
	}
	if lost, err := s.markEmitted(ctx, topic, []emission{{from: rec, owner: "b/1", out: out}}); err != nil || len(lost) != 0 {
		t.Fatalf("the owner's mark: lost %v, err %v", lost, err)
	}
	// A crash now: the next claimer learns where the output went.
	claimed, err = s.claim(ctx, topic, []int32{1}, "c/1", nil)
	if err != nil || len(claimed) != 1 || claimed[0].out == nil ||
		claimed[0].out.Topic != out.Topic || claimed[0].out.Partition != 2 || claimed[0].out.Offset != 41 || string(claimed[0].out.Key) != "m1/p" {
		t.Fatalf("claim after the mark: %v %+v", err, claimed)
	}
	// Keys collecting here are not claimed, and other partitions not at all.
	if again, err := s.claim(ctx, topic, []int32{1}, "c/2", []string{"m1/p"}); err != nil || len(again) != 0 {
		t.Fatalf("claim skipping m1/p: %v %+v", err, again)
	}
	if other, err := s.claim(ctx, topic, []int32{0, 2}, "c/3", nil); err != nil || len(other) != 0 {
		t.Fatalf("claim of other partitions: %v %+v", err, other)
	}
	// Parking a newer record of the key disowns everyone and clears the mark.
	newer := &kgo.Record{Topic: topic, Key: []byte("m1/p"), Partition: 1, Offset: 9, Timestamp: now}
	if _, _, err := s.apply(ctx, topic, []change{{key: "m1/p", park: newer, owner: "c/4"}}); err != nil {
		t.Fatal(err)
	}
	if lost, _ := s.markEmitted(ctx, topic, []emission{{from: rec, owner: "c/1", out: out}}); len(lost) != 1 {
		t.Fatalf("a mark for the replaced offset: lost %v, want refused", lost)
	}
	claimed, _ = s.claim(ctx, topic, []int32{1}, "d/1", nil)
	if len(claimed) != 1 || claimed[0].rec.Offset != 9 || claimed[0].out != nil {
		t.Fatalf("after parking a newer record: %+v", claimed)
	}
}
