package topicread

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/kafkatest"
)

// cluster is a one-broker kfake with a client that writes to chosen
// partitions.
type cluster struct {
	t     *testing.T
	kc    *kafkatest.Cluster
	kafka *clients.Kafka
	cl    *kgo.Client
	adm   *kadm.Client
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	kc := kafkatest.Start(t)
	c := &cluster{t: t, kc: kc, kafka: kc.Kafka, cl: kc.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))}
	c.adm = kadm.NewClient(c.cl)
	return c
}

func (c *cluster) topic(name string, partitions int32) {
	c.t.Helper()
	if _, err := c.adm.CreateTopic(context.Background(), partitions, 1, nil, name); err != nil {
		c.t.Fatal(err)
	}
}

// plain writes values to a partition outside any transaction.
func (c *cluster) plain(topic string, p int32, values ...string) {
	c.t.Helper()
	var rs []*kgo.Record
	for _, v := range values {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)})
	}
	if err := c.cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		c.t.Fatal(err)
	}
}

// txn writes values to a partition in a transaction and ends it as told;
// a nil end leaves it open and returns the producer, to end it later.
func (c *cluster) txn(id, topic string, p int32, end *kgo.TransactionEndTry, values ...string) *kgo.Client {
	c.t.Helper()
	ctx := context.Background()
	tx := c.kc.Client(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := tx.BeginTransaction(); err != nil {
		c.t.Fatal(err)
	}
	for _, v := range values {
		if err := tx.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)}).FirstErr(); err != nil {
			c.t.Fatal(err)
		}
	}
	if end != nil {
		if err := tx.EndTransaction(ctx, *end); err != nil {
			c.t.Fatal(err)
		}
	}
	return tx
}

var commit, abort = kgo.TryCommit, kgo.TryAbort

// values collects what a read hands out, by partition.
func values(into map[int32][]string) func(*kgo.Record) error {
	return func(r *kgo.Record) error {
		into[r.Partition] = append(into[r.Partition], string(r.Value))
		return nil
	}
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A partition that ends with a commit marker, one that ends with aborted
// records and their marker, and an empty one: Read returns once each is
// read to its last stable offset, with only the committed records.
func TestReadStopsAtTheLastStableOffsetPastMarkers(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 3)
	c.txn("a", "t", 0, &commit, "a1", "a2")
	c.plain("t", 1, "b1")
	c.txn("b", "t", 1, &abort, "gone1", "gone2")
	got := map[int32][]string{}
	if err := Read(within(t, 10*time.Second), c.kafka, "t", Options{}, values(got)); err != nil {
		t.Fatal(err)
	}
	want := map[int32][]string{0: {"a1", "a2"}, 1: {"b1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}

// An open transaction holds the last stable offset back: Read returns the
// records before it and does not wait for the transaction.
func TestReadDoesNotWaitForAnOpenTransaction(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 1)
	c.plain("t", 0, "before")
	tx := c.txn("open", "t", 0, nil, "pending")
	c.plain("t", 0, "after-the-open-one")
	got := map[int32][]string{}
	if err := Read(within(t, 10*time.Second), c.kafka, "t", Options{}, values(got)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got[0]) != "[before]" {
		t.Fatalf("read %v, want only the record before the open transaction", got[0])
	}
	if err := tx.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	clear(got)
	if err := Read(within(t, 10*time.Second), c.kafka, "t", Options{}, values(got)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got[0]) != "[before pending after-the-open-one]" {
		t.Fatalf("after the commit: read %v", got[0])
	}
}

// Tail counts offsets (markers included) from each partition's end; a
// subset of partitions reads only those.
func TestReadTailAndPartitions(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 2)
	c.plain("t", 0, "1", "2", "3", "4", "5")
	c.plain("t", 1, "x")
	c.txn("a", "t", 1, &commit, "y", "z") // y, z and a marker

	got := map[int32][]string{}
	if err := Read(within(t, 10*time.Second), c.kafka, "t", Options{Tail: 2}, values(got)); err != nil {
		t.Fatal(err)
	}
	if want := map[int32][]string{0: {"4", "5"}, 1: {"z"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tail 2: %v, want %v", got, want)
	}
	clear(got)
	if err := Read(within(t, 10*time.Second), c.kafka, "t", Options{Partitions: []int32{1}}, values(got)); err != nil {
		t.Fatal(err)
	}
	if want := map[int32][]string{1: {"x", "y", "z"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("partition 1: %v, want %v", got, want)
	}
	err := Read(within(t, 10*time.Second), c.kafka, "t", Options{Partitions: []int32{7}}, values(got))
	if err == nil {
		t.Fatal("partition 7 of a 2-partition topic: want an error")
	}
	if err := Read(within(t, 10*time.Second), c.kafka, "nope", Options{}, values(got)); !errors.Is(err, ErrNoTopic) {
		t.Fatalf("a missing topic: %v, want ErrNoTopic", err)
	}
}

// An error from the callback ends the read and comes back as is.
func TestReadStopsOnTheCallbacksError(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 1)
	c.plain("t", 0, "1", "2", "3")
	stop := errors.New("enough")
	n := 0
	err := Read(within(t, 10*time.Second), c.kafka, "t", Options{}, func(*kgo.Record) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d records, want the callback's error after 1", err, n)
	}
}

// ReadRanges reads several topics' offset ranges in one pass.
func TestReadRanges(t *testing.T) {
	c := newCluster(t)
	c.topic("a", 1)
	c.topic("b", 2)
	c.plain("a", 0, "a0", "a1", "a2")
	c.txn("tb", "b", 1, &commit, "b0", "b1") // a marker at 2
	var got []string
	err := ReadRanges(within(t, 10*time.Second), c.kafka, map[string]map[int32]Range{
		"a": {0: {From: 1, To: 3}},
		"b": {0: {From: 0, To: 0}, 1: {From: 1, To: 3}},
	}, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if fmt.Sprint(got) != "[a1 a2 b1]" {
		t.Fatalf("read %v, want [a1 a2 b1]", got)
	}
}

// A Reader catches up to the ends it found, then follows what comes after;
// FromEnd follows only what comes after.
func TestReaderCatchesUpThenFollows(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 2)
	c.txn("a", "t", 0, &commit, "old0")
	ctx := within(t, 20*time.Second)
	r, err := Open(ctx, c.kafka, "t", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tail, err := Open(ctx, c.kafka, "t", Options{FromEnd: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	if r.CaughtUp() || !tail.CaughtUp() {
		t.Fatalf("caught up: whole %v, from the end %v; want false, true", r.CaughtUp(), tail.CaughtUp())
	}
	got := map[int32][]string{}
	if err := r.CatchUp(ctx, values(got)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[0:[old0]]" {
		t.Fatalf("catch-up read %v", got)
	}
	c.plain("t", 1, "new1")
	c.txn("a", "t", 0, &commit, "new0")
	for _, rd := range []*Reader{r, tail} {
		clear(got)
		fctx, cancel := context.WithCancel(ctx)
		err := rd.Follow(fctx, func(rec *kgo.Record) error {
			got[rec.Partition] = append(got[rec.Partition], string(rec.Value))
			if len(got[0])+len(got[1]) == 2 {
				cancel()
			}
			return nil
		})
		cancel()
		if err != nil || fmt.Sprint(got) != "map[0:[new0] 1:[new1]]" {
			t.Fatalf("follow: %v, read %v", err, got)
		}
	}
}

// A partition whose end is never reached (a compacted topic that lost its
// newest offset) ends the catch-up after Idle without a record.
func TestIdleGivesUpOnAnEndThatNeverComes(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 1)
	c.plain("t", 0, "1")
	ctx := within(t, 10*time.Second)
	r, err := Open(ctx, c.kafka, "t", Options{Idle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.pending[0].end += 5 // as if the offsets after the record were compacted away
	t0 := time.Now()
	got := map[int32][]string{}
	if err := r.CatchUp(ctx, values(got)); err != nil {
		t.Fatal(err)
	}
	if !r.CaughtUp() || fmt.Sprint(got[0]) != "[1]" || time.Since(t0) > 5*time.Second {
		t.Fatalf("caught up %v after %s with %v", r.CaughtUp(), time.Since(t0), got)
	}
}

// Stable is where a read_committed reader stops: before an open
// transaction, and past its commit marker once it commits; a partition the
// topic lacks is an error that names it.
func TestStable(t *testing.T) {
	c := newCluster(t)
	c.topic("t", 1)
	c.plain("t", 0, "before")
	tx := c.txn("open", "t", 0, nil, "pending")
	ctx := within(t, 10*time.Second)
	if got, err := Stable(ctx, c.kafka, "t", 0); err != nil || got != 1 {
		t.Fatalf("Stable with a transaction open = %d, %v; want 1", got, err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got, err := Stable(ctx, c.kafka, "t", 0); err != nil || got != 3 {
		t.Fatalf("Stable after the commit = %d, %v; want 3 (the record, the pending one, the marker)", got, err)
	}
	if _, err := Stable(ctx, c.kafka, "t", 5); err == nil || err.Error() != "topic t has no partition 5" {
		t.Fatalf("Stable of partition 5 = %v, want it named", err)
	}
}
