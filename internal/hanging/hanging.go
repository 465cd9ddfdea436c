// Package hanging finds and aborts hanging transactions: transactions that
// hold a partition's last stable offset and that nothing will ever end, so
// that every read_committed consumer stops at them. It does what Kafka's
// kafka-transactions.sh (KIP-664) does, with the same requests
// (DescribeProducers, ListTransactions, DescribeTransactions,
// WriteTxnMarkers), and one thing more, for the embedded Kafka (kfake)
// after a crash.
//
// kfake keeps its state on disk, but it writes what it knows of open
// transactions only when it is closed cleanly. After a crash it replays
// its log and treats every transaction it finds without a commit or abort
// marker as aborted, in memory, without writing the abort marker. Readers
// need that marker: a read_committed consumer (franz-go's and Java's alike)
// that is told a transaction of producer P was aborted from offset F skips
// every later record of P until it reads P's abort marker. Producers come
// back with the same producer id (a new epoch) and commit new
// transactions, and readers then skip those too, as far as each fetch
// reaches: committed records vanish for read_committed readers, and an
// exactly-once consumer waits forever for records it never gets. Reading
// the log finds such transactions (Options.Scan), and writing their abort
// markers before any producer writes again repairs the partition
// (Recover); once a producer has written past one, no marker can.
package hanging

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/health"
)

// Where a transaction was found.
const (
	// FromBrokers: the partition's leader describes the producer's open
	// transaction (DescribeProducers).
	FromBrokers = "brokers"
	// FromLog: the log holds transactional records with no marker after
	// them, and no broker holds their transaction open.
	FromLog = "log"
)

// Txn is one producer's transaction on one partition: an open transaction
// as the brokers describe it (health.OpenTxn), or one found in the log,
// with where it was found and how far it reaches.
type Txn struct {
	health.OpenTxn
	// LastOffset is the offset of its last record (-1 when only the
	// brokers were asked).
	LastOffset int64 `json:"last_offset"`
	// Age is how long ago it started (0 when unknown, as for one found in
	// the log).
	Age   time.Duration `json:"age"`
	Found string        `json:"found_in"` // FromBrokers or FromLog
	// Followed says later records of the same producer follow it in the
	// log without a marker between them: readers that start before it skip
	// those records, and an abort marker written now cannot change that.
	Followed bool `json:"followed,omitempty"`
}

// Target says which transactions an abort picks: with One, the one of
// ProducerID on Topic/Partition; otherwise every hanging one open longer
// than OlderThan, and every one found only in the log (its age is unknown).
type Target struct {
	One        bool
	Topic      string
	Partition  int32
	ProducerID int64
	OlderThan  time.Duration
}

// Pick returns the transactions of the report that t names.
func (r Report) Pick(t Target) []Txn {
	var pick []Txn
	for _, x := range r.Txns {
		if t.One && x.Topic == t.Topic && x.Partition == t.Partition && x.ProducerID == t.ProducerID ||
			!t.One && x.Hanging && (x.Started.IsZero() || x.Age > t.OlderThan) {
			pick = append(pick, x)
		}
	}
	return pick
}

// Options say what Find looks at.
type Options struct {
	Admin *kadm.Client
	// Kafka makes the clients that read the logs (Scan).
	Kafka *clients.Kafka
	// Topics are the topics to look at; nil: every topic but Kafka's own.
	Topics []string
	// Scan also reads every partition of the topics from its start, to
	// find transactions that no broker knows of any more (kfake after a
	// crash). It reads all of them: use it on the embedded stack, or on a
	// topic you name.
	Scan bool
	// Now is the clock ages are measured with (time.Now when nil).
	Now func() time.Time
}

// Report is what Find found.
type Report struct {
	// Txns are the transactions found, hanging or not, by topic,
	// partition and producer.
	Txns []Txn `json:"transactions"`
	// Held are partitions whose last stable offset is behind their end
	// while no broker names a producer holding it.
	Held []health.Held `json:"held,omitempty"`
	// Scanned is the number of partitions whose log was read.
	Scanned int `json:"scanned_partitions"`
}

// Hanging returns the transactions that hang.
func (r Report) Hanging() []Txn {
	return slices.DeleteFunc(slices.Clone(r.Txns), func(t Txn) bool { return !t.Hanging })
}

// Find lists the open transactions of the topics' partitions and says of
// each whether it hangs (health.Kafka.Transactions), and, with Scan, the
// transactions left in the logs without a marker.
func Find(ctx context.Context, o Options) (Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	var r Report
	topics, err := topicsOf(ctx, o.Admin, o.Topics)
	if err != nil || len(topics) == 0 {
		return r, err
	}
	now := o.Now()
	k := health.Kafka{Admin: o.Admin, Kafka: o.Kafka}
	open, err := k.Transactions(ctx, topics, now)
	if err != nil {
		return r, err
	}
	r.Held = open.Held
	for _, t := range open.Open {
		r.Txns = append(r.Txns, Txn{OpenTxn: t, LastOffset: -1, Age: t.Age(now), Found: FromBrokers})
	}
	if o.Scan {
		torn, n, err := scan(ctx, o.Kafka, o.Admin, topics, open.Open)
		if err != nil {
			return r, err
		}
		r.Scanned = n
		r.Txns = append(r.Txns, torn...)
	}
	sort.Slice(r.Txns, func(i, j int) bool {
		a, b := r.Txns[i], r.Txns[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		if a.FirstOffset != b.FirstOffset {
			return a.FirstOffset < b.FirstOffset
		}
		return a.ProducerID < b.ProducerID
	})
	return r, nil
}

// topicsOf returns topics, or every topic but Kafka's internal ones.
func topicsOf(ctx context.Context, adm *kadm.Client, topics []string) ([]string, error) {
	if len(topics) > 0 {
		return topics, nil
	}
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var out []string
	for _, d := range listed.Sorted() {
		if d.Err == nil && !d.IsInternal && !strings.HasPrefix(d.Topic, "__") {
			out = append(out, d.Topic)
		}
	}
	return out, nil
}

// Result is the outcome of one abort.
type Result struct {
	Txn
	// Err says why the marker was not written; nil when it was.
	Err error
}

// Abort writes an abort marker for each transaction, as
// `kafka-transactions.sh abort` does: the transaction's records become
// aborted and the partition's last stable offset moves past them. A
// producer still working on one finds its transaction fenced. A
// transaction Followed by later records of its producer is not aborted:
// its marker would come after those records and hide them too.
func Abort(ctx context.Context, adm *kadm.Client, txns []Txn) ([]Result, error) {
	type key struct {
		pid        int64
		epoch      int16
		coordEpoch int32
	}
	markers := map[key]kadm.TopicsSet{}
	var keys []key
	out := make([]Result, len(txns))
	for i, t := range txns {
		out[i].Txn = t
		if t.Followed {
			out[i].Err = fmt.Errorf("later records of producer %d follow it in %s/%d: an abort marker now would hide them too", t.ProducerID, t.Topic, t.Partition)
			continue
		}
		k := key{t.ProducerID, t.ProducerEpoch, t.CoordinatorEpoch}
		if markers[k] == nil {
			markers[k] = kadm.TopicsSet{}
			keys = append(keys, k)
		}
		set := markers[k]
		set.Add(t.Topic, t.Partition)
	}
	if len(keys) == 0 {
		return out, nil
	}
	var req []kadm.TxnMarkers
	for _, k := range keys {
		req = append(req, kadm.TxnMarkers{ProducerID: k.pid, ProducerEpoch: k.epoch, CoordinatorEpoch: k.coordEpoch, Commit: false, Topics: markers[k]})
	}
	resp, err := adm.WriteTxnMarkers(ctx, req...)
	for i := range out {
		if out[i].Followed {
			continue
		}
		t := out[i].Txn
		p, ok := lookupMarker(resp, t)
		switch {
		case ok && p.Err != nil:
			out[i].Err = fmt.Errorf("write the abort marker of producer %d on %s/%d: %w", t.ProducerID, t.Topic, t.Partition, p.Err)
		case !ok && err != nil:
			out[i].Err = fmt.Errorf("write the abort marker of producer %d on %s/%d: %w", t.ProducerID, t.Topic, t.Partition, err)
		case !ok:
			out[i].Err = fmt.Errorf("write the abort marker of producer %d on %s/%d: no answer for the partition", t.ProducerID, t.Topic, t.Partition)
		}
	}
	return out, nil
}

func lookupMarker(resp kadm.TxnMarkersResponses, t Txn) (kadm.TxnMarkersPartitionResponse, bool) {
	m, ok := resp[t.ProducerID]
	if !ok {
		return kadm.TxnMarkersPartitionResponse{}, false
	}
	tr, ok := m.Topics[t.Topic]
	if !ok {
		return kadm.TxnMarkersPartitionResponse{}, false
	}
	p, ok := tr.Partitions[t.Partition]
	return p, ok
}

// Failed returns the results whose abort failed.
func Failed(rs []Result) []Result {
	return slices.DeleteFunc(slices.Clone(rs), func(r Result) bool { return r.Err == nil })
}
