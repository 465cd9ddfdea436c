package hanging

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
)

// broker is a kfake cluster keeping its state in a directory, as
// `shopstream dev` runs it.
type broker struct {
	t   *testing.T
	kc  *kafkatest.Cluster
	adm *kadm.Client
}

func startBroker(t *testing.T, dir string) *broker {
	t.Helper()
	kc := kafkatest.Start(t, kafkatest.DataDir(dir))
	return &broker{t: t, kc: kc, adm: kc.Admin()}
}

// crash is what a SIGKILL of the broker's process leaves on disk.
func (b *broker) crash() string { return b.kc.Crash() }

// produce writes n records to each of partitions in one transaction of
// txnID, committed or left open.
func (b *broker) produce(txnID, topic string, partitions []int32, n int, commit bool) *kgo.Client {
	b.t.Helper()
	ctx := context.Background()
	cl, err := b.kc.Kafka.NewClient(kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(cl.Close)
	if err := cl.BeginTransaction(); err != nil {
		b.t.Fatal(err)
	}
	for _, p := range partitions {
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				b.t.Fatal(err)
			}
		}
	}
	if commit {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.t.Fatal(err)
		}
	}
	return cl
}

// readCommitted counts the records a read_committed consumer reads from
// the start of topic, until nothing more comes.
func (b *broker) readCommitted(topic string) int {
	b.t.Helper()
	cl, err := b.kc.Kafka.NewClient(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		got := fs.NumRecords()
		n += got
		if got == 0 {
			return n
		}
	}
}

func (b *broker) createTopic(name string, partitions int32) {
	b.t.Helper()
	if _, err := b.adm.CreateTopic(context.Background(), partitions, 1, nil, name); err != nil {
		b.t.Fatal(err)
	}
}

// The bug: a broker that restarts after a crash forgets the transactions
// open at the crash without writing their abort markers. When the producer
// comes back (same transactional id, so the same producer id) and commits,
// read_committed readers skip what it committed: the broker tells them the
// old transaction was aborted from its first offset, and they skip that
// producer's records until an abort marker that never comes.
func TestCrashHidesCommittedRecordsFromReadCommittedReaders(t *testing.T) {
	ctx := context.Background()
	b := startBroker(t, t.TempDir())
	b.createTopic("products", 2)
	b.produce("emulate-slot-0", "products", []int32{0, 1}, 5, true)  // committed before the crash
	b.produce("emulate-slot-0", "products", []int32{0, 1}, 7, false) // open at the crash
	crashed := b.crash()

	after := startBroker(t, crashed)
	after.produce("emulate-slot-0", "products", []int32{0, 1}, 11, true) // the retry, committed
	if got, want := after.readCommitted("products"), 2*(5+11); got >= want {
		t.Fatalf("read_committed readers see %d of the %d committed records: the bug this package repairs is gone from kfake", got, want)
	}

	// Find names the damage; no marker can repair it now, so Abort refuses.
	r, err := Find(ctx, Options{Admin: after.adm, Kafka: after.kc.Kafka, Topics: []string{"products"}, Scan: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Txns) != 2 || r.Scanned != 2 {
		t.Fatalf("found %+v in %d partitions, want the open transaction on each of the 2 partitions", r.Txns, r.Scanned)
	}
	for _, tx := range r.Txns {
		if !tx.Hanging || !tx.Followed || tx.Found != FromLog || tx.FirstOffset != 6 || tx.LastOffset != 12 {
			t.Errorf("%+v: want a hanging transaction found in the log at offsets 6-12, followed by the producer's later records", tx)
		}
	}
	res, err := Abort(ctx, after.adm, r.Txns)
	if err != nil {
		t.Fatal(err)
	}
	if len(Failed(res)) != 2 {
		t.Errorf("Abort wrote markers after the producer's later records: %+v", res)
	}
}

// The repair: aborting what the crash left open before any producer
// returns writes the markers where readers need them, and every committed
// record is read again.
func TestRecoverBeforeProducersReturnKeepsEveryCommittedRecord(t *testing.T) {
	ctx := context.Background()
	b := startBroker(t, t.TempDir())
	b.createTopic("products", 3)
	b.createTopic("untouched", 1)
	b.produce("emulate-slot-0", "products", []int32{0, 1}, 5, true)
	b.produce("emulate-slot-0", "products", []int32{0, 1}, 7, false)
	b.produce("emulate-slot-1", "products", []int32{2}, 3, false)
	crashed := b.crash()

	after := startBroker(t, crashed)
	rec, err := Recover(ctx, after.adm, after.kc.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Aborted) != 3 || len(rec.Left) != 0 || rec.Scanned != 4 {
		t.Fatalf("recovery aborted %+v, left %+v, scanned %d partitions: want the 3 open transactions aborted in 4 partitions", rec.Aborted, rec.Left, rec.Scanned)
	}
	after.produce("emulate-slot-0", "products", []int32{0, 1}, 11, true)
	after.produce("emulate-slot-1", "products", []int32{2}, 4, true)
	if got, want := after.readCommitted("products"), 2*(5+11)+4; got != want {
		t.Fatalf("read_committed readers see %d records, want the %d committed", got, want)
	}
	again, err := Find(ctx, Options{Admin: after.adm, Kafka: after.kc.Kafka, Scan: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Txns) != 0 {
		t.Errorf("after the recovery, Find still finds %+v", again.Txns)
	}
	if lines := rec.Lines(); len(lines) != 1 || lines[0] != "aborted 3 transactions left open by the crash (products partitions 0,1,2; 2 producers), so read_committed readers go past them" {
		t.Errorf("recovery says %q", lines)
	}
}

// An open transaction of a live producer is not torn: the scan leaves it
// to the brokers' verdict, which is "in progress".
func TestScanLeavesLiveTransactionsToTheBrokers(t *testing.T) {
	ctx := context.Background()
	b := startBroker(t, t.TempDir())
	b.createTopic("products", 1)
	b.produce("streamer-0", "products", []int32{0}, 4, false)
	r, err := Find(ctx, Options{Admin: b.adm, Kafka: b.kc.Kafka, Scan: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Txns) != 1 || r.Txns[0].Found != FromBrokers || r.Txns[0].Hanging || r.Txns[0].TransactionalID != "streamer-0" {
		t.Fatalf("found %+v: want the live transaction of streamer-0, from the brokers, not hanging", r.Txns)
	}
}
