package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/pgstore"
)

// A sink that dies after it sent a batch's dead letters and before the
// batch committed (found by the fault suite, seed 7) leaves the records to
// be read again; the sink that reads them finds the letters already sent
// and does not send them twice.
func TestSinkSendsADeadLetterOnceWhenItDiedAfterSendingIt(t *testing.T) {
	afterADeath(t, func(r *rig, store *pgstore.Store, _ *kgo.Record) {
		s := r.newSink(t, store, nil)
		ctx, cancel := context.WithCancel(context.Background())
		s.afterDeadLetters = func() error {
			cancel() // dies here: the batch is rolled back and nothing more runs
			return context.Canceled
		}
		if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		if n := len(lettersOf(t, r)); n != 1 {
			t.Fatalf("the first sink sent %d dead letters, want 1", n)
		}
	})
}

// One that dies after it recorded the letters it owes and before it sent
// them leaves them owed, and the next sink sends them once.
func TestSinkSendsADeadLetterOnceWhenItDiedBeforeSendingIt(t *testing.T) {
	afterADeath(t, func(_ *rig, store *pgstore.Store, bad *kgo.Record) {
		src := pgstore.SourceRecord{Topic: bad.Topic, Partition: bad.Partition, Offset: bad.Offset}
		if _, err := store.OweDeadLetters(context.Background(), testGroup, []pgstore.SourceRecord{src}, time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

// afterADeath produces a bad record and a good one, lets died do what a
// sink that died on them did, then runs a sink until both are written: the
// dead-letter topic holds the sink's one letter of the bad record, and no
// dead letter is left owed.
func afterADeath(t *testing.T, died func(r *rig, store *pgstore.Store, bad *kgo.Record)) {
	r := newRig(t, 1)
	store := openStore(t, pgtest.DB(t))
	ctx := context.Background()
	bad := &kgo.Record{Topic: r.topics.Products, Key: []byte("m/bad"), Value: []byte("not framed")}
	p := randProductFixed("m", "1", 1)
	v, err := r.serde.Encode(ctx, nil, r.topics.Products, &p)
	if err != nil {
		t.Fatal(err)
	}
	good := &kgo.Record{Topic: r.topics.Products, Key: []byte(p.Key()), Value: v}
	if err := r.prod.ProduceSync(ctx, bad, good).FirstErr(); err != nil {
		t.Fatal(err)
	}
	died(r, store, bad)
	_, stop := runInBackground(t, r, store, nil)
	w := newWorld()
	w.ends = map[string]map[int32]int64{r.topics.Products: {0: 2}}
	waitCaughtUp(t, store, w, 30*time.Second)
	stop()
	letters := lettersOf(t, r)
	if len(letters) != 1 || letters[0].SourceOffset != bad.Offset || letters[0].Component != "sink" {
		t.Errorf("dead-letter topic holds %+v, want the sink's one letter of offset %d", letters, bad.Offset)
	}
	var owed int
	if err := store.Pool.QueryRow(ctx, "SELECT count(*) FROM sink_dead_letters").Scan(&owed); err != nil || owed != 0 {
		t.Errorf("%d rows left in sink_dead_letters (err %v), want none once the batch committed", owed, err)
	}
}

// lettersOf reads the whole dead-letter topic.
func lettersOf(t *testing.T, r *rig) []deadletter.Letter {
	t.Helper()
	letters, err := deadletter.Read(context.Background(), r.kc.Kafka, r.topics.DLQ, 100)
	if err != nil {
		t.Fatal(err)
	}
	return letters
}
