// Package dlqreplay decides which dead letters go back to their source
// topic, for `shopstream dlq replay` and its --dry-run: those a Selection
// picks, whose record was never replayed before (a compacted ledger topic,
// keyed by the record's source topic, partition and offset, says which
// were), that are under the replay limit, and whose product has no newer
// record in its source topic. Several components may dead-letter the same
// record (the streamer, the sink and the collector all read the product
// topic): it goes back once, and every component reads it again. The ReplayDeadLetters workflow's activities write them back inside
// Kafka transactions with markers (package txnmarker), together with their
// ledger entries, so each dead letter goes back exactly once.
package dlqreplay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// DefaultMaxReplays is how many times a record is replayed at most: a
// dead letter that says it was replayed that often stays.
const DefaultMaxReplays = 3

// Selection picks dead letters; an empty field picks every letter.
type Selection struct {
	Reasons    []string
	Components []string
	// Since picks letters dead-lettered at or after it.
	Since time.Time
	// Keys picks letters whose record key is one of these.
	Keys []string
}

// Picks says whether the selection picks d.
func (s Selection) Picks(d deadletter.Letter) bool {
	return (len(s.Reasons) == 0 || slices.Contains(s.Reasons, d.Reason)) &&
		(len(s.Components) == 0 || slices.Contains(s.Components, d.Component)) &&
		(s.Since.IsZero() || !d.Time.Before(s.Since)) &&
		(len(s.Keys) == 0 || slices.Contains(s.Keys, string(d.Key)))
}

// Validate checks the selection's words against the vocabulary.
func (s Selection) Validate() error {
	var known []string
	for _, m := range deadletter.Vocabulary() {
		known = append(known, m.Reason)
	}
	for _, r := range s.Reasons {
		if !slices.Contains(known, r) {
			return fmt.Errorf("reason %q: want one of %s", r, strings.Join(known, ", "))
		}
	}
	components := []string{"streamer", "recommender", "sink", "collector"}
	for _, c := range s.Components {
		if !slices.Contains(components, c) {
			return fmt.Errorf("component %q: want one of %s", c, strings.Join(components, ", "))
		}
	}
	return nil
}

// Verdicts on a picked dead letter.
const (
	Replay     = "replay"
	Replayed   = "replayed already"
	AtLimit    = "at the replay limit"
	Superseded = "superseded"
	NoSource   = "no source topic"
	OverLimit  = "over --limit"
	// SameRecord: another letter of the same record goes back.
	SameRecord = "same record as another letter"
)

// Options say where the replay reads and writes.
type Options struct {
	Kafka *clients.Kafka
	// DLQ is the dead-letter topic; Ledger the compacted topic that
	// records which letters went back.
	DLQ, Ledger string
	// Changelogs are the source topics whose records are states of a key
	// (products, not search prompts): a letter of one whose key has a newer
	// record there is superseded, not replayed.
	Changelogs []string
	// MaxReplays is the replay limit (DefaultMaxReplays when 0).
	MaxReplays int
	Now        func() time.Time
}

// Changelogs are the topics of t whose records are states of their key;
// search prompts are events, and a later prompt of a user does not replace
// an earlier one.
func Changelogs(t records.Topics) []string {
	return []string{t.Products, t.Filtered, t.CompleteProducts, t.Recommendations}
}

// Replayer reads the dead-letter topic, its ledger and the source topics.
type Replayer struct {
	o Options
}

// New checks o.
func New(o Options) (*Replayer, error) {
	if o.Kafka == nil || o.DLQ == "" || o.Ledger == "" {
		return nil, errors.New("dlqreplay: Kafka clients, the dead-letter topic and the ledger topic are required")
	}
	if o.MaxReplays <= 0 {
		o.MaxReplays = DefaultMaxReplays
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Replayer{o: o}, nil
}

// DLQ and Ledger name the topics.
func (r *Replayer) DLQ() string    { return r.o.DLQ }
func (r *Replayer) Ledger() string { return r.o.Ledger }

// MaxReplays is the replay limit in force.
func (r *Replayer) MaxReplays() int { return r.o.MaxReplays }

// Candidate is one picked dead letter and what replay does with it.
type Candidate struct {
	deadletter.Letter
	Verdict string
}

// Range is one dead-letter partition's offsets [Start, End) holding
// Letters letters to replay.
type Range struct {
	Partition  int32
	Start, End int64
	Letters    int
}

// Plan is what a replay would do: every picked letter with its verdict, in
// the order they are replayed, and the ranges that hold those to replay.
type Plan struct {
	Candidates []Candidate
	Ranges     []Range
}

// Counts say what became of the picked letters.
func (p Plan) Counts() map[string]int {
	out := map[string]int{}
	for _, c := range p.Candidates {
		out[c.Verdict]++
	}
	return out
}

// Plan reads the dead-letter topic up to its last stable offsets and the
// ledger, and decides about every letter s picks. limit > 0 replays at
// most that many, the oldest first, so that each partition's are a prefix
// in offset order (a range replays every letter to replay up to its end).
// Ranges hold at most rangeLetters letters each.
func (r *Replayer) Plan(ctx context.Context, s Selection, limit, rangeLetters int) (Plan, error) {
	ledger, err := r.ReadLedger(ctx)
	if err != nil {
		return Plan{}, err
	}
	byPart := map[int32][]Candidate{}
	err = topicread.Read(ctx, r.o.Kafka, r.o.DLQ, topicread.Options{}, func(rec *kgo.Record) error {
		d := deadletter.Parse(rec)
		if s.Picks(d) {
			byPart[d.Partition] = append(byPart[d.Partition], Candidate{Letter: d, Verdict: r.verdict(d, ledger)})
		}
		return nil
	})
	sameRecords(byPart)
	if err != nil {
		return Plan{}, fmt.Errorf("read the dead-letter topic %s: %w", r.o.DLQ, err)
	}
	if err := r.markSuperseded(ctx, byPart); err != nil {
		return Plan{}, err
	}
	return plan(byPart, limit, max(rangeLetters, 1)), nil
}

func (r *Replayer) verdict(d deadletter.Letter, ledger map[string]bool) string {
	switch {
	case ledger[LedgerKey(d)]:
		return Replayed
	case d.Replays >= r.o.MaxReplays:
		return AtLimit
	case d.SourceTopic == "":
		return NoSource
	}
	return Replay
}

// plan merges the partitions' letters oldest first, each partition in
// offset order, replays at most limit of them (so each partition's are a
// prefix of its letters to replay), and cuts each partition's into ranges.
func plan(byPart map[int32][]Candidate, limit, rangeLetters int) Plan {
	var p Plan
	next := map[int32]int{}
	parts := make([]int32, 0, len(byPart))
	for part := range byPart {
		parts = append(parts, part)
	}
	slices.Sort(parts)
	replaying := 0
	for {
		best := int32(-1)
		for _, part := range parts {
			if next[part] < len(byPart[part]) && (best < 0 || byPart[part][next[part]].Time.Before(byPart[best][next[best]].Time)) {
				best = part
			}
		}
		if best < 0 {
			break
		}
		c := &byPart[best][next[best]]
		next[best]++
		if c.Verdict == Replay {
			if limit > 0 && replaying >= limit {
				c.Verdict = OverLimit
			} else {
				replaying++
			}
		}
		p.Candidates = append(p.Candidates, *c)
	}
	for _, part := range parts {
		for _, c := range byPart[part] {
			if c.Verdict != Replay {
				continue
			}
			if n := len(p.Ranges); n == 0 || p.Ranges[n-1].Partition != part || p.Ranges[n-1].Letters >= rangeLetters {
				p.Ranges = append(p.Ranges, Range{Partition: part, Start: c.Offset})
			}
			last := &p.Ranges[len(p.Ranges)-1]
			last.End, last.Letters = c.Offset+1, last.Letters+1
		}
	}
	return p
}

// markSuperseded turns Replay into Superseded for letters of a changelog
// topic whose key has a newer record in their source partition.
func (r *Replayer) markSuperseded(ctx context.Context, byPart map[int32][]Candidate) error {
	type src struct {
		topic     string
		partition int32
	}
	from := map[src]int64{}
	for _, cs := range byPart {
		for _, c := range cs {
			if c.Verdict != Replay || !slices.Contains(r.o.Changelogs, c.SourceTopic) {
				continue
			}
			k := src{c.SourceTopic, c.SourcePartition}
			if o, ok := from[k]; !ok || c.SourceOffset+1 < o {
				from[k] = c.SourceOffset + 1
			}
		}
	}
	if len(from) == 0 {
		return nil
	}
	// The newest offset of each key after the earliest letter.
	newest := map[src]map[string]int64{}
	ranges := map[string]map[int32]topicread.Range{}
	for k, o := range from {
		end, err := topicread.Stable(ctx, r.o.Kafka, k.topic, k.partition)
		if err != nil {
			return err
		}
		if ranges[k.topic] == nil {
			ranges[k.topic] = map[int32]topicread.Range{}
		}
		ranges[k.topic][k.partition] = topicread.Range{From: o, To: end}
		newest[k] = map[string]int64{}
	}
	err := topicread.ReadRanges(ctx, r.o.Kafka, ranges, func(rec *kgo.Record) error {
		newest[src{rec.Topic, rec.Partition}][string(rec.Key)] = rec.Offset
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the source topics for newer records: %w", err)
	}
	for _, cs := range byPart {
		for i := range cs {
			c := &cs[i]
			if c.Verdict != Replay {
				continue
			}
			if o, ok := newest[src{c.SourceTopic, c.SourcePartition}][string(c.Key)]; ok && o > c.SourceOffset {
				c.Verdict = Superseded
			}
		}
	}
	return nil
}

// LedgerKey is the ledger's key of a dead letter's record: where it was
// in its source topic.
func LedgerKey(d deadletter.Letter) string {
	return d.SourceTopic + "/" + strconv.Itoa(int(d.SourcePartition)) + "@" + strconv.FormatInt(d.SourceOffset, 10)
}

// sameRecords leaves one letter of each record to replay, in the order the
// letters were read; the others say SameRecord.
func sameRecords(byPart map[int32][]Candidate) {
	parts := make([]int32, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	seen := map[string]bool{}
	for _, p := range parts {
		for i := range byPart[p] {
			c := &byPart[p][i]
			if c.Verdict != Replay {
				continue
			}
			if k := LedgerKey(c.Letter); seen[k] {
				c.Verdict = SameRecord
			} else {
				seen[k] = true
			}
		}
	}
}

// Entry is one ledger record's value: a record that went back, and the
// letter it went back from.
type Entry struct {
	Workflow     string    `json:"workflow"`
	To           string    `json:"to"`
	Replays      int       `json:"replays"`
	ReplayedAt   time.Time `json:"replayed_at"`
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
}

// LedgerRecord is the ledger record of d replayed by workflow at now.
func (r *Replayer) LedgerRecord(d deadletter.Letter, workflow string) *kgo.Record {
	v, _ := json.Marshal(Entry{Workflow: workflow, To: d.SourceTopic, Replays: d.Replays + 1, ReplayedAt: r.o.Now().UTC(),
		DLQPartition: d.Partition, DLQOffset: d.Offset}) // plain fields always encode
	return &kgo.Record{Topic: r.o.Ledger, Key: []byte(LedgerKey(d)), Value: v}
}

// ReadLedger returns the keys of every dead letter that went back.
func (r *Replayer) ReadLedger(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	// Compacted: its newest offset may be gone, so a second without
	// records ends the read.
	err := topicread.Read(ctx, r.o.Kafka, r.o.Ledger, topicread.Options{Idle: time.Second}, func(rec *kgo.Record) error {
		out[string(rec.Key)] = rec.Value != nil
		return nil
	})
	if err != nil {
		if errors.Is(err, topicread.ErrNoTopic) {
			return nil, fmt.Errorf("the replay ledger %s does not exist: run `shopstream bootstrap` to create it", r.o.Ledger)
		}
		return nil, fmt.Errorf("read the replay ledger %s: %w", r.o.Ledger, err)
	}
	return out, nil
}

// Letters reads the range and returns the letters to replay in it: those s
// picks with the verdict Replay now (the ledger is read again, so a letter
// another run replayed meanwhile is not).
func (r *Replayer) Letters(ctx context.Context, s Selection, rg Range) ([]deadletter.Letter, map[string]int, error) {
	ledger, err := r.ReadLedger(ctx)
	if err != nil {
		return nil, nil, err
	}
	byPart := map[int32][]Candidate{}
	err = topicread.ReadRanges(ctx, r.o.Kafka, map[string]map[int32]topicread.Range{r.o.DLQ: {rg.Partition: {From: rg.Start, To: rg.End}}},
		func(rec *kgo.Record) error {
			d := deadletter.Parse(rec)
			if s.Picks(d) {
				byPart[d.Partition] = append(byPart[d.Partition], Candidate{Letter: d, Verdict: r.verdict(d, ledger)})
			}
			return nil
		})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s partition %d offsets %d to %d: %w", r.o.DLQ, rg.Partition, rg.Start, rg.End-1, err)
	}
	sameRecords(byPart)
	if err := r.markSuperseded(ctx, byPart); err != nil {
		return nil, nil, err
	}
	counts := map[string]int{}
	var out []deadletter.Letter
	for _, c := range byPart[rg.Partition] {
		counts[c.Verdict]++
		if c.Verdict == Replay {
			out = append(out, c.Letter)
		}
	}
	return out, counts, nil
}
