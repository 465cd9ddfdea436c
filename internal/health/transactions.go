package health

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// HangingAfter is how long a partition's last stable offset may stay
// behind its end, unmoved, before it counts as held by a hanging
// transaction even when no broker names the producer that holds it:
// Kafka's largest transaction timeout (transaction.max.timeout.ms).
// A transaction the brokers do describe hangs once it is older than its
// own timeout (see OpenTxn.Hanging).
const HangingAfter = 15 * time.Minute

// hangingGrace is added to a transaction's own timeout before it counts as
// hanging: the coordinator aborts an expired transaction on a timer, not at
// the exact millisecond.
const hangingGrace = 5 * time.Second

// OpenTxn is a transaction that holds back a partition's last stable
// offset, as the partition's leader (DescribeProducers) and the
// transaction coordinator (ListTransactions, DescribeTransactions) tell it.
type OpenTxn struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offsets   `json:"offsets"`
	// FirstOffset is the offset of the transaction's first record in the
	// partition: the last stable offset cannot pass it.
	FirstOffset   int64 `json:"first_offset"`
	ProducerID    int64 `json:"producer_id"`
	ProducerEpoch int16 `json:"producer_epoch"`
	// CoordinatorEpoch is the coordinator epoch the leader last saw from
	// the producer's coordinator; an abort marker carries it.
	CoordinatorEpoch int32 `json:"coordinator_epoch"`
	// TransactionalID is "" when no coordinator lists the producer.
	TransactionalID string `json:"transactional_id,omitempty"`
	// CoordinatorState is the coordinator's state of the transactional id
	// (Ongoing, PrepareCommit, CompleteAbort, Empty, …), "" when none
	// lists it.
	CoordinatorState string `json:"coordinator_state,omitempty"`
	// Started is when the transaction began: the coordinator's start time,
	// else the leader's last write of the producer.
	Started time.Time `json:"started"`
	// Timeout is the transaction's timeout, 0 when no coordinator says.
	Timeout time.Duration `json:"timeout"`
	// Hanging says that nothing will end the transaction by itself; Reason
	// says why (or why not).
	Hanging bool   `json:"hanging"`
	Reason  string `json:"reason"`
}

// Age is how long the transaction has been open at now, 0 when no broker
// said when it started.
func (t OpenTxn) Age(now time.Time) time.Duration {
	if t.Started.IsZero() {
		return 0
	}
	return now.Sub(t.Started)
}

// Held is a partition whose last stable offset is behind its end while no
// broker describes a producer holding it.
type Held struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offsets   `json:"offsets"`
}

// Transactions are the open transactions of some topics' partitions.
type Transactions struct {
	Open []OpenTxn `json:"open"`
	// Held are partitions held back by no described producer. One sample
	// cannot tell such a partition from one whose transaction ended between
	// two requests; StillHeld, over two samples, can.
	Held []Held `json:"held,omitempty"`
}

// Hanging returns the open transactions that hang.
func (ts Transactions) Hanging() []OpenTxn {
	return slices.DeleteFunc(slices.Clone(ts.Open), func(t OpenTxn) bool { return !t.Hanging })
}

// StillHeld returns the partitions held in both ts and later, at the same
// last stable offset, with no producer described in either.
func (ts Transactions) StillHeld(later Transactions) []Held {
	var out []Held
	for _, h := range later.Held {
		for _, e := range ts.Held {
			if e.Topic == h.Topic && e.Partition == h.Partition && e.Stable == h.Stable {
				out = append(out, h)
			}
		}
	}
	return out
}

// Transactions lists, for every partition of topics whose last stable
// offset is behind its end, the transactions that hold it there, and says
// of each whether it hangs (KIP-664's "find-hanging"):
//
//   - the coordinator has no open transaction for the producer, or one that
//     does not include the partition: nothing will ever write its marker;
//   - or it has been open longer than its own timeout: the coordinator
//     should have aborted it and did not.
//
// now is the time the ages are measured at.
func (k Kafka) Transactions(ctx context.Context, topics []string, now time.Time) (Transactions, error) {
	var out Transactions
	if len(topics) == 0 {
		return out, nil
	}
	offsets, err := k.partitionOffsets(ctx, topics)
	if err != nil {
		return out, err
	}
	behind := kadm.TopicsSet{}
	for tp, o := range offsets {
		if o.Stable < o.End {
			behind.Add(tp.topic, tp.partition)
		}
	}
	if len(behind) == 0 {
		return out, nil
	}
	described, err := k.Admin.DescribeProducers(ctx, behind)
	if err != nil {
		return out, fmt.Errorf("describe the producers of %s: %w", strings.Join(behind.Topics(), ", "), err)
	}
	coord, err := k.coordinatorView(ctx, described)
	if err != nil {
		return out, err
	}
	var failed []string
	described.EachPartition(func(p kadm.DescribedProducersPartition) {
		o := offsets[topicPartition{p.Topic, p.Partition}]
		if p.Err != nil {
			failed = append(failed, fmt.Sprintf("%s/%d: %v", p.Topic, p.Partition, p.Err))
			return
		}
		held := false
		p.ActiveProducers.Each(func(d kadm.DescribedProducer) {
			// A producer whose transaction started past the last stable
			// offset does not hold it; one that shows no transaction at
			// all is idle.
			if d.CurrentTxnStartOffset < 0 || d.CurrentTxnStartOffset > o.Stable {
				return
			}
			held = true
			out.Open = append(out.Open, judge(p.Topic, p.Partition, o, d, coord[d.ProducerID], now))
		})
		if !held {
			out.Held = append(out.Held, Held{Topic: p.Topic, Partition: p.Partition, Offsets: o})
		}
	})
	sort.Slice(out.Open, func(i, j int) bool {
		a, b := out.Open[i], out.Open[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.ProducerID < b.ProducerID
	})
	sort.Slice(out.Held, func(i, j int) bool {
		a, b := out.Held[i], out.Held[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	if len(failed) > 0 {
		slices.Sort(failed)
		return out, fmt.Errorf("describe the producers of %s", strings.Join(failed, "; "))
	}
	return out, nil
}

// coordinated is what the transaction coordinator says of a producer.
type coordinated struct {
	txnID   string
	state   string
	started time.Time
	timeout time.Duration
	topics  kadm.TopicsSet
}

// coordinatorView asks the coordinators about the producers described:
// their transactional ids (ListTransactions) and their transactions
// (DescribeTransactions).
func (k Kafka) coordinatorView(ctx context.Context, described kadm.DescribedProducersTopics) (map[int64]coordinated, error) {
	var pids []int64
	described.EachProducer(func(d kadm.DescribedProducer) {
		if !slices.Contains(pids, d.ProducerID) {
			pids = append(pids, d.ProducerID)
		}
	})
	out := map[int64]coordinated{}
	if len(pids) == 0 {
		return out, nil
	}
	listed, err := k.Admin.ListTransactions(ctx, pids, nil)
	if err != nil {
		return nil, fmt.Errorf("list the transactions of producers %v: %w", pids, err)
	}
	var ids []string
	listed.Each(func(l kadm.ListedTransaction) {
		out[l.ProducerID] = coordinated{txnID: l.TxnID, state: l.State}
		ids = append(ids, l.TxnID)
	})
	if len(ids) == 0 {
		return out, nil
	}
	txns, err := k.Admin.DescribeTransactions(ctx, ids...)
	if err != nil {
		return nil, fmt.Errorf("describe transactions %s: %w", strings.Join(ids, ", "), err)
	}
	txns.Each(func(d kadm.DescribedTransaction) {
		if d.Err != nil {
			return
		}
		c := out[d.ProducerID]
		if c.txnID != d.TxnID {
			return // the id moved on to another producer since it was listed
		}
		c.state, c.topics = d.State, d.Topics
		c.timeout = time.Duration(d.TimeoutMillis) * time.Millisecond
		if d.StartTimestamp > 0 {
			c.started = time.UnixMilli(d.StartTimestamp)
		}
		out[d.ProducerID] = c
	})
	return out, nil
}

// judge says whether the transaction of producer d on a partition hangs.
func judge(topic string, partition int32, o Offsets, d kadm.DescribedProducer, c coordinated, now time.Time) OpenTxn {
	t := OpenTxn{
		Topic: topic, Partition: partition, Offsets: o, FirstOffset: d.CurrentTxnStartOffset,
		ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch, CoordinatorEpoch: d.CoordinatorEpoch,
		TransactionalID: c.txnID, CoordinatorState: c.state, Timeout: c.timeout, Started: c.started,
	}
	if t.Started.IsZero() && d.LastTimestamp > 0 {
		t.Started = time.UnixMilli(d.LastTimestamp)
	}
	open := c.state == "Ongoing" || c.state == "PrepareCommit" || c.state == "PrepareAbort"
	switch {
	case c.txnID == "":
		t.Hanging = true
		t.Reason = "no transaction coordinator knows the producer, so nothing will write its marker"
	case !open:
		t.Hanging = true
		t.Reason = fmt.Sprintf("the coordinator of %s has no open transaction (state %s), so nothing will write this one's marker", c.txnID, c.state)
	case c.state == "Ongoing" && len(c.topics) > 0 && !c.topics.Lookup(topic, partition):
		t.Hanging = true
		t.Reason = fmt.Sprintf("the open transaction of %s does not include %s/%d, so its end will not write this partition's marker", c.txnID, topic, partition)
	case c.timeout > 0 && !t.Started.IsZero() && t.Age(now) > c.timeout+hangingGrace:
		t.Hanging = true
		t.Reason = fmt.Sprintf("open for %s, longer than its timeout of %s: the coordinator did not abort it", t.Age(now).Round(time.Second), c.timeout)
	default:
		t.Reason = "in progress"
		if c.timeout > 0 {
			t.Reason = fmt.Sprintf("in progress (timeout %s)", c.timeout)
		}
	}
	return t
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitionOffsets lists the start, last stable and end offsets of every
// partition of topics. A topic that does not exist is left out.
func (k Kafka) partitionOffsets(ctx context.Context, topics []string) (map[topicPartition]Offsets, error) {
	ends, err := k.Admin.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list the end offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	stable, err := k.Admin.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list the last stable offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	starts, err := k.Admin.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list the start offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	out := map[topicPartition]Offsets{}
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := stable.Lookup(e.Topic, e.Partition)
		if e.Err != nil || !ok || s.Err != nil {
			return
		}
		// The last stable offset is listed after the end: a partition
		// written in between shows one past the end it was sampled with.
		o := Offsets{End: e.Offset, Stable: min(s.Offset, e.Offset)}
		if st, ok := starts.Lookup(e.Topic, e.Partition); ok && st.Err == nil {
			o.Start = st.Offset
		}
		out[topicPartition{e.Topic, e.Partition}] = o
	})
	return out, nil
}
