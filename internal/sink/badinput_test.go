package sink

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/pgcluster"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
)

// Records that cannot be decoded or stored go to the dead-letter topic with
// their original bytes and the reason; the records around them are written.
func TestSinkSendsBadRecordsToTheDeadLetterTopic(t *testing.T) {
	r := newRig(t, 1)
	store := openStore(t, pgtest.DB(t))
	ctx := context.Background()
	// An operator's constraint makes PostgreSQL itself refuse one row.
	if _, err := store.Pool.Exec(ctx, "ALTER TABLE products ADD CONSTRAINT stock_not_negative CHECK (stock >= 0)"); err != nil {
		t.Fatal(err)
	}
	good := func(id string, stock int32) *kgo.Record {
		p := randProductFixed("m", id, stock)
		v, err := r.serde.Encode(ctx, nil, r.topics.Products, &p)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: r.topics.Products, Key: []byte(p.Key()), Value: v}
	}
	g1 := good("1", 1)
	truncated := good("2", 1)
	truncated.Value = truncated.Value[:len(truncated.Value)-4]
	mismatch := good("3", 1)
	mismatch.Key = []byte("m/other")
	nul := randProductFixed("m", "4", 1)
	nul.Name = "bad\x00name"
	nulValue, err := r.serde.Encode(ctx, nil, r.topics.Products, &nul)
	if err != nil {
		t.Fatal(err)
	}
	refused := good("5", -1)
	noKey := good("6", 1)
	noKey.Key = nil
	g2 := good("7", 2)
	in := []*kgo.Record{
		g1,
		{Topic: r.topics.Products, Key: []byte("m/json"), Value: []byte(`{"json":true}`), Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("legacy")}}},
		{Topic: r.topics.Products, Key: []byte("m/unknown"), Value: []byte{0, 0, 0, 0x7f, 0x7f, 2, 'a'}},
		truncated, mismatch,
		{Topic: r.topics.Products, Key: []byte("m/4"), Value: nulValue},
		refused, noKey, g2,
	}
	if err := r.prod.ProduceSync(ctx, in...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, stop := runInBackground(t, r, store, reg)
	defer stop()

	want := map[int64]string{
		1: deadletter.ReasonNotFramed, 2: deadletter.ReasonUnknownSchemaID, 3: deadletter.ReasonMalformed,
		4: deadletter.ReasonInvalid, 5: deadletter.ReasonInvalid, 6: deadletter.ReasonRefused, 7: deadletter.ReasonNoKey,
	}
	dl, err := r.kc.Kafka.NewClient(kgo.ConsumeTopics(r.topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	got := map[int64]*kgo.Record{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		dl.PollFetches(pctx).EachRecord(func(rec *kgo.Record) {
			off, _ := strconv.ParseInt(header(rec, deadletter.HeaderSourceOffset), 10, 64)
			got[off] = rec
		})
		cancel()
	}
	for off, class := range want {
		rec := got[off]
		if rec == nil {
			t.Errorf("offset %d (%s) did not reach the dead-letter topic", off, class)
			continue
		}
		orig := in[off]
		if string(rec.Key) != string(orig.Key) || string(rec.Value) != string(orig.Value) {
			t.Errorf("offset %d: dead letter has key %q and %d value bytes, want the original %q and %d bytes", off, rec.Key, len(rec.Value), orig.Key, len(orig.Value))
		}
		if header(rec, deadletter.HeaderReason) != class || header(rec, deadletter.HeaderError) == "" || header(rec, deadletter.HeaderSourceTopic) != r.topics.Products ||
			header(rec, deadletter.HeaderSourcePartition) != "0" || header(rec, deadletter.HeaderTime) == "" || header(rec, deadletter.HeaderComponent) != "sink" {
			t.Errorf("offset %d: headers %v, want reason %s, the detail, the source and the time", off, rec.Headers, class)
		}
		t.Logf("offset %d: %s: %s", off, class, header(rec, deadletter.HeaderError))
	}
	if len(got) != len(want) {
		t.Errorf("dead-letter topic holds %d records, want %d", len(got), len(want))
	}
	if header(got[1], "origin") != "legacy" {
		t.Errorf("the original headers were not kept: %v", got[1].Headers)
	}
	w := newWorld()
	w.ends = map[string]map[int32]int64{r.topics.Products: {0: int64(len(in))}}
	waitCaughtUp(t, store, w, 30*time.Second)
	var keys []string
	rows, _ := store.Pool.Query(ctx, "SELECT key FROM products ORDER BY key")
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		keys = append(keys, k)
	}
	if len(keys) != 2 || keys[0] != "m/1" || keys[1] != "m/7" {
		t.Errorf("products = %v, want the two good records m/1 and m/7", keys)
	}
	if n := testutil.ToFloat64(s.m.dead.WithLabelValues(r.topics.Products, deadletter.ReasonInvalid)); n != 2 {
		t.Errorf("dead letters counted as invalid: %v, want 2", n)
	}
}

func header(rec *kgo.Record, key string) string {
	if rec == nil {
		return ""
	}
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func randProductFixed(mall, id string, stock int32) records.Product {
	return records.Product{ProductID: id, MallID: mall, Name: "n" + id, Price: records.Price{Amount: "1.50", Currency: "EUR"},
		Tags: []string{}, Images: []records.Image{}, Specifications: map[string]string{}, Stock: stock,
		CreatedAt: epoch, UpdatedAt: epoch}
}

// PostgreSQL goes away mid-stream: the sink retries with backoff instead of
// exiting, and once the server is back it writes everything, exactly once.
func TestSinkRetriesWhileTheDatabaseIsDown(t *testing.T) {
	dir, err := os.MkdirTemp("", "sink-dbdown-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755) // the postgres user enters it when we are root
	t.Cleanup(func() { os.RemoveAll(dir) })
	start := func(port int) *pgcluster.Cluster {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(dir, "pg"), Port: port, Fast: true})
		if err != nil {
			pgtest.Unavailable(t, err)
		}
		t.Cleanup(func() { _ = c.Stop() })
		return c
	}
	db := start(0)
	r := newRig(t, 3)
	store := openStore(t, db.DSN)
	w := newWorld()
	r.produce(t, w, mix{products: 3000, filtered: 1000, complete: 1000, searches: 1000, recs: 1000, tombstoneEvery: 10}, 7)
	reg := prometheus.NewRegistry()
	s, stop := runInBackground(t, r, store, reg)
	defer stop()
	waitCaughtUp(t, store, w, time.Minute)

	if err := db.Stop(); err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}
	r.produce(t, w, mix{products: 3000, filtered: 1000, complete: 1000, searches: 1000, recs: 1000, tombstoneEvery: 10}, 8)
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.m.retries.WithLabelValues("write batch")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not retry while PostgreSQL was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start(db.Port)
	waitCaughtUp(t, store, w, time.Minute)
	assertTablesEqualWorld(t, store, w)
	t.Logf("retried %v times while PostgreSQL was down", testutil.ToFloat64(s.m.retries.WithLabelValues("write batch")))
}
