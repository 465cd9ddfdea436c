package streamer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/text/cases"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/testtool"
)

type filterSpec struct {
	substring     string
	caseSensitive bool
}

func (f filterSpec) passes(name string) bool {
	if f.caseSensitive {
		return strings.Contains(name, f.substring)
	}
	fold := cases.Fold()
	return strings.Contains(fold.String(name), fold.String(f.substring))
}

func waitVersion(t testing.TB, s *Streamer, v int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Filter().Version != v {
		if time.Now().After(deadline) {
			t.Fatalf("instance %s applies v%d, not v%d, after 10s", s.InstanceID(), s.Filter().Version, v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFilterChangeMidStream(t *testing.T) {
	e := newTestEnv(t, 6)
	specs := map[int64]filterSpec{
		1: {"phone", false},
		2: {"TABLET", false},
		3: {"Phone", true},
		4: {"", false}, // cleared: everything passes
	}
	e.setFilter(1, specs[1].substring, specs[1].caseSensitive)
	r := e.start(e.config("a"))
	if v := r.s.Filter().Version; v != 1 {
		t.Fatalf("ready with filter v%d, want v1", v)
	}
	e.waitAssigned("a", 20*time.Second)

	// Products stream in while the filter changes under them. The loop does
	// not wait for the stream to be processed, only for each change to be
	// applied, so it knows the oldest version each product may see.
	minVersion := map[string]int64{}
	n := 0
	for v := int64(1); v <= 4; v++ {
		if v > 1 {
			e.setFilter(v, specs[v].substring, specs[v].caseSensitive)
			waitVersion(t, r.s, v)
		}
		for range 20 {
			for _, k := range e.produce(n, n+25) {
				minVersion[k] = v
			}
			n += 25
			time.Sleep(time.Millisecond)
		}
	}
	var tail []string
	for k, v := range minVersion {
		if v == 4 {
			tail = append(tail, k)
		}
	}
	e.waitProcessed(DefaultGroup, 60*time.Second)

	out := e.read(e.topics.Filtered)
	seen := map[string]bool{}
	lastVersion := map[int32]int64{}
	versions := map[int64]int{}
	for _, rec := range out {
		v, ok := FilterVersion(rec.Headers)
		spec, known := specs[v]
		if !ok || !known {
			t.Fatalf("output record %s carries filter version %v (%v)", rec.Key, v, ok)
		}
		name := e.decodeName(rec.Value)
		if !spec.passes(name) {
			t.Errorf("output %q passed under v%d %+v, which it does not satisfy", name, v, spec)
		}
		if v < minVersion[string(rec.Key)] {
			t.Errorf("output %s under v%d, but it was produced after v%d was applied", rec.Key, v, minVersion[string(rec.Key)])
		}
		if seen[string(rec.Key)] {
			t.Errorf("output %s twice", rec.Key)
		}
		seen[string(rec.Key)] = true
		if v < lastVersion[rec.Partition] {
			t.Errorf("partition %d: v%d after v%d", rec.Partition, v, lastVersion[rec.Partition])
		}
		lastVersion[rec.Partition] = v
		versions[v]++
	}
	if versions[1] == 0 || versions[4] == 0 {
		t.Errorf("output by version %v, want some under v1 and v4", versions)
	}
	t.Logf("output by filter version: %v", versions)
	for _, k := range tail {
		if !seen[k] {
			t.Errorf("product %s, produced after v4 (everything passes) was applied, is not in the output", k)
		}
	}
	in := testtool.MetricValue(t, r.reg, "shopstream_streamer_records_in_total")
	passed := testtool.MetricValue(t, r.reg, "shopstream_streamer_records_passed_total")
	dropped := testtool.MetricValue(t, r.reg, "shopstream_streamer_records_dropped_total")
	if in != float64(n) || passed != float64(len(out)) || passed+dropped != in {
		t.Errorf("metrics: in %v passed %v dropped %v; want in %d, passed %d, passed+dropped = in", in, passed, dropped, n, len(out))
	}
	if c := testutil.ToFloat64(r.s.m.commits); c < 1 {
		t.Errorf("%v transactions committed", c)
	}
}

func TestStartsWithTheNewestFilter(t *testing.T) {
	e := newTestEnv(t, 3)
	e.setFilter(1, "", false) // everything would pass
	e.setFilter(2, "laptop", false)
	e.setFilter(3, "phone", false)
	e.produce(0, 200) // before any instance runs
	r := e.start(e.config("late"))
	if f := r.s.Filter(); f.Version != 3 || f.Substring != "phone" {
		t.Fatalf("ready with %s, want v3 phone", f)
	}
	e.waitProcessed(DefaultGroup, 30*time.Second)
	out := e.read(e.topics.Filtered)
	expectSameKeys(t, out, phoneKeys(0, 200))
	for _, rec := range out {
		if v, _ := FilterVersion(rec.Headers); v != 3 {
			t.Fatalf("output %s under v%d, want v3", rec.Key, v)
		}
	}
}

func TestNoFilterEverSetPassesEverything(t *testing.T) {
	e := newTestEnv(t, 2)
	keys := e.produce(0, 50)
	r := e.start(e.config("fresh"))
	if f := r.s.Filter(); f.Version != 0 || f.Substring != "" {
		t.Fatalf("ready with %s, want v0", f)
	}
	e.waitProcessed(DefaultGroup, 30*time.Second)
	expectSameKeys(t, e.read(e.topics.Filtered), keys)
}

func TestRefusesToStartOnAnUndecodableNewestFilter(t *testing.T) {
	e := newTestEnv(t, 1)
	e.setFilter(1, "phone", false)
	ctx := context.Background()
	if err := e.cl.ProduceSync(ctx, &kgo.Record{Topic: e.topics.Filter, Key: []byte(ControlKey), Value: []byte(`{"substring":"x"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s, err := New(e.config("strict"))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = s.Run(rctx)
	if err == nil || !strings.Contains(err.Error(), "newest filter state") || !errors.Is(err, records.ErrNotFramed) {
		t.Fatalf("Run = %v, want a refusal naming the undecodable newest state", err)
	}
}

func TestInstancesShareTwelvePartitionsExactlyOnce(t *testing.T) {
	e := newTestEnv(t, 12)
	e.setFilter(1, "phone", false)
	var rs []*running
	for _, id := range []string{"one", "two", "three"} {
		rs = append(rs, e.start(e.config(id)))
	}
	// All three report themselves live, with the filter they applied.
	deadline := time.Now().Add(10 * time.Second)
	for {
		reps, err := health.ReadApplied(context.Background(), e.kafka, e.topics.FilterApplied)
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, rep := range reps {
			if rep.Live(time.Now()) && rep.Version == 1 && rep.Substring == "phone" {
				live++
			}
		}
		if live == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied reports: %+v", reps)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var want []string
	for i := 0; i < 6000; i += 500 {
		e.produce(i, i+500)
	}
	want = phoneKeys(0, 6000)
	e.waitProcessed(DefaultGroup, 90*time.Second)
	expectSameKeys(t, e.read(e.topics.Filtered), want)

	var total float64
	for _, r := range rs {
		in := testtool.MetricValue(t, r.reg, "shopstream_streamer_records_in_total")
		if in == 0 {
			t.Errorf("instance %s processed nothing: the group did not spread the partitions", r.s.InstanceID())
		}
		total += in
	}
	if total != 6000 {
		t.Errorf("instances counted %v records in, want 6000", total)
	}
	mfs, err := rs[0].reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]bool{}
	for _, mf := range mfs {
		families[mf.GetName()] = true
	}
	for _, want := range []string{"shopstream_streamer_kafka_produce_bytes_total", "shopstream_streamer_kafka_fetch_bytes_total",
		"shopstream_streamer_product_freshness_seconds", "shopstream_streamer_transactions_committed_total"} {
		if !families[want] {
			t.Errorf("metrics lack %s", want)
		}
	}

	for _, r := range rs {
		if d := r.shutdown(t); d > 10*time.Second {
			t.Errorf("instance %s stopped in %s", r.s.InstanceID(), d)
		}
	}
	groups, err := e.admin.DescribeGroups(context.Background(), DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	if m := groups[DefaultGroup].Members; len(m) != 0 {
		t.Errorf("%d members still in the group after every instance stopped", len(m))
	}
	reps, err := health.ReadApplied(context.Background(), e.kafka, e.topics.FilterApplied)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 0 {
		t.Errorf("stopped instances still report: %+v", reps)
	}
}

// A record the filter would pass that is not one whole product goes to the
// dead-letter topic, and so does one whose framing, schema or fields up to
// the name are broken, whatever its name. A product the filter drops is
// read only up to its name: when it is malformed after the name, the
// streamer neither forwards nor dead-letters it, and the components that
// decode the product topic do (TestSinkDeadLettersWhatTheStreamerDrops).
func TestMalformedRecordsGoToTheDeadLetterTopic(t *testing.T) {
	e := newTestEnv(t, 3)
	e.setFilter(1, "phone", false)
	ctx := context.Background()
	good := testProduct(0) // "Galaxy Phone #0"
	goodV, err := e.serde.Encode(ctx, nil, e.topics.Products, &good)
	if err != nil {
		t.Fatal(err)
	}
	laptop := testProduct(2) // "Laptop 14 #2"
	laptopV, err := e.serde.Encode(ctx, nil, e.topics.Products, &laptop)
	if err != nil {
		t.Fatal(err)
	}
	laptopNameEnd := 5 + 1 + len(laptop.ProductID) + 1 + len(laptop.MallID) + 1 + len(laptop.Name)
	promptV, err := e.serde.Encode(ctx, nil, "prompts", &records.SearchPrompt{SearchID: "s", UserID: "u", Query: "phone", SearchedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// A registered schema that starts like a product but lacks fields our
	// Product needs: it does not resolve.
	thin, err := e.serde.Registry().CreateSchema(ctx, "thin-value", sr.Schema{Type: sr.TypeAvro, Schema: `{"type":"record","name":"Thin","fields":[
		{"name":"product_id","type":"string"},{"name":"mall_id","type":"string"},{"name":"name","type":"string"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	thinV := append([]byte{0, 0, 0, 0, byte(thin.ID)}, 2, 'p', 2, 'm', 10, 'p', 'h', 'o', 'n', 'e')
	_, body, _ := records.SplitHeader(goodV)
	nameEnd := 5 + 1 + len(good.ProductID) + 1 + len(good.MallID) + 1 + 4
	bad := []struct {
		key    string
		value  []byte
		reason string
	}{
		{"json", []byte(`{"product_id":"p","name":"phone"}`), "not-framed"},
		{"empty", []byte{}, "not-framed"},
		{"short", []byte{0, 0, 1}, "not-framed"},
		{"unknown-id", append([]byte{0, 0, 0, 0x7f, 0x7f}, body...), "unknown-schema-id"},
		{"prompt", promptV, "wrong-schema"},
		{"thin", thinV, "wrong-schema"},
		{"cut-in-name", goodV[:nameEnd], "malformed"},
		{"cut-at-end", goodV[:len(goodV)-1], "malformed"},
		{"trailing", append(bytes.Clone(goodV), 0, 0), "malformed"},
		{"laptop-cut-in-name", laptopV[:laptopNameEnd-1], "malformed"},
	}
	// Dropped by their name: not the streamer's to dead-letter.
	dropped := []struct {
		key   string
		value []byte
	}{
		{"laptop-cut-after-name", laptopV[:laptopNameEnd]},
		{"laptop-cut-at-end", laptopV[:len(laptopV)-1]},
		{"laptop-trailing", append(bytes.Clone(laptopV), 0, 0)},
	}
	var rs []*kgo.Record
	rs = append(rs, &kgo.Record{Topic: e.topics.Products, Key: []byte("good"), Value: goodV})
	for _, c := range bad {
		rs = append(rs, &kgo.Record{Topic: e.topics.Products, Key: []byte(c.key), Value: c.value,
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + c.key)}}})
	}
	for _, c := range dropped {
		rs = append(rs, &kgo.Record{Topic: e.topics.Products, Key: []byte(c.key), Value: c.value})
	}
	// A good product without a key: the compacted filtered topic cannot
	// take it.
	rs = append(rs, &kgo.Record{Topic: e.topics.Products, Value: goodV})
	rs = append(rs, &kgo.Record{Topic: e.topics.Products, Key: []byte("tombstone")})
	if err := e.cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	where := map[string]*kgo.Record{}
	for _, r := range rs {
		where[string(r.Key)] = r // ProduceSync filled in partition and offset
	}

	r := e.start(e.config("dlq"))
	e.waitProcessed(DefaultGroup, 30*time.Second)

	dead := e.read(e.topics.DLQ)
	if len(dead) != len(bad)+1 {
		t.Fatalf("%d records in the DLQ, want %d", len(dead), len(bad)+1)
	}
	byKey := map[string]deadletter.Letter{}
	for _, d := range dead {
		byKey[string(d.Key)] = deadletter.Parse(d)
	}
	if d := byKey[""]; d.Reason != "no-key" || !bytes.Equal(d.Value, goodV) {
		t.Errorf("the keyless product: reason %q, value kept %v", d.Reason, bytes.Equal(d.Value, goodV))
	}
	for i, c := range bad {
		d, ok := byKey[c.key]
		src := where[c.key]
		switch {
		case !ok:
			t.Errorf("#%d %s: not in the DLQ", i, c.key)
		case d.Reason != c.reason:
			t.Errorf("#%d %s: reason %q (%s), want %q", i, c.key, d.Reason, d.Error, c.reason)
		case !bytes.Equal(d.Value, c.value):
			t.Errorf("#%d %s: value changed", i, c.key)
		case d.SourceTopic != e.topics.Products || d.SourcePartition != src.Partition || d.SourceOffset != src.Offset:
			t.Errorf("#%d %s: from %s/%d@%d, want %s/%d@%d", i, c.key, d.SourceTopic, d.SourcePartition, d.SourceOffset, e.topics.Products, src.Partition, src.Offset)
		case len(d.Headers) != 1 || string(d.Headers[0].Value) != "t-"+c.key:
			t.Errorf("#%d %s: original headers %v", i, c.key, d.Headers)
		case d.Error == "" || d.Instance != "dlq" || time.Since(d.Time) > time.Minute:
			t.Errorf("#%d %s: error %q instance %q time %s", i, c.key, d.Error, d.Instance, d.Time)
		}
	}

	out := e.read(e.topics.Filtered)
	if len(out) != 2 || string(out[0].Key)+string(out[1].Key) != "goodtombstone" && string(out[0].Key)+string(out[1].Key) != "tombstonegood" {
		t.Fatalf("output %d records, want the good product and the tombstone", len(out))
	}
	for _, o := range out {
		if v, _ := FilterVersion(o.Headers); v != 1 {
			t.Errorf("%s: filter version %d", o.Key, v)
		}
		if string(o.Key) == "tombstone" && o.Value != nil {
			t.Errorf("the tombstone became a value %q", o.Value)
		}
	}
	if got := testtool.MetricValue(t, r.reg, "shopstream_streamer_dead_letters_total"); got != float64(len(bad)+1) {
		t.Errorf("dead-lettered counter %v, want %d", got, len(bad)+1)
	}
	if got := testutil.ToFloat64(r.s.m.deadLettered.WithLabelValues("1", "malformed")); got != 4 {
		t.Errorf("malformed counter %v, want 4", got)
	}
	if got := testutil.ToFloat64(r.s.m.dropped.WithLabelValues("1")); got != float64(len(dropped)) {
		t.Errorf("dropped counter %v, want %d", got, len(dropped))
	}

	// The instance goes on: a later product passes.
	later := e.produce(1, 2) // "IPHONE 15 Pro #1"
	e.waitProcessed(DefaultGroup, 30*time.Second)
	expectSameKeys(t, e.read(e.topics.Filtered), append([]string{"good", "tombstone"}, later...))

	listed, err := deadletter.Read(ctx, e.kafka, e.topics.DLQ, 4)
	if err != nil || len(listed) != 4 {
		t.Fatalf("deadletter.Read(limit 4) = %d records, %v", len(listed), err)
	}
}

func TestStopMidStreamAndResume(t *testing.T) {
	e := newTestEnv(t, 6)
	e.setFilter(1, "phone", false)
	first := e.start(e.config("first"))
	e.waitAssigned("first", 20*time.Second)
	stopped := make(chan time.Duration, 1)
	for i := 0; i < 6000; i += 200 {
		e.produce(i, i+200)
		if i == 2000 {
			// SIGTERM in the middle of the stream: the open transaction is
			// finished or aborted, the group left, within the bound.
			go func() { stopped <- first.shutdown(t) }()
		}
	}
	if d := <-stopped; d > 10*time.Second {
		t.Errorf("stopped in %s", d)
	}
	t.Logf("the first instance committed %v records before it stopped", testtool.MetricValue(t, first.reg, "shopstream_streamer_records_in_total"))
	e.start(e.config("second"))
	e.waitProcessed(DefaultGroup, 60*time.Second)
	expectSameKeys(t, e.read(e.topics.Filtered), phoneKeys(0, 6000))
}

// Fetch bounds default to ones that keep a fetch in the CPU's cache, and
// bounds that cannot work are refused before anything connects.
func TestFetchBounds(t *testing.T) {
	e := newTestEnv(t, 1)
	s, err := New(e.config("fetch-defaults"))
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.FetchMaxBytes != DefaultFetchMaxBytes || s.cfg.FetchMaxPartitionBytes != DefaultFetchMaxPartitionBytes {
		t.Errorf("fetch bounds %d and %d, want the defaults %d and %d",
			s.cfg.FetchMaxBytes, s.cfg.FetchMaxPartitionBytes, DefaultFetchMaxBytes, DefaultFetchMaxPartitionBytes)
	}
	for i, c := range []struct{ fetch, partition int32 }{
		{100, 0}, {MaxFetchBytes + 1, 0}, {1 << 20, 2 << 20}, {0, 10},
	} {
		cfg := e.config("fetch-bad")
		cfg.FetchMaxBytes, cfg.FetchMaxPartitionBytes = c.fetch, c.partition
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "fetch max bytes") {
			t.Errorf("#%d: fetch %d, partition %d: err %v, want one about the fetch bounds", i, c.fetch, c.partition, err)
		}
	}
}
