package streamer

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
)

// dropRig is a streamer with the filter "phone" in force and a product
// record as franz-go hands it over, for driving the per-record path (the
// fetch-time check, then handle) without Kafka. Only dropped and
// dead-lettered records are handled: they need no session.
type dropRig struct {
	s     *Streamer
	value []byte
}

func newDropRig(tb testing.TB, name string) *dropRig {
	tb.Helper()
	serde := kafkatest.NewSerde(tb)
	topics := records.DefaultTopics()
	// New connects nowhere: the address is never dialled.
	kafka, err := clients.NewKafka(clients.KafkaOptions{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Options{Deps: component.Deps{Kafka: kafka, Serde: serde, Topics: topics}, InstanceID: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	c := &control{}
	c.current.Store(NewFilter(records.FilterState{Version: 1, Substring: "phone"}, false))
	s.control.Store(c)
	s.precheckOn.Store(true) // as when the consume loop is the bottleneck
	g, err := shopgen.New(shopgen.Options{Seed: 1, Now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		tb.Fatal(err)
	}
	var p records.Product
	g.Fill(&p, 1)
	p.Name = name
	v, err := serde.Encode(context.Background(), nil, topics.Products, &p)
	if err != nil {
		tb.Fatal(err)
	}
	// The loop learns the schema id from the registry once; from then on
	// the fetch-time check knows its layout.
	id, _, _ := records.SplitHeader(v)
	if _, err := s.layouts.get(context.Background(), id); err != nil {
		tb.Fatal(err)
	}
	return &dropRig{s: s, value: v}
}

// record is a fresh copy of the product record, as a fetch makes one.
func (r *dropRig) record() *kgo.Record {
	return &kgo.Record{Topic: r.s.cfg.Topics.Products, Key: []byte("m/p"), Value: r.value}
}

// A dropped record costs no allocation, on the fetch goroutine (the check)
// or in the consume loop (name, match, tally), checked beforehand or not;
// nor does a produce promise that reports success.
func TestDropPathAllocatesNothing(t *testing.T) {
	rig := newDropRig(t, "Laptop Pro 14 inch")
	ctx, now := context.Background(), time.Now()
	checked, unchecked := rig.record(), rig.record()
	for _, c := range []struct {
		label string
		f     func()
	}{
		{"fetch-time check", func() { checked.Context = nil; precheck{rig.s}.OnFetchRecordBuffered(checked) }},
		{"handle, checked", func() { _ = rig.s.handle(ctx, nil, checked, now) }},
		{"handle, unchecked", func() { _ = rig.s.handle(ctx, nil, unchecked, now) }},
		{"produce promise", func() { rig.s.promise(nil, nil) }},
	} {
		if n := testing.AllocsPerRun(500, c.f); n != 0 {
			t.Errorf("%s: %v allocations per record", c.label, n)
		}
	}
	if _, ok := checked.Context.(*checkedMark); !ok {
		t.Fatal("the fetch-time check did not mark a whole product")
	}
	if got := rig.s.tallies[len(rig.s.tallies)-1].dropped; got < 1000 {
		t.Errorf("%d records tallied as dropped, want every handled one", got)
	}
}

// The fetch-time check marks only values that are one whole product; the
// loop finds everything else itself and sends it to the dead-letter topic.
func TestFetchTimeCheckMarksOnlyWholeProducts(t *testing.T) {
	rig := newDropRig(t, "Laptop Pro 14 inch")
	for i, c := range []struct {
		value []byte
		mark  bool
	}{
		{rig.value, true},
		{rig.value[:len(rig.value)-1], false},
		{append(append([]byte{}, rig.value...), 0), false},
		{append([]byte{0, 0, 0, 0x7f, 0x7f}, rig.value[5:]...), false}, // an id not looked up
		{[]byte("{}"), false},
	} {
		r := rig.record()
		r.Value = c.value
		precheck{rig.s}.OnFetchRecordBuffered(r)
		if _, ok := r.Context.(*checkedMark); ok != c.mark {
			t.Errorf("#%d: marked %v, want %v", i, ok, c.mark)
		}
	}
}

// A record checked and matched when it was fetched is matched again when
// the filter changed before the loop handled it: a new filter applies to
// every record handled after it.
func TestFilterChangedAfterTheFetchTimeCheckApplies(t *testing.T) {
	rig := newDropRig(t, "Galaxy Phone 15")
	ctx, now := context.Background(), time.Now()
	r := rig.record()
	precheck{rig.s}.OnFetchRecordBuffered(r)
	if m, ok := r.Context.(*checkedMark); !ok || !m.pass {
		t.Fatalf("the fetch-time check did not find the phone passing the filter phone: %v", r.Context)
	}
	laptops := NewFilter(records.FilterState{Version: 2, Substring: "laptop"}, false)
	rig.s.control.Load().current.Store(laptops)
	if err := rig.s.handle(ctx, nil, r, now); err != nil {
		t.Fatal(err)
	}
	last := rig.s.tallies[len(rig.s.tallies)-1]
	if last.version != "2" || last.dropped != 1 || last.passed != 0 {
		t.Errorf("tally %+v, want the record dropped under version 2", last)
	}
}

// BenchmarkDropPath is a dropped record's whole cost besides Kafka: the
// check on the fetch goroutine, then handle in the consume loop.
func BenchmarkDropPath(b *testing.B) {
	rig := newDropRig(b, "Laptop Pro 14 inch")
	ctx, now := context.Background(), time.Now()
	r := rig.record()
	b.ReportAllocs()
	for b.Loop() {
		r.Context = nil
		precheck{rig.s}.OnFetchRecordBuffered(r)
		if err := rig.s.handle(ctx, nil, r, now); err != nil {
			b.Fatal(err)
		}
	}
}
