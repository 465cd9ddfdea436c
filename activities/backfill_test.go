package activities

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/testsuite"

	"github.com/shopstream/shopstream/internal/backfill"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// backfillFixture is kfake with the pipeline's topics, a filter history and
// a streamer group that (as if a streamer had run) committed everything.
type backfillFixture struct {
	kc     *kafkatest.Cluster
	cl     *kgo.Client
	shop   *kgo.Client // publishes products in transactions, as the emulation does
	topics records.Topics
	acts   *Backfill
	reg    *prometheus.Registry
}

func newBackfillFixture(t *testing.T) *backfillFixture {
	t.Helper()
	kc := kafkatest.Start(t)
	topics := records.DefaultTopics()
	kc.CreateTopic(3, nil, topics.Products)
	compact := "compact"
	kc.CreateTopic(3, map[string]*string{"cleanup.policy": &compact}, topics.Filtered)
	kc.CreateTopic(1, map[string]*string{"cleanup.policy": &compact}, topics.Filter)
	kc.CreateTopic(1, map[string]*string{"cleanup.policy": &compact}, topics.FilterApplied)
	kc.CreateTopic(3, nil, topics.DLQ)
	f := &backfillFixture{kc: kc, cl: kc.Client(), shop: kc.Client(kgo.TransactionalID("test-shop")), topics: topics, reg: prometheus.NewRegistry()}
	var err error
	f.acts, err = NewBackfill(BackfillOptions{Kafka: kc.Kafka, Admin: kc.Admin(), Serde: kc.Serde, Topics: topics, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.acts.closeProducers)
	return f
}

func (f *backfillFixture) setFilter(t *testing.T, version int64, substring string) {
	t.Helper()
	ctx := context.Background()
	v, err := f.kc.Serde.Encode(ctx, nil, f.topics.Filter, &records.FilterState{Version: version, Substring: substring, SetAt: time.Now(), SetBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cl.ProduceSync(ctx, &kgo.Record{Topic: f.topics.Filter, Key: []byte(streamer.ControlKey), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// product publishes one product and returns its record.
func (f *backfillFixture) product(t *testing.T, id, name string) *kgo.Record {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := records.Product{ProductID: id, MallID: "m1", Name: name, Price: records.Price{Amount: "9.99", Currency: "EUR"}, CreatedAt: now, UpdatedAt: now}
	v, err := f.kc.Serde.Encode(ctx, nil, f.topics.Products, &p)
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: f.topics.Products, Key: []byte(p.Key()), Value: v, Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte(id)}}}
	// Each product in a transaction of its own, so each partition ends with
	// a commit marker, as the emulation's do.
	if err := f.shop.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := f.shop.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := f.shop.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	return r
}

// streamerCaughtUp commits the streamer group's offsets after the product
// topic's last records, as a streamer that processed everything would
// have: one short of the end, where the last commit marker is.
func (f *backfillFixture) streamerCaughtUp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var offs kadm.Offsets
	if err := topicread.Read(ctx, f.kc.Kafka, f.topics.Products, topicread.Options{}, func(r *kgo.Record) error {
		offs.AddOffset(r.Topic, r.Partition, r.Offset+1, -1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.kc.Admin().CommitOffsets(ctx, streamer.DefaultGroup, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// startStreamer runs a streamer instance until the test ends.
func (f *backfillFixture) startStreamer(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := streamer.New(streamer.Options{
		Deps:       component.Deps{Kafka: f.kc.Kafka, Serde: f.kc.NewSerde(), Topics: f.topics, Registerer: prometheus.NewRegistry()},
		InstanceID: "s-1", HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("streamer: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("streamer stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("streamer not ready after 30s")
	}
}

// waitStreamer waits until the streamer's group committed past every
// product, and its applied report says version.
func (f *backfillFixture) waitStreamer(t *testing.T, version int64) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, fmt.Sprintf("the streamer applies v%d and processes every product", version), func() bool {
		reps, err := health.ReadApplied(ctx, f.kc.Kafka, f.topics.FilterApplied)
		if err != nil || len(reps) != 1 || reps[0].Version != version {
			return false
		}
		last := map[int32]int64{}
		if err := topicread.Read(ctx, f.kc.Kafka, f.topics.Products, topicread.Options{}, func(r *kgo.Record) error {
			last[r.Partition] = r.Offset + 1
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		offs, err := f.kc.Admin().FetchOffsets(ctx, streamer.DefaultGroup)
		if err != nil {
			return false
		}
		for p, end := range last {
			if o, ok := offs.Lookup(f.topics.Products, p); !ok || o.At < end {
				return false
			}
		}
		return true
	})
}

func (f *backfillFixture) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(f.acts)
	return env
}

func (f *backfillFixture) plan(t *testing.T) workflows.BackfillPlan {
	t.Helper()
	val, err := f.env().ExecuteActivity(workflows.ActivityBackfillPrepare, workflows.BackfillPrepareInput{})
	if err != nil {
		t.Fatal(err)
	}
	var plan workflows.BackfillPlan
	if err := val.Get(&plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

// backfillAll runs every range of the plan (one range per partition).
func (f *backfillFixture) backfillAll(t *testing.T, plan workflows.BackfillPlan) (workflows.BackfillCounts, []workflows.BackfillRangeResult, error) {
	t.Helper()
	var total workflows.BackfillCounts
	var results []workflows.BackfillRangeResult
	for _, p := range plan.Partitions {
		if p.End <= p.Start {
			continue
		}
		res, err := f.runRange(p, plan.Filter)
		if err != nil {
			return total, results, err
		}
		total.Add(res.Counts)
		results = append(results, res)
	}
	return total, results, nil
}

func (f *backfillFixture) runRange(p workflows.BackfillPartition, filter workflows.FilterState) (workflows.BackfillRangeResult, error) {
	in := workflows.BackfillRangeInput{WorkflowID: "bf-test", BackfillID: "req-1", Partition: p.Partition, Start: p.Start, End: p.End, Filter: filter}
	val, err := f.env().ExecuteActivity(workflows.ActivityBackfillRange, in)
	var res workflows.BackfillRangeResult
	if err == nil {
		err = val.Get(&res)
	}
	return res, err
}

// filtered reads the filtered topic as a read_committed consumer.
func (f *backfillFixture) filtered(t *testing.T) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	if err := topicread.Read(context.Background(), f.kc.Kafka, f.topics.Filtered, topicread.Options{}, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// partitionOf is the product topic partition that holds r's key.
func (f *backfillFixture) partitionOf(t *testing.T, r *kgo.Record) int32 {
	t.Helper()
	p := int32(-1)
	if err := topicread.Read(context.Background(), f.kc.Kafka, f.topics.Products, topicread.Options{}, func(rec *kgo.Record) error {
		if string(rec.Key) == string(r.Key) {
			p = rec.Partition
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Products published under filter "laptop" appear, after `filter set phone`
// and a backfill, in the filtered topic: every phone once, with the new
// version and the backfill header; a range whose first attempt committed
// but died before it reported writes nothing on its retry.
func TestBackfillWritesEachMissingProductOnce(t *testing.T) {
	f := newBackfillFixture(t)
	f.setFilter(t, 1, "laptop")
	f.startStreamer(t)
	phones := map[string]bool{}
	for i := range 30 {
		name := []string{"Galaxy Phone", "Laptop Pro", "TV 55"}[i%3]
		r := f.product(t, fmt.Sprintf("p%02d", i), name)
		if name == "Galaxy Phone" {
			phones[string(r.Key)] = true
		}
	}
	f.waitStreamer(t, 1)
	f.setFilter(t, 2, "phone")

	plan := f.plan(t)
	if plan.Filter.Version != 2 || plan.Filter.Substring != "phone" || len(plan.Partitions) != 3 {
		t.Fatalf("plan %+v, want filter v2 \"phone\" over 3 partitions", plan)
	}
	total, results, err := f.backfillAll(t, plan)
	if err != nil {
		t.Fatal(err)
	}
	// The same range again, as when its first attempt committed but its
	// worker died before reporting: the marker answers, nothing is written.
	retry, err := f.runRange(plan.Partitions[0], plan.Filter)
	if err != nil || !retry.AlreadyCommitted || retry.Counts != results[0].Counts {
		t.Fatalf("retried range: %+v, %v; want the first commit's counts %+v", retry, err, results[0].Counts)
	}
	if total.Read != 30 || total.Forwarded != 10 || total.Dropped != 20 || total.Present != 0 {
		t.Fatalf("counts %+v, want 30 read, 10 forwarded, 20 dropped", total)
	}

	got := map[string]int{}
	for _, r := range f.filtered(t) {
		got[string(r.Key)]++
		if phones[string(r.Key)] {
			if header(r, streamer.HeaderFilterVersion) != "2" || header(r, backfill.Header) != "req-1" || header(r, "trace") == "" {
				t.Errorf("%s: headers %v, want the original ones, version 2 and the backfill's", r.Key, r.Headers)
			}
		}
	}
	for k := range phones {
		if got[k] != 1 {
			t.Errorf("phone %s is in the filtered topic %d times, want once", k, got[k])
		}
	}
	if len(got) != 20 {
		t.Errorf("filtered topic holds %d products, want the 10 laptops and the 10 phones", len(got))
	}
	if n := testutil.ToFloat64(f.acts.written); n != 10 {
		t.Errorf("shopstream_filter_backfill_records_total = %v, want 10", n)
	}
}

// After a filter that let everything through, the filtered topic already
// holds every phone: a backfill for "phone" writes nothing.
func TestBackfillSkipsProductsAlreadyForwarded(t *testing.T) {
	f := newBackfillFixture(t)
	f.startStreamer(t)
	for i := range 12 {
		f.product(t, fmt.Sprintf("p%02d", i), []string{"Galaxy Phone", "Laptop Pro"}[i%2])
	}
	f.waitStreamer(t, 0)
	f.setFilter(t, 1, "phone")
	total, _, err := f.backfillAll(t, f.plan(t))
	if err != nil {
		t.Fatal(err)
	}
	if total.Forwarded != 0 || total.Present != 6 || total.Dropped != 6 {
		t.Fatalf("counts %+v, want 6 present, 6 dropped, none forwarded", total)
	}
	if n := len(f.filtered(t)); n != 12 {
		t.Fatalf("filtered topic holds %d records, want the 12 it had", n)
	}
}

// A phone updated while its range is written (the newer record committed
// to the product topic and forwarded by the streamer before the range
// commits) keeps its newer value: the range is written again without it.
// Of an older update inside the range, only the newest record counts.
func TestBackfillNeverWritesOverANewerState(t *testing.T) {
	f := newBackfillFixture(t)
	f.setFilter(t, 1, "laptop")
	f.startStreamer(t)
	old := f.product(t, "p1", "Galaxy Phone")
	f.product(t, "p2", "Pixel Phone")
	f.product(t, "p2", "Pixel Phone 2") // p2 updated before the backfill: only this one counts
	f.waitStreamer(t, 1)
	f.setFilter(t, 2, "phone")
	plan := f.plan(t)

	// p1 is updated while its range is written: the live streamer, already
	// on v2, forwards the newer record before the range commits.
	updated := false
	f.acts.beforeCommit = func(in workflows.BackfillRangeInput) error {
		if updated || in.Partition != f.partitionOf(t, old) {
			return nil
		}
		updated = true
		f.product(t, "p1", "Galaxy Phone (2026)")
		// Committed, though not visible before the range ends: the range's
		// open transaction holds the partition's last stable offset.
		f.waitStreamer(t, 2)
		return nil
	}
	total, _, err := f.backfillAll(t, plan)
	if err != nil {
		t.Fatal(err)
	}
	if !updated {
		t.Fatal("p1 was not updated during the backfill")
	}
	if total.Forwarded != 1 || total.Superseded != 2 {
		t.Fatalf("counts %+v, want 1 forwarded (p2's newest), 2 superseded (p2's first record, p1 updated meanwhile)", total)
	}
	last := map[string]*kgo.Record{}
	count := map[string]int{}
	for _, r := range f.filtered(t) {
		last[string(r.Key)] = r
		count[string(r.Key)]++
	}
	var p records.Product
	if err := f.kc.Serde.Decode(context.Background(), last[string(old.Key)].Value, &p); err != nil {
		t.Fatal(err)
	}
	if p.Name != "Galaxy Phone (2026)" || count[string(old.Key)] != 1 {
		t.Fatalf("p1 is %q (%d records) in the filtered topic, want only its newer value", p.Name, count[string(old.Key)])
	}
	if err := f.kc.Serde.Decode(context.Background(), last["m1/p2"].Value, &p); err != nil || p.Name != "Pixel Phone 2" || count["m1/p2"] != 1 {
		t.Fatalf("p2 is %q (%d records, %v), want its newest value once", p.Name, count["m1/p2"], err)
	}
}

// A filter changed while the backfill runs stops it: what it would write
// belongs to a filter no longer in force.
func TestBackfillStopsWhenTheFilterChanges(t *testing.T) {
	f := newBackfillFixture(t)
	f.product(t, "p1", "Galaxy Phone")
	f.streamerCaughtUp(t)
	f.setFilter(t, 1, "phone")
	plan := f.plan(t)
	f.setFilter(t, 2, "laptop")
	_, _, err := f.backfillAll(t, plan)
	if err == nil || !strings.Contains(err.Error(), "v2") {
		t.Fatalf("got %v, want an error that the filter is v2 now", err)
	}
	if n := len(f.filtered(t)); n != 0 {
		t.Fatalf("filtered topic holds %d records, want none", n)
	}
}

// The plan waits until every live streamer instance applies the version,
// and for the streamer's group to pass the end; a group without members
// ends the backfill at its committed offsets.
func TestBackfillPlanWaitsForTheStreamer(t *testing.T) {
	f := newBackfillFixture(t)
	f.setFilter(t, 3, "phone")
	for i := range 6 {
		f.product(t, fmt.Sprintf("p%d", i), "Galaxy Phone")
	}
	report := func(version int64) {
		rep := fmt.Sprintf(`{"instance":"i-1","version":%d,"heartbeat_at":%q,"heartbeat_every_ns":60000000000}`, version, time.Now().Format(time.RFC3339Nano))
		if err := f.cl.ProduceSync(context.Background(), &kgo.Record{Topic: f.topics.FilterApplied, Key: []byte("i-1"), Value: []byte(rep)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	report(2)
	bf, err := backfill.New(backfill.Options{Kafka: f.kc.Kafka, Serde: f.kc.Serde, Topics: f.topics, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var waits []string
	done := make(chan error, 1)
	var parts []backfill.Partition
	go func() {
		var err error
		parts, err = bf.Plan(context.Background(), 3, time.Time{}, time.Time{}, func(s string) {
			if len(waits) == 0 || waits[len(waits)-1] != s {
				waits = append(waits, s)
			}
		})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("plan ended (%v) while an instance applied v2", err)
	default:
	}
	report(3)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plan still waits after the instance applied v3")
	}
	if len(waits) == 0 || !strings.Contains(waits[0], "apply filter v3") {
		t.Errorf("waits %q, want one for the instance to apply v3", waits)
	}
	for _, p := range parts {
		if p.End != p.Start {
			t.Errorf("partition %d: %d to %d, want nothing: no streamer ever committed, the next one starts with v3", p.Partition, p.Start, p.End)
		}
	}
}
