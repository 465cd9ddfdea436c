package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A transaction left open holds its partition's last stable offset: the
// brokers name its producer, and once it is older than its timeout it
// hangs. Writing its abort marker frees the partition.
func TestTransactionsNameTheProducerHoldingTheStableOffset(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	r.topic("t", 2)
	stuck := r.kc.Client(kgo.TransactionalID("stuck-txn"), kgo.TransactionTimeout(10*time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := stuck.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stuck.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: 0, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	commit := kgo.TryCommit
	r.txn("other", "t", 0, 2, &commit) // offsets 3, 4 and the marker at 5
	r.txn("other", "t", 1, 2, &commit)
	pid, epoch, err := stuck.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	txns, err := r.k.Transactions(ctx, []string{"t"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(txns.Open) != 1 || len(txns.Held) != 0 {
		t.Fatalf("open transactions %+v, held %+v: want the one of stuck-txn on t/0", txns.Open, txns.Held)
	}
	got := txns.Open[0]
	want := OpenTxn{Topic: "t", Partition: 0, Offsets: Offsets{Start: 0, Stable: 0, End: 6}, FirstOffset: 0,
		ProducerID: pid, ProducerEpoch: epoch, TransactionalID: "stuck-txn", CoordinatorState: "Ongoing", Timeout: 10 * time.Minute}
	got.Started, got.Reason = time.Time{}, ""
	if got != want {
		t.Errorf("open transaction\n got %+v\nwant %+v", got, want)
	}
	if txns.Open[0].Hanging || len(txns.Hanging()) != 0 {
		t.Errorf("a transaction well within its timeout hangs: %+v", txns.Open[0])
	}
	if age := txns.Open[0].Age(time.Now()); age < 0 || age > time.Minute {
		t.Errorf("age %s: want the few moments since it began", age)
	}

	later, err := r.k.Transactions(ctx, []string{"t"}, time.Now().Add(11*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	h := later.Hanging()
	if len(h) != 1 || !strings.Contains(h[0].Reason, "longer than its timeout of 10m0s") {
		t.Fatalf("eleven minutes on: hanging %+v, want stuck-txn's, open longer than its timeout", later.Open)
	}

	// Aborting it as `kafka abort-hanging` does moves the stable offset on.
	var m kadm.TxnMarkers
	m.ProducerID, m.ProducerEpoch, m.Topics = pid, epoch, kadm.TopicsSet{}
	m.Topics.Add("t", 0)
	if _, err := r.adm.WriteTxnMarkers(ctx, m); err != nil {
		t.Fatal(err)
	}
	after, err := r.k.Transactions(ctx, []string{"t"}, time.Now().Add(11*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Open) != 0 || len(after.Held) != 0 {
		t.Errorf("after the abort marker: open %+v, held %+v; want none", after.Open, after.Held)
	}
}

// The verdict for what a partition's leader and the coordinator say.
func TestJudgeSaysWhyATransactionHangs(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d := kadm.DescribedProducer{ProducerID: 7, ProducerEpoch: 2, CurrentTxnStartOffset: 10, LastTimestamp: now.Add(-time.Hour).UnixMilli()}
	inTxn := kadm.TopicsSet{}
	inTxn.Add("t", 0)
	other := kadm.TopicsSet{}
	other.Add("t", 1)
	for i, c := range []struct {
		c       coordinated
		hanging bool
		reason  string
	}{
		{coordinated{}, true, "no transaction coordinator knows the producer"},
		{coordinated{txnID: "a", state: "CompleteAbort"}, true, "has no open transaction (state CompleteAbort)"},
		{coordinated{txnID: "a", state: "Empty"}, true, "has no open transaction (state Empty)"},
		{coordinated{txnID: "a", state: "Ongoing", topics: other, timeout: time.Hour, started: now}, true, "does not include t/0"},
		{coordinated{txnID: "a", state: "Ongoing", topics: inTxn, timeout: time.Minute, started: now.Add(-2 * time.Minute)}, true, "open for 2m0s, longer than its timeout of 1m0s"},
		{coordinated{txnID: "a", state: "Ongoing", topics: inTxn, timeout: time.Minute, started: now.Add(-30 * time.Second)}, false, "in progress (timeout 1m0s)"},
		{coordinated{txnID: "a", state: "PrepareCommit", timeout: time.Minute, started: now.Add(-50 * time.Second)}, false, "in progress"},
	} {
		got := judge("t", 0, Offsets{Stable: 10, End: 20}, d, c.c, now)
		if got.Hanging != c.hanging || !strings.Contains(got.Reason, c.reason) {
			t.Errorf("#%d: hanging %v (%s), want %v (%s)", i, got.Hanging, got.Reason, c.hanging, c.reason)
		}
	}
	if got := judge("t", 0, Offsets{}, d, coordinated{}, now); !got.Started.Equal(now.Add(-time.Hour)) {
		t.Errorf("with no coordinator, the start is the leader's last write: got %s", got.Started)
	}
}
