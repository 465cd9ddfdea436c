package streamer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
)

// dropRig is a streamer with the filter "phone" in force and a product
// record as franz-go hands it over, for driving the per-record path (the
// fetch-time check, then the loop's walk) without Kafka. Only dropped and
// dead-lettered records are handled: they need no session.
type dropRig struct {
	s     *Streamer
	value []byte
	now   time.Time // the batch's time, as batch reads it once
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
	return &dropRig{s: s, value: v, now: time.Now()}
}

// record is a fresh copy of the product record, as a fetch makes one.
func (r *dropRig) record() *kgo.Record {
	return &kgo.Record{Topic: r.s.cfg.Topics.Products, Key: []byte("m/p"), Value: r.value}
}

// walk runs the consume loop over rs as a batch does, with w carried from
// one call to the next as from one partition to the next.
func (r *dropRig) walk(w *walker, rs []*kgo.Record) error {
	return r.s.walk(context.Background(), nil, w, rs, r.now)
}

// A dropped record costs no allocation, on the fetch goroutine (the check)
// or in the consume loop (the walk), checked beforehand or not; nor does a
// produce promise that reports success.
func TestDropPathAllocatesNothing(t *testing.T) {
	rig := newDropRig(t, "Laptop Pro 14 inch")
	checked, unchecked := rig.record(), rig.record()
	var w walker
	for _, c := range []struct {
		label string
		f     func()
	}{
		{"fetch-time check", func() { checked.Context = nil; precheck{rig.s}.OnFetchRecordBuffered(checked) }},
		{"walk, checked", func() { _ = rig.walk(&w, []*kgo.Record{checked}) }},
		{"walk, unchecked", func() { _ = rig.walk(&w, []*kgo.Record{unchecked}) }},
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

// The fetch-time check marks a value the filter passes only when it is one
// whole product, and a value it drops when it is whole up to its name: what
// it leaves unmarked, the loop finds and sends to the dead-letter topic.
func TestFetchTimeCheckMarks(t *testing.T) {
	phone := newDropRig(t, "Galaxy Phone 15").value
	laptop := newDropRig(t, "Laptop Pro 14 inch").value
	nameEnd := func(v []byte) int {
		_, end, err := nameBounds(v[5:])
		if err != nil {
			t.Fatal(err)
		}
		return 5 + end
	}
	rig := newDropRig(t, "Laptop Pro 14 inch")
	for i, c := range []struct {
		value []byte
		mark  bool
		pass  bool
	}{
		{phone, true, true},
		{phone[:len(phone)-1], false, false},
		{append(bytes.Clone(phone), 0), false, false},
		{laptop, true, false},
		// Dropped: read up to the name, the rest is the sink's and the
		// collector's to find.
		{laptop[:len(laptop)-1], true, false},
		{append(bytes.Clone(laptop), 0), true, false},
		{laptop[:nameEnd(laptop)], true, false},
		{laptop[:nameEnd(laptop)-1], false, false},                         // cut inside the name
		{append([]byte{0, 0, 0, 0x7f, 0x7f}, laptop[5:]...), false, false}, // an id not looked up
		{[]byte("{}"), false, false},
	} {
		r := rig.record()
		r.Value = c.value
		precheck{rig.s}.OnFetchRecordBuffered(r)
		m, ok := r.Context.(*checkedMark)
		if ok != c.mark || ok && m.pass != c.pass {
			t.Errorf("#%d: marked %v (%+v), want marked %v passing %v", i, ok, m, c.mark, c.pass)
		}
	}
}

// A record checked and matched when it was fetched is matched again when
// the filter changed before the loop handled it: a new filter applies to
// every record handled after it.
func TestFilterChangedAfterTheFetchTimeCheckApplies(t *testing.T) {
	rig := newDropRig(t, "Galaxy Phone 15")
	r := rig.record()
	precheck{rig.s}.OnFetchRecordBuffered(r)
	if m, ok := r.Context.(*checkedMark); !ok || !m.pass {
		t.Fatalf("the fetch-time check did not find the phone passing the filter phone: %v", r.Context)
	}
	laptops := NewFilter(records.FilterState{Version: 2, Substring: "laptop"}, false)
	rig.s.control.Load().current.Store(laptops)
	var w walker
	if err := rig.walk(&w, []*kgo.Record{r}); err != nil {
		t.Fatal(err)
	}
	last := rig.s.tallies[len(rig.s.tallies)-1]
	if last.version != "2" || last.dropped != 1 || last.passed != 0 {
		t.Errorf("tally %+v, want the record dropped under version 2", last)
	}
}

// fetchOf is a poll of n records in three partitions, one in ten a phone
// and the rest laptops, none checked yet.
func (r *dropRig) fetchOf(t *testing.T, n int) kgo.Fetches {
	phone := newDropRig(t, "Galaxy Phone 15").value
	parts := make([]kgo.FetchPartition, 3)
	for i := range n {
		p := &parts[i%3]
		rec := r.record()
		if i%10 == 0 {
			rec.Value = phone
		}
		p.Partition = int32(i % 3)
		rec.Partition, rec.Offset = p.Partition, int64(len(p.Records))
		p.Records = append(p.Records, rec)
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: r.s.cfg.Topics.Products, Partitions: parts}}}}
}

// checkedAsFiltered fails unless every record of fs is marked as the
// filter "phone" decides, and returns the dropped ones.
func checkedAsFiltered(t *testing.T, fs kgo.Fetches) []*kgo.Record {
	t.Helper()
	var dropped []*kgo.Record
	fs.EachRecord(func(r *kgo.Record) {
		m, ok := r.Context.(*checkedMark)
		if wantPass := bytes.Contains(r.Value, []byte("Phone")); !ok || m.pass != wantPass {
			t.Fatalf("partition %d offset %d: marked %v (%+v), want passing %v", r.Partition, r.Offset, ok, m, wantPass)
		}
		if !m.pass {
			dropped = append(dropped, r)
		}
	})
	return dropped
}

// Fetches check their records only when the loop is the slower side;
// otherwise the loop checks them as it walks them. Checked, every record is
// marked as the filter decides, and the loop counts the dropped ones
// without checking them again.
func TestFetchTimeCheckOnlyWhenTheLoopIsBehind(t *testing.T) {
	rig := newDropRig(t, "Laptop Pro 14 inch")
	rig.s.precheckOn.Store(false)
	fs := rig.fetchOf(t, 3000)
	fs.EachRecord(precheck{rig.s}.OnFetchRecordBuffered)
	fs.EachRecord(func(r *kgo.Record) {
		if r.Context != nil {
			t.Fatalf("partition %d offset %d checked while the loop waited for the fetch", r.Partition, r.Offset)
		}
	})
	rig.s.precheckOn.Store(true)
	fs.EachRecord(precheck{rig.s}.OnFetchRecordBuffered)
	dropped := checkedAsFiltered(t, fs)
	var w walker
	if err := rig.walk(&w, dropped); err != nil {
		t.Fatal(err)
	}
	if got := rig.s.tallies[len(rig.s.tallies)-1]; got.in != len(dropped) || got.dropped != len(dropped) || len(dropped) != 2700 {
		t.Errorf("tally %+v, want 2700 records in, all dropped", got)
	}
}

// BenchmarkDropPath is a dropped record's whole cost besides Kafka: the
// check on the fetch goroutine, then the loop's walk.
func BenchmarkDropPath(b *testing.B) {
	rig := newDropRig(b, "Laptop Pro 14 inch")
	r := rig.record()
	rs := []*kgo.Record{r}
	var w walker
	b.ReportAllocs()
	for b.Loop() {
		r.Context = nil
		precheck{rig.s}.OnFetchRecordBuffered(r)
		if err := rig.walk(&w, rs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFetchPath is what the streamer adds to each record of a fetch
// beyond what franz-go does to buffer it, measured in one process, without
// a broker: 6 partitions of about 1 MiB each of snappy-compressed products as
// the emulator makes them (about 930 bytes, one in ten named so that
// "phone" passes), decompressed and parsed by franz-go's own
// ProcessFetchPartition, then, as a fetch goroutine and the consume loop
// do, the fetch-time check of every record and the loop's walk over every
// record the filter drops ("streamer"), or only the loop over the records
// ("ceiling"). A record that passes is forwarded by both, which is not
// measured here. Reported per record: ceiling-ns/record,
// streamer-ns/record, and their difference as extra-ns/record; the
// difference between each side's fastest run as best-extra-ns/record, the
// figure a loaded machine disturbs least. The records are cold when
// checked, as in a fetch of several partitions: that, more than the
// reading itself, is a dropped record's cost.
func BenchmarkFetchPath(b *testing.B) {
	rig := newDropRig(b, "Laptop Pro 14 inch")
	values := benchValues(b, rig.s.cfg.Serde, rig.s.cfg.Topics.Products, 10)
	comp, err := kgo.DefaultCompressor(kgo.SnappyCompression())
	if err != nil {
		b.Fatal(err)
	}
	var parts []*kmsg.FetchResponseTopicPartition
	n := 0
	for p := range int32(6) {
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition = p
		var offset int64
		for len(rp.RecordBatches) < 1<<20 {
			rp.RecordBatches = appendRecordBatch(rp.RecordBatches, comp, offset, values, n, 256)
			offset += 256
			n += 256
		}
		rp.HighWatermark, rp.LastStableOffset = offset, offset
		parts = append(parts, &rp)
	}
	dec := kgo.DefaultDecompressor()
	// run processes the fetch as one side and returns how long it took.
	run := func(streamer bool) time.Duration {
		start := time.Now()
		fetched := make([]kgo.FetchPartition, 0, len(parts))
		for _, rp := range parts {
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: rig.s.cfg.Topics.Products, Partition: rp.Partition,
				IsolationLevel: kgo.ReadCommitted()}, rp, dec, nil)
			if fp.Err != nil || len(fp.Records) == 0 {
				b.Fatalf("partition %d: %d records, %v", rp.Partition, len(fp.Records), fp.Err)
			}
			fetched = append(fetched, fp)
		}
		if streamer { // as franz-go's fetch goroutine calls the hook
			for _, fp := range fetched {
				for _, r := range fp.Records {
					precheck{rig.s}.OnFetchRecordBuffered(r)
				}
			}
		}
		passed := 0
		var w walker
		for _, fp := range fetched {
			for i, r := range fp.Records {
				switch {
				case !streamer:
					if i%10 == 0 { // a tenth, as the streamer passes
						passed++
					}
				case r.Context.(*checkedMark).pass:
					passed++
				default:
					_ = rig.walk(&w, fp.Records[i:i+1])
				}
			}
		}
		if streamer && passed != n/10 {
			b.Fatalf("%d of %d records passed, want a tenth", passed, n)
		}
		return time.Since(start)
	}
	// The sides take turns, so that a change in the machine's load weighs
	// on both alike.
	var sides [2]time.Duration
	mins := [2]time.Duration{time.Hour, time.Hour}
	for i := 0; b.Loop(); i++ {
		first := i%2 == 0
		d1 := run(first)
		d2 := run(!first)
		sides[b2i(first)] += d1
		sides[b2i(!first)] += d2
		mins[b2i(first)] = min(mins[b2i(first)], d1)
		mins[b2i(!first)] = min(mins[b2i(!first)], d2)
	}
	b.ReportMetric(float64((mins[1]-mins[0]).Nanoseconds())/float64(n), "best-extra-ns/record")
	records := float64(b.N * n)
	b.ReportMetric(float64(sides[0].Nanoseconds())/records, "ceiling-ns/record")
	b.ReportMetric(float64(sides[1].Nanoseconds())/records, "streamer-ns/record")
	b.ReportMetric(float64((sides[1]-sides[0]).Nanoseconds())/records, "extra-ns/record")
}

// appendRecordBatch appends a compressed record batch of count records
// (keys m/p-<offset>, values from vals from index from on, cycling) at base
// to dst, as a producer writes it.
func appendRecordBatch(dst []byte, comp kgo.Compressor, base int64, vals [][]byte, from, count int) []byte {
	var raw []byte
	for i := range count {
		v := vals[(from+i)%len(vals)]
		var rec []byte
		rec = kbin.AppendInt8(rec, 0)
		rec = kbin.AppendVarlong(rec, 0)
		rec = kbin.AppendVarint(rec, int32(i))
		rec = kbin.AppendVarintBytes(rec, fmt.Appendf(nil, "m/p-%d", base+int64(i)))
		rec = kbin.AppendVarintBytes(rec, v)
		rec = kbin.AppendVarint(rec, 0)
		raw = kbin.AppendVarint(raw, int32(len(rec)))
		raw = append(raw, rec...)
	}
	compressed, codec := comp.Compress(new(bytes.Buffer), raw)
	start := len(dst)
	dst = kbin.AppendInt64(dst, base)
	dst = kbin.AppendInt32(dst, 0)  // the length, set below
	dst = kbin.AppendInt32(dst, 0)  // partition leader epoch
	dst = kbin.AppendInt8(dst, 2)   // magic
	dst = kbin.AppendUint32(dst, 0) // the CRC, set below
	crcFrom := len(dst)
	dst = kbin.AppendInt16(dst, int16(codec))
	dst = kbin.AppendInt32(dst, int32(count-1))
	dst = kbin.AppendInt64(dst, 1748736000000)
	dst = kbin.AppendInt64(dst, 1748736000000)
	dst = kbin.AppendInt64(dst, -1) // producer id
	dst = kbin.AppendInt16(dst, -1)
	dst = kbin.AppendInt32(dst, -1)
	dst = kbin.AppendInt32(dst, int32(count))
	dst = append(dst, compressed...)
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[crcFrom-4:], crc32.Checksum(dst[crcFrom:], crc32.MakeTable(crc32.Castagnoli)))
	return dst
}
