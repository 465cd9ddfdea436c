// Package backfill re-applies the current filter to the product topic's
// history: it finds which products of a range the filtered topic misses
// and writes them there, each once, never over a newer state of the same
// product. The Backfill workflow's activities run it inside Kafka
// transactions with markers (package txnmarker); this package reads and
// decides, and calls no Temporal API.
//
// Why each product lands once, and never over a newer state:
//
//   - The backfill ends where the live streamer already applies the filter:
//     Plan waits until every live streamer instance applied the version, then
//     takes the product topic's last stable offsets (no record at or after
//     them can have been filtered by an older version), and waits until the
//     streamer's group has committed past them. So the streamer never again
//     touches a record before the end, and handles every record after it with
//     the new filter or a newer one.
//   - Within a range only each product's newest record counts, and a record
//     with a newer one anywhere after it in the partition is left to that
//     newer one (a later range, or the streamer): Select reads on to the last
//     stable offset, and Superseded reads again once the range's records are
//     in Kafka, before the commit.
//   - Kafka orders a partition by offset, not by commit time: a read_committed
//     reader and compaction see a record after every record with a smaller
//     offset. A streamer copy of a newer state with a smaller offset than ours
//     means the newer source record was committed before our records were
//     written, so Superseded, which reads after that, sees it and the range is
//     written again without the product. A newer copy written after ours has a
//     larger offset and wins.
//   - A product whose newest record the filtered topic already holds (byte for
//     byte: it passed an earlier filter too) is not written again.
package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// Options say where the backfill reads and writes.
type Options struct {
	Kafka *clients.Kafka
	Serde *records.Serde
	// Topics: Products is read, Filtered written; Filter holds the filter
	// state, FilterApplied the streamer instances' reports.
	Topics records.Topics
	// StreamerGroup is the live streamer's consumer group
	// (streamer.DefaultGroup when empty).
	StreamerGroup string
	// Now is the clock (time.Now).
	Now func() time.Time
	// Poll is how often Plan looks again while it waits (1 s).
	Poll time.Duration
}

// Backfill reads the product topic's history and decides what to write.
type Backfill struct {
	o    Options
	ours avro.Schema
}

// New checks o.
func New(o Options) (*Backfill, error) {
	if o.Kafka == nil || o.Serde == nil {
		return nil, errors.New("backfill: Kafka clients and a serde are required")
	}
	t := o.Topics
	for _, name := range []string{t.Products, t.Filtered, t.Filter, t.FilterApplied} {
		if name == "" {
			return nil, fmt.Errorf("backfill: a topic is not named: %+v", t)
		}
	}
	if o.StreamerGroup == "" {
		o.StreamerGroup = streamer.DefaultGroup
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	return &Backfill{o: o, ours: o.Serde.Schemas().Schema(records.KindProduct)}, nil
}

// Source and Target are the topics read and written.
func (b *Backfill) Source() string { return b.o.Topics.Products }
func (b *Backfill) Target() string { return b.o.Topics.Filtered }

// Header says a record was written by a backfill; its value is the
// backfill's id.
const Header = streamer.HeaderBackfill

// CurrentFilter is the newest filter state on the control topic; version 0
// (everything passes) when none was ever published.
func (b *Backfill) CurrentFilter(ctx context.Context) (records.FilterState, error) {
	var newest records.FilterState
	err := topicread.Read(ctx, b.o.Kafka, b.o.Topics.Filter, topicread.Options{}, func(r *kgo.Record) error {
		if r.Value == nil {
			return nil
		}
		var st records.FilterState
		if err := b.o.Serde.Decode(ctx, r.Value, &st); err != nil {
			if deadletter.ReasonOf(err) != "" {
				return nil // a state that never decodes; the streamer skips it too
			}
			return err
		}
		if st.Version > newest.Version {
			newest = st
		}
		return nil
	})
	if err != nil {
		return records.FilterState{}, fmt.Errorf("read the filter state from %s: %w", b.o.Topics.Filter, err)
	}
	return newest, nil
}

// Partition is one source partition's offsets to re-read: [Start, End).
type Partition struct {
	Partition  int32
	Start, End int64
}

// Plan decides what to re-read for filter version: every partition's
// offsets whose records have timestamps in [from, to) (a zero from is the
// partition's start, a zero to now), ending where the live streamer applies
// version. It waits, calling wait with what it waits for, until every live
// streamer instance applied version and the streamer's group committed past
// the end; a group without members ends the backfill at its committed
// offsets instead (its next instance starts there with the newest filter).
func (b *Backfill) Plan(ctx context.Context, version int64, from, to time.Time, wait func(status string)) ([]Partition, error) {
	cl, err := b.o.Kafka.NewClient()
	if err != nil {
		return nil, fmt.Errorf("create the backfill's admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := b.waitApplied(ctx, version, wait); err != nil {
		return nil, err
	}
	parts, err := b.offsets(ctx, adm, from, to)
	if err != nil {
		return nil, err
	}
	return b.waitStreamer(ctx, adm, parts, wait)
}

// waitApplied waits until no live streamer instance applies a version
// older than version.
func (b *Backfill) waitApplied(ctx context.Context, version int64, wait func(string)) error {
	for {
		reps, err := health.ReadApplied(ctx, b.o.Kafka, b.o.Topics.FilterApplied)
		if err != nil {
			return fmt.Errorf("read the streamer instances' applied filters: %w", err)
		}
		now := b.o.Now()
		behind := 0
		for _, r := range reps {
			if r.Live(now) && r.Version < version {
				behind++
			}
		}
		if behind == 0 {
			return nil
		}
		wait(fmt.Sprintf("waiting for %d streamer instance(s) to apply filter v%d", behind, version))
		if err := clock.Sleep(ctx, b.o.Poll); err != nil {
			return err
		}
	}
}

func (b *Backfill) offsets(ctx context.Context, adm *kadm.Client, from, to time.Time) (map[int32]*Partition, error) {
	topic := b.o.Topics.Products
	list := func(what string, f func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		o, err := f()
		if err == nil {
			err = o.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("list the %s offsets of %s: %w", what, topic, err)
		}
		if len(o[topic]) == 0 {
			return nil, fmt.Errorf("topic %s does not exist: run `shopstream bootstrap`", topic)
		}
		return o, nil
	}
	starts, err := list("start", func() (kadm.ListedOffsets, error) {
		if from.IsZero() {
			return adm.ListStartOffsets(ctx, topic)
		}
		return adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	})
	if err != nil {
		return nil, err
	}
	stable, err := list("last stable", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if err != nil {
		return nil, err
	}
	ends := stable
	if !to.IsZero() {
		if ends, err = list("end", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, to.UnixMilli(), topic) }); err != nil {
			return nil, err
		}
	}
	parts := map[int32]*Partition{}
	for p, s := range stable[topic] {
		end := s.Offset
		if e, ok := ends.Lookup(topic, p); ok && e.Offset >= 0 && e.Offset < end {
			end = e.Offset
		}
		start := end
		if st, ok := starts.Lookup(topic, p); ok && st.Offset >= 0 && st.Offset < end {
			start = st.Offset
		}
		parts[p] = &Partition{Partition: p, Start: start, End: end}
	}
	return parts, nil
}

// waitStreamer waits until the streamer's group committed every partition
// up to its end, or has no members.
func (b *Backfill) waitStreamer(ctx context.Context, adm *kadm.Client, parts map[int32]*Partition, wait func(string)) ([]Partition, error) {
	topic, group := b.o.Topics.Products, b.o.StreamerGroup
	for {
		groups, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return nil, fmt.Errorf("describe the streamer's group %s: %w", group, err)
		}
		d := groups[group]
		members := len(d.Members)
		offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
		if errors.Is(err, kerr.GroupIDNotFound) {
			offs, err = kadm.OffsetResponses{}, nil // no streamer ever committed
		}
		if err != nil {
			return nil, fmt.Errorf("read the committed offsets of the streamer's group %s: %w", group, err)
		}
		var behind int64
		for p, part := range parts {
			committed := int64(-1)
			if o, ok := offs.Lookup(topic, p); ok && o.Err == nil {
				committed = o.At
			}
			passed := committed >= part.End
			if !passed && committed >= part.Start && part.End-committed <= markerProbe {
				// A consumer that read everything commits the offset of the
				// last transaction's commit marker, one short of the end:
				// what lies between may be markers and aborted records only.
				if passed, err = b.onlyMarkers(ctx, p, committed, part.End); err != nil {
					return nil, err
				}
			}
			switch {
			case passed:
			case members == 0:
				// Nobody consumes: the next instance starts at the committed
				// offset (or the start, when none) with the newest filter.
				part.End = max(min(part.End, committed), part.Start)
				if committed < 0 {
					part.End = part.Start
				}
			default:
				behind += part.End - max(committed, 0)
			}
		}
		if behind == 0 {
			out := make([]Partition, 0, len(parts))
			for p := range int32(len(parts)) {
				if part, ok := parts[p]; ok {
					out = append(out, *part)
				}
			}
			return out, nil
		}
		wait(fmt.Sprintf("waiting for the streamer (group %s) to pass the backfill's end: %d records to go", group, behind))
		if err := clock.Sleep(ctx, b.o.Poll); err != nil {
			return nil, err
		}
	}
}

// markerProbe is the widest gap between a committed offset and an end that
// onlyMarkers reads to tell markers from records still to consume.
const markerProbe = 64

// onlyMarkers says whether partition's offsets [from, to) hold no record a
// read_committed consumer would read.
func (b *Backfill) onlyMarkers(ctx context.Context, partition int32, from, to int64) (bool, error) {
	src := b.o.Topics.Products
	records := 0
	err := topicread.ReadRanges(ctx, b.o.Kafka, map[string]map[int32]topicread.Range{src: {partition: {From: from, To: to}}},
		func(*kgo.Record) error {
			records++
			return nil
		})
	if err != nil {
		return false, fmt.Errorf("read %s partition %d offsets %d to %d: %w", src, partition, from, to-1, err)
	}
	return records == 0, nil
}

// EncodeCounts writes a range's counts as its marker's metadata;
// DecodeCounts reads them back.
func EncodeCounts(c workflows.BackfillCounts) string {
	b, _ := json.Marshal(c) // a struct of integers always encodes
	return string(b)
}

// DecodeCounts reads what EncodeCounts wrote.
func DecodeCounts(s string) (workflows.BackfillCounts, error) {
	var c workflows.BackfillCounts
	err := json.Unmarshal([]byte(s), &c)
	return c, err
}

// Selection is what one range writes: its records, ready to produce to the
// filtered topic, and where the check for newer records ended.
type Selection struct {
	Records []*kgo.Record
	Counts  workflows.BackfillCounts
	// checked is the source offset the check for newer records has read
	// up to; Superseded reads on from there.
	checked   int64
	partition int32
}

// Select reads the range [r.Start, r.End) and returns the records the
// filtered topic must get: each product's newest record when it matches f,
// has no newer record anywhere after it, and is not already there. They
// carry the original key, value, timestamp and headers, plus the filter
// version and Header with the value id.
func (b *Backfill) Select(ctx context.Context, r Partition, f records.FilterState, id string) (*Selection, error) {
	src := b.o.Topics.Products
	sel := &Selection{partition: r.Partition}
	newest := map[string]*kgo.Record{}
	err := topicread.ReadRanges(ctx, b.o.Kafka, map[string]map[int32]topicread.Range{src: {r.Partition: {From: r.Start, To: r.End}}},
		func(rec *kgo.Record) error {
			sel.Counts.Read++
			if newest[string(rec.Key)] != nil {
				sel.Counts.Superseded++
			}
			newest[string(rec.Key)] = rec
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read %s partition %d offsets %d to %d: %w", src, r.Partition, r.Start, r.End-1, err)
	}
	// Newer records after the range: a later range or the streamer owns
	// those products.
	if sel.checked, err = b.newer(ctx, r.Partition, r.End, newest, &sel.Counts.Superseded); err != nil {
		return nil, err
	}
	filter := streamer.NewFilter(f, false)
	names := nameReader{serde: b.o.Serde, ours: b.ours, layouts: map[int]*streamer.Layout{}}
	candidates := map[string]*kgo.Record{}
	for key, rec := range newest {
		switch {
		case rec.Key == nil:
			sel.Counts.Unreadable++
		case rec.Value == nil:
			sel.Counts.Deleted++
		default:
			name, err := names.name(ctx, rec.Value)
			if err != nil {
				if deadletter.ReasonOf(err) == "" {
					return nil, err // the registry did not answer: retry the range
				}
				sel.Counts.Unreadable++
				continue
			}
			if !filter.Match(name) {
				sel.Counts.Dropped++
				continue
			}
			candidates[key] = rec
		}
	}
	if err := b.dropPresent(ctx, candidates, &sel.Counts.Present); err != nil {
		return nil, err
	}
	version := kgo.RecordHeader{Key: streamer.HeaderFilterVersion, Value: []byte(strconv.FormatInt(f.Version, 10))}
	tag := kgo.RecordHeader{Key: Header, Value: []byte(id)}
	for _, rec := range candidates {
		h := make([]kgo.RecordHeader, 0, len(rec.Headers)+2)
		h = append(append(h, rec.Headers...), version, tag)
		sel.Records = append(sel.Records, &kgo.Record{Topic: b.o.Topics.Filtered, Key: rec.Key, Value: rec.Value, Headers: h, Timestamp: rec.Timestamp})
	}
	// Products in the order of their source offsets, as the streamer
	// would have written them.
	sortByOffset(sel.Records, candidates)
	sel.Counts.Forwarded = int64(len(sel.Records))
	return sel, nil
}

// newer reads partition from offset from up to its last stable offset and
// removes from keys every product that has a record there, counting them.
// It returns the offset it read up to.
func (b *Backfill) newer(ctx context.Context, partition int32, from int64, keys map[string]*kgo.Record, removed *int64) (int64, error) {
	src := b.o.Topics.Products
	end, err := topicread.Stable(ctx, b.o.Kafka, b.o.Topics.Products, partition)
	if err != nil {
		return 0, err
	}
	err = topicread.ReadRanges(ctx, b.o.Kafka, map[string]map[int32]topicread.Range{src: {partition: {From: from, To: end}}},
		func(rec *kgo.Record) error {
			if _, ok := keys[string(rec.Key)]; ok {
				delete(keys, string(rec.Key))
				*removed++
			}
			return nil
		})
	if err != nil {
		return 0, fmt.Errorf("read %s partition %d after offset %d: %w", src, partition, from, err)
	}
	return max(end, from), nil
}

// Superseded reads the source partition on from where Select stopped and
// returns the products of the selection that got a newer record meanwhile.
// Call it once the selection's records are all in Kafka, before the commit:
// a product it returns must not be written by this range (write it again
// without them).
func (b *Backfill) Superseded(ctx context.Context, sel *Selection) ([]string, error) {
	keys := make(map[string]*kgo.Record, len(sel.Records))
	for _, r := range sel.Records {
		keys[string(r.Key)] = r
	}
	var n int64
	before := len(keys)
	checked, err := b.newer(ctx, sel.partition, sel.checked, keys, &n)
	if err != nil {
		return nil, err
	}
	sel.checked = checked
	if len(keys) == before {
		return nil, nil
	}
	var out []string
	for _, r := range sel.Records {
		if _, ok := keys[string(r.Key)]; !ok {
			out = append(out, string(r.Key))
		}
	}
	return out, nil
}

// dropPresent removes the candidates whose newest record in the filtered
// topic is the same value, counting them.
func (b *Backfill) dropPresent(ctx context.Context, candidates map[string]*kgo.Record, present *int64) error {
	if len(candidates) == 0 {
		return nil
	}
	target := b.o.Topics.Filtered
	parts, err := b.targetPartitions(ctx, candidates)
	if err != nil {
		return err
	}
	latest := map[string][]byte{}
	err = topicread.Read(ctx, b.o.Kafka, target, topicread.Options{Partitions: parts}, func(r *kgo.Record) error {
		if _, ok := candidates[string(r.Key)]; ok {
			latest[string(r.Key)] = r.Value
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", target, err)
	}
	for key, v := range latest {
		if string(v) == string(candidates[key].Value) {
			delete(candidates, key)
			*present++
		}
	}
	return nil
}

// targetPartitions are the filtered topic's partitions the candidates'
// keys go to, with the partitioner every writer of the topic uses (Kafka's
// murmur2 of the key).
func (b *Backfill) targetPartitions(ctx context.Context, candidates map[string]*kgo.Record) ([]int32, error) {
	cl, err := b.o.Kafka.NewClient()
	if err != nil {
		return nil, fmt.Errorf("create the backfill's admin client: %w", err)
	}
	defer cl.Close()
	target := b.o.Topics.Filtered
	details, err := kadm.NewClient(cl).ListTopics(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("describe topic %s: %w", target, err)
	}
	d, ok := details[target]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return nil, fmt.Errorf("topic %s does not exist: run `shopstream bootstrap`", target)
	}
	n := len(d.Partitions)
	part := kgo.StickyKeyPartitioner(nil).ForTopic(target)
	seen := map[int32]bool{}
	var out []int32
	for _, r := range candidates {
		p := int32(part.Partition(&kgo.Record{Key: r.Key}, n))
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// Without drops the given products from the selection.
func (s *Selection) Without(keys []string) {
	drop := make(map[string]bool, len(keys))
	for _, k := range keys {
		drop[k] = true
	}
	kept := s.Records[:0]
	for _, r := range s.Records {
		if !drop[string(r.Key)] {
			kept = append(kept, r)
		}
	}
	s.Counts.Superseded += int64(len(s.Records) - len(kept))
	s.Records = kept
	s.Counts.Forwarded = int64(len(kept))
}
