// Package health answers "is the pipeline working?" in one place, for
// `shopstream status`, the Kafka view on /metrics, and (next) readiness
// probes, so that a dashboard, an alert and status never disagree:
//
//   - consumer groups: their state, members, and lag without transaction
//     markers (Kafka.Lags, GroupLag.Problem);
//   - the filter: the version each streamer instance applies against the
//     desired one (CheckFilter).
//
// Every partition's offsets (start, last stable, end) are kept with the lag,
// so that a partition whose last stable offset stays behind its end for
// longer than the transaction timeout (a hanging transaction) can be told
// from two samples, as GroupLag.Problem already tells a stuck group.
package health

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/topicread"
)

// MarkerProbeMax is the largest number of offsets per partition that Lags
// reads to tell records from transaction markers. A larger lag is counted
// as offsets, markers included: it is real work in any case, and markers
// are then a small part of it.
const MarkerProbeMax = 64

// probeTimeout bounds the read that tells records from markers.
const probeTimeout = 3 * time.Second

// Kafka is where health reads from: Admin lists offsets and groups; Kafka
// makes the short-lived read_committed reader that tells records from
// transaction markers.
type Kafka struct {
	Admin *kadm.Client
	Kafka *clients.Kafka
}

// Offsets are a partition's offsets.
type Offsets struct {
	Start int64 // the first offset still held
	// Stable is the last stable offset: a read_committed consumer reads up
	// to it. An open transaction holds it back.
	Stable int64
	End    int64 // the high watermark: the offset the next record gets
}

// PartitionLag is one partition of a group.
type PartitionLag struct {
	Topic     string
	Partition int32
	Offsets
	// Committed is the group's committed offset, the next it reads; -1
	// when it committed none (it reads from Start).
	Committed int64
	// Lag is the number of records the group has still to read: the
	// committed records between where it reads next and the last stable
	// offset. Transaction markers and aborted records take offsets but are
	// never read, so they do not count; nor do records of transactions
	// still open. -1 when Err is set.
	Lag int64
	Err error
}

// from is the offset the group reads next.
func (p *PartitionLag) from() int64 {
	if p.Committed >= 0 {
		return p.Committed
	}
	return p.Start
}

// Raw is the offset lag, end offset minus committed offset, as
// kafka-consumer-groups shows it: markers and open transactions included.
func (p *PartitionLag) Raw() int64 {
	if p.Err != nil {
		return -1
	}
	return max(p.End-p.from(), 0)
}

// GroupLag is a consumer group's state and its lag on every partition it
// committed on or is assigned.
type GroupLag struct {
	Group   string
	State   string // Stable, Empty, PreparingRebalance, …
	Members int
	// Err says the group could not be described or its offsets fetched.
	Err        error
	Partitions []PartitionLag // by topic, then partition
}

// Lag is the number of records the group has still to read.
func (g *GroupLag) Lag() int64 {
	var n int64
	for i := range g.Partitions {
		n += max(g.Partitions[i].Lag, 0)
	}
	return n
}

// Raw is the sum of the partitions' offset lags, markers included.
func (g *GroupLag) Raw() int64 {
	var n int64
	for i := range g.Partitions {
		n += max(g.Partitions[i].Raw(), 0)
	}
	return n
}

// LagByTopic is Lag by topic; every topic of the group is there.
func (g *GroupLag) LagByTopic() map[string]int64 {
	out := map[string]int64{}
	for i := range g.Partitions {
		p := &g.Partitions[i]
		out[p.Topic] += max(p.Lag, 0)
	}
	return out
}

// Committed is the sum of the committed offsets: it moves whenever the
// group commits.
func (g *GroupLag) Committed() int64 {
	var n int64
	for i := range g.Partitions {
		n += max(g.Partitions[i].Committed, 0)
	}
	return n
}

// Problem says what is wrong with the group, "" when nothing is. prev is
// the same group sampled interval earlier (nil when it was not there yet).
func (g *GroupLag) Problem(prev *GroupLag, interval time.Duration) string {
	if g.Err != nil {
		return fmt.Sprintf("group %s: %v", g.Group, g.Err)
	}
	lag := g.Lag()
	// A lag that grows while the group commits is a busy pipeline, not a
	// sick one: only a group that commits nothing while it lags is stuck.
	progressed := prev == nil || prev.Committed() != g.Committed()
	switch {
	case lag > 0 && g.Members == 0:
		return fmt.Sprintf("group %s has lag %d and no members: is its process running?", g.Group, lag)
	case lag > 0 && !progressed:
		return fmt.Sprintf("group %s is stuck: lag %d and no offset committed in %s", g.Group, lag, interval)
	}
	return ""
}

// Lags measures the lag of groups on the topics that topic accepts (nil:
// every topic). The error is for what could not be measured at all; a
// group that could not be described has its own Err. When telling records
// from markers fails, the lags are returned counting markers, with the
// error.
func (k Kafka) Lags(ctx context.Context, groups []string, topic func(string) bool) ([]GroupLag, error) {
	if len(groups) == 0 {
		return nil, nil // kadm would take no group for every group
	}
	described, err := k.Admin.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("compute the lag of groups %s: %w", strings.Join(groups, ", "), err)
	}
	var out []GroupLag
	topics := map[string]bool{}
	for _, d := range described.Sorted() {
		g := GroupLag{Group: d.Group, State: d.State, Members: len(d.Members), Err: d.Error()}
		for _, m := range d.Lag.Sorted() {
			if topic != nil && !topic(m.Topic) {
				continue
			}
			p := PartitionLag{Topic: m.Topic, Partition: m.Partition, Committed: m.Commit.At, Err: m.Err, Lag: -1,
				Offsets: Offsets{End: m.End.Offset, Stable: m.End.Offset}}
			if m.Start.Err == nil {
				p.Start = m.Start.Offset
			}
			if p.Err == nil {
				topics[m.Topic] = true
			}
			g.Partitions = append(g.Partitions, p)
		}
		out = append(out, g)
	}
	if err := k.stable(ctx, out, topics); err != nil {
		return nil, err
	}
	return out, k.countRecords(ctx, out)
}

// stable fills in the last stable offsets. They are listed after the end
// offsets, so a partition written in between can show a stable offset past
// the end it was sampled with: it is cut back to that end.
func (k Kafka) stable(ctx context.Context, groups []GroupLag, topics map[string]bool) error {
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	listed, err := k.Admin.ListCommittedOffsets(ctx, names...)
	if err != nil {
		return fmt.Errorf("list the last stable offsets of %s: %w", strings.Join(names, ", "), err)
	}
	for gi := range groups {
		for pi := range groups[gi].Partitions {
			p := &groups[gi].Partitions[pi]
			if p.Err != nil {
				continue
			}
			o, ok := listed.Lookup(p.Topic, p.Partition)
			switch {
			case !ok:
				p.Err = fmt.Errorf("list the last stable offset of %s/%d: not listed", p.Topic, p.Partition)
			case o.Err != nil:
				p.Err = fmt.Errorf("list the last stable offset of %s/%d: %w", p.Topic, p.Partition, o.Err)
			default:
				p.Stable = min(o.Offset, p.End)
			}
		}
	}
	return nil
}

// countRecords sets each partition's lag. Where the group is close to the
// last stable offset, a read_committed read of what lies between counts the
// records really there; elsewhere the offsets are counted.
func (k Kafka) countRecords(ctx context.Context, groups []GroupLag) error {
	type tp struct {
		topic     string
		partition int32
	}
	ranges := map[string]map[int32]topicread.Range{}
	for gi := range groups {
		for pi := range groups[gi].Partitions {
			p := &groups[gi].Partitions[pi]
			if p.Err != nil {
				continue
			}
			from, n := p.from(), p.Stable-p.from()
			p.Lag = max(n, 0)
			if n <= 0 || n > MarkerProbeMax {
				continue
			}
			if ranges[p.Topic] == nil {
				ranges[p.Topic] = map[int32]topicread.Range{}
			}
			r, ok := ranges[p.Topic][p.Partition]
			if !ok || from < r.From {
				r.From = from
			}
			r.To = max(r.To, p.Stable)
			ranges[p.Topic][p.Partition] = r
		}
	}
	if len(ranges) == 0 {
		return nil
	}
	found := map[tp][]int64{} // offsets of records, ascending
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	err := topicread.ReadRanges(pctx, k.Kafka, ranges, func(r *kgo.Record) error {
		at := tp{r.Topic, r.Partition}
		found[at] = append(found[at], r.Offset)
		return nil
	})
	if err != nil {
		return fmt.Errorf("tell transaction markers from records (lag counts them meanwhile): %w", err)
	}
	for gi := range groups {
		for pi := range groups[gi].Partitions {
			p := &groups[gi].Partitions[pi]
			if n := p.Stable - p.from(); p.Err != nil || n <= 0 || n > MarkerProbeMax {
				continue // counted as offsets above
			}
			offs := found[tp{p.Topic, p.Partition}]
			lo := sort.Search(len(offs), func(i int) bool { return offs[i] >= p.from() })
			hi := sort.Search(len(offs), func(i int) bool { return offs[i] >= p.Stable })
			p.Lag = int64(hi - lo)
		}
	}
	return nil
}
