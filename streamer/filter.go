package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// HeaderFilterVersion names the header that every forwarded record carries:
// the version of the filter that let it through, in decimal.
const HeaderFilterVersion = "shopstream.filter.version"

// HeaderBackfill is on a record that the filter backfill (not the
// streamer) wrote to the filtered topic; its value is the backfill's id.
// The record keeps the timestamp of the product it copies, so freshness
// histograms leave it out.
const HeaderBackfill = "shopstream.backfill"

// Backfilled says whether a record's headers carry HeaderBackfill.
func Backfilled(headers []kgo.RecordHeader) bool {
	for _, h := range headers {
		if h.Key == HeaderBackfill {
			return true
		}
	}
	return false
}

// ControlKey is the key of every record on the control topic; compaction
// keeps the newest.
const ControlKey = "filter"

// Filter is one filter state as an instance applies it. Version 0 is the
// state before any was ever published: the empty substring, which lets
// everything through.
type Filter struct {
	Version       int64
	Substring     string
	CaseSensitive bool
	SetAt         time.Time
	SetBy         string
	// AppliedAt is when this instance switched to the filter.
	AppliedAt time.Time

	matcher *Matcher
	header  kgo.RecordHeader
	// headers is header alone, for a forwarded record that has no headers
	// of its own; its capacity is 1, so appending to it copies.
	headers []kgo.RecordHeader
	// marks are what a fetched record's Context is set to once this filter
	// checked its value (see check and precheck): dropped, or passed and
	// whole.
	marks [2]*checkedMark
}

// checkedMark marks a fetched record that filter checked: a product it
// drops (read up to its name), or one it passes (read whole).
type checkedMark struct {
	context.Context
	filter *Filter
	pass   bool
}

// NewFilter builds the filter of a published state. forceCaseSensitive is
// the instance's --case-sensitive: it makes matching case-sensitive whatever
// the state says.
func NewFilter(st records.FilterState, forceCaseSensitive bool) *Filter {
	f := &Filter{
		Version:       st.Version,
		Substring:     st.Substring,
		CaseSensitive: st.CaseSensitive || forceCaseSensitive,
		SetAt:         st.SetAt,
		SetBy:         st.SetBy,
	}
	f.matcher = NewMatcher(f.Substring, f.CaseSensitive)
	f.header = kgo.RecordHeader{Key: HeaderFilterVersion, Value: []byte(strconv.FormatInt(f.Version, 10))}
	f.headers = []kgo.RecordHeader{f.header}
	f.marks = [2]*checkedMark{{Context: context.Background(), filter: f}, {Context: context.Background(), filter: f, pass: true}}
	return f
}

// Match reports whether a product's name passes the filter.
func (f *Filter) Match(name []byte) bool { return f.matcher.Match(name) }

// String describes the filter for logs and the CLI.
func (f *Filter) String() string { return Describe(f.Version, f.Substring, f.CaseSensitive) }

// Describe writes a filter state the way every shopstream command shows it.
func Describe(version int64, substring string, caseSensitive bool) string {
	mode := "case-insensitive"
	if caseSensitive {
		mode = "case-sensitive"
	}
	if substring == "" {
		return fmt.Sprintf("v%d: everything passes", version)
	}
	return fmt.Sprintf("v%d: name contains %q (%s)", version, substring, mode)
}

// FilterVersion returns the filter version a forwarded record carries.
func FilterVersion(headers []kgo.RecordHeader) (int64, bool) {
	for _, h := range headers {
		if h.Key == HeaderFilterVersion {
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// control follows the control topic from its start and holds the filter
// the hot path applies. The hot path loads it once per record, so a change
// takes effect between two records.
type control struct {
	kafka         *clients.Kafka
	rd            *topicread.Reader // opened by load
	serde         *records.Serde
	topic         string
	caseSensitive bool
	log           *slog.Logger
	now           func() time.Time
	m             *metrics

	current atomic.Pointer[Filter]
	// changed wakes the reporter; it holds at most one wake-up, the reporter
	// reads current itself.
	changed chan struct{}
}

func newControl(cfg *Options, m *metrics) *control {
	return &control{
		kafka: cfg.Kafka, serde: cfg.Serde, topic: cfg.Topics.Filter, caseSensitive: cfg.CaseSensitive,
		log: cfg.Logger, now: cfg.Now, m: m, changed: make(chan struct{}, 1),
	}
}

// load reads the control topic up to the end it has now and applies the
// newest state, so an instance never starts with "everything passes" by
// accident. An empty topic means no filter was ever set: version 0.
func (c *control) load(ctx context.Context) error {
	rd, err := topicread.Open(ctx, c.kafka, c.topic, topicread.Options{OnFetchError: c.fetchError})
	if err != nil {
		return err
	}
	c.rd = rd
	var newest *kgo.Record
	var states []*kgo.Record
	err = rd.CatchUp(ctx, func(r *kgo.Record) error {
		newest = r
		states = append(states, r)
		return nil
	})
	if err != nil {
		return err
	}
	c.apply(NewFilter(records.FilterState{}, c.caseSensitive))
	for _, r := range states {
		if err := c.decodeAndApply(ctx, r); err != nil {
			if r == newest {
				// Better not to run than to run the wrong filter.
				return fmt.Errorf("the newest filter state on %s (partition %d offset %d) does not decode: %w", c.topic, r.Partition, r.Offset, err)
			}
			c.log.Warn("skip an old filter state that does not decode", "topic", c.topic, "offset", r.Offset, "err", err)
		}
	}
	return nil
}

// follow applies each new state until ctx ends.
func (c *control) follow(ctx context.Context) error {
	return c.rd.Follow(ctx, func(r *kgo.Record) error {
		if ctx.Err() == nil {
			// A state that never decodes is logged and counted; the
			// only other error is ctx ending, seen at the next poll.
			_ = c.decodeAndApply(ctx, r)
		}
		return nil
	})
}

// fetchError logs and counts a failed fetch of the control topic; the
// reader goes on (franz-go retries).
func (c *control) fetchError(topic string, partition int32, err error) error {
	c.log.Error("read the control topic", "topic", topic, "partition", partition, "err", err)
	c.m.controlErrors.Inc()
	return nil
}

// decodeAndApply applies a state newer than the current one. A state that
// can never decode is skipped (and counted); a registry that does not answer
// is retried, with the current filter in force meanwhile.
func (c *control) decodeAndApply(ctx context.Context, r *kgo.Record) error {
	if r.Value == nil {
		return nil // a tombstone is not a state
	}
	var st records.FilterState
	for attempt := 0; ; attempt++ {
		err := c.serde.Decode(ctx, r.Value, &st)
		if err == nil {
			break
		}
		if deadletter.ReasonOf(err) != "" { // it fails the same way however often it is tried
			c.m.controlErrors.Inc()
			c.log.Error("skip a filter state that does not decode", "topic", c.topic, "offset", r.Offset, "err", err)
			return err
		}
		c.log.Warn("decode a filter state: the registry does not answer, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
	if cur := c.current.Load(); cur != nil && st.Version <= cur.Version {
		return nil
	}
	c.apply(NewFilter(st, c.caseSensitive))
	return nil
}

func (c *control) apply(f *Filter) {
	f.AppliedAt = c.now()
	c.current.Store(f)
	c.m.filterVersion.Set(float64(f.Version))
	c.m.filterAppliedAt.Set(float64(f.AppliedAt.UnixMilli()) / 1000)
	c.log.Info("filter applied", "filter", f.String())
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *control) close() {
	if c.rd != nil {
		c.rd.Close()
	}
}

func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	return min(d, 5*time.Second)
}
