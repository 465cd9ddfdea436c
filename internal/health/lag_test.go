package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
)

type rig struct {
	t   *testing.T
	kc  *kafkatest.Cluster
	cl  *kgo.Client
	adm *kadm.Client
	k   Kafka
}

func newRig(t *testing.T) *rig {
	t.Helper()
	kc := kafkatest.Start(t)
	r := &rig{t: t, kc: kc, cl: kc.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))}
	r.adm = kadm.NewClient(r.cl)
	r.k = Kafka{Admin: r.adm, Kafka: kc.Kafka}
	return r
}

func (r *rig) topic(name string, partitions int32) {
	r.t.Helper()
	if _, err := r.adm.CreateTopic(context.Background(), partitions, 1, nil, name); err != nil {
		r.t.Fatal(err)
	}
}

// txn writes n records to a partition in one transaction, ended as told
// (nil: left open, the producer returned to end it later).
func (r *rig) txn(id, topic string, p int32, n int, end *kgo.TransactionEndTry) *kgo.Client {
	r.t.Helper()
	ctx := context.Background()
	tx := r.kc.Client(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := tx.BeginTransaction(); err != nil {
		r.t.Fatal(err)
	}
	for range n {
		if err := tx.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			r.t.Fatal(err)
		}
	}
	if end != nil {
		if err := tx.EndTransaction(ctx, *end); err != nil {
			r.t.Fatal(err)
		}
	}
	return tx
}

func (r *rig) plain(topic string, p int32, n int) {
	r.t.Helper()
	for range n {
		if err := r.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) commit(group, topic string, p int32, at int64) {
	r.t.Helper()
	var o kadm.Offsets
	o.Add(kadm.Offset{Topic: topic, Partition: p, At: at, LeaderEpoch: -1})
	if _, err := r.adm.CommitOffsets(context.Background(), group, o); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) lags(groups ...string) map[string]*GroupLag {
	r.t.Helper()
	ls, err := r.k.Lags(context.Background(), groups, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]*GroupLag{}
	for i := range ls {
		out[ls[i].Group] = &ls[i]
	}
	return out
}

var commit, abort = kgo.TryCommit, kgo.TryAbort

// A group committed after the last record of a transaction lags by the
// commit marker only: that is caught up. One committed a record earlier
// still has that record to read.
func TestLagTellsMarkersFromRecords(t *testing.T) {
	r := newRig(t)
	r.topic("t", 1)
	r.txn("tx", "t", 0, 3, &commit) // records at 0-2, the commit marker at 3
	r.commit("caught-up", "t", 0, 3)
	r.commit("one-behind", "t", 0, 2)
	got := r.lags("caught-up", "one-behind")
	for group, want := range map[string][2]int64{"caught-up": {0, 1}, "one-behind": {1, 2}} {
		g := got[group]
		if g == nil || g.Lag() != want[0] || g.Raw() != want[1] {
			t.Errorf("%s: %+v, want lag %d of raw %d", group, g, want[0], want[1])
		}
	}
}

// Aborted records and their marker are never read; an open transaction's
// records are not readable yet; a large lag is counted as offsets.
func TestLagLeavesOutAbortedAndOpenTransactions(t *testing.T) {
	r := newRig(t)
	r.topic("t", 3)
	// Partition 0: 2 records, 4 aborted ones and their marker.
	r.plain("t", 0, 2)
	r.txn("a", "t", 0, 4, &abort)
	// Partition 1: a record, then a transaction left open.
	r.plain("t", 1, 1)
	r.txn("open", "t", 1, 5, nil)
	// Partition 2: more than MarkerProbeMax committed in transactions.
	for i := range 3 {
		r.txn(fmt.Sprint("big", i), "t", 2, 30, &commit)
	}
	for p := range int32(3) {
		r.commit("g", "t", p, 0)
	}
	g := r.lags("g")["g"]
	want := "t/0 lag 2 raw 7; t/1 lag 1 raw 6; t/2 lag 93 raw 93"
	var got []string
	for _, p := range g.Partitions {
		got = append(got, fmt.Sprintf("%s/%d lag %d raw %d", p.Topic, p.Partition, p.Lag, p.Raw()))
	}
	if strings.Join(got, "; ") != want {
		t.Fatalf("lags: %s\nwant:  %s", strings.Join(got, "; "), want)
	}
	if p := g.Partitions[1]; p.Stable != 1 || p.End != 6 {
		t.Errorf("partition 1 offsets %+v: want stable 1 (held by the open transaction), end 6", p.Offsets)
	}
	if g.Lag() != 96 || g.LagByTopic()["t"] != 96 {
		t.Errorf("group lag %d, by topic %v; want 96", g.Lag(), g.LagByTopic())
	}
}

// Only the topics asked for are measured (and read).
func TestLagOfChosenTopics(t *testing.T) {
	r := newRig(t)
	r.topic("ours", 1)
	r.topic("theirs", 1)
	r.plain("ours", 0, 2)
	r.plain("theirs", 0, 5)
	r.commit("g", "ours", 0, 0)
	r.commit("g", "theirs", 0, 0)
	ls, err := r.k.Lags(context.Background(), []string{"g"}, func(t string) bool { return t == "ours" })
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || len(ls[0].Partitions) != 1 || ls[0].Partitions[0].Topic != "ours" || ls[0].Lag() != 2 {
		t.Fatalf("lags %+v, want only ours with lag 2", ls)
	}
	if ls, err := r.k.Lags(context.Background(), nil, nil); err != nil || ls != nil {
		t.Fatalf("no group named: %v %v, want none (not every group)", ls, err)
	}
}

func TestGroupProblems(t *testing.T) {
	lagging := func(members int, committed int64) *GroupLag {
		return &GroupLag{Group: "g", Members: members, Partitions: []PartitionLag{
			{Topic: "t", Committed: committed, Offsets: Offsets{Stable: 10, End: 10}, Lag: 10 - committed},
		}}
	}
	for i, c := range []struct {
		now, prev *GroupLag
		want      string
	}{
		{lagging(1, 4), nil, ""},
		{lagging(0, 4), nil, "group g has lag 6 and no members: is its process running?"},
		{lagging(1, 4), lagging(1, 4), "group g is stuck: lag 6 and no offset committed in 2s"},
		{lagging(1, 5), lagging(1, 4), ""}, // commits as it goes
		{lagging(1, 10), lagging(1, 10), ""},
		{&GroupLag{Group: "g", Err: errors.New("coordinator not available")}, nil, "group g: coordinator not available"},
	} {
		if got := c.now.Problem(c.prev, 2*time.Second); got != c.want {
			t.Errorf("#%d: %q, want %q", i, got, c.want)
		}
	}
}
