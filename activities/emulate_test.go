package activities

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/workflows"
)

const testTopic = "shop_products"

// kafkaFixture is an in-process Kafka (kfake) with the product topic and an
// in-process schema registry (srfake).
type kafkaFixture struct {
	kc      *kafkatest.Cluster
	cluster *kfake.Cluster
	client  *kgo.Client
	admin   *kadm.Client
	serde   *records.Serde
}

func newKafkaFixture(t testing.TB) *kafkaFixture {
	t.Helper()
	kc := kafkatest.Start(t)
	f := &kafkaFixture{kc: kc, cluster: kc.Fake, client: kc.Client(), serde: kc.Serde}
	f.admin = kadm.NewClient(f.client)
	kc.CreateTopic(3, nil, testTopic)
	return f
}

func (f *kafkaFixture) emulate(t testing.TB, reg prometheus.Registerer) *Emulate {
	t.Helper()
	e, err := NewEmulate(f.kc.Kafka, f.admin, f.serde, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.closeProducers)
	return e
}

// readEachOnce reads every committed record of the topic, as a consumer
// with isolation level read_committed sees them, checks that want distinct
// keys are there once each, and returns the decoded products by key.
func (f *kafkaFixture) readEachOnce(t *testing.T, want int) map[string]records.Product {
	t.Helper()
	products := map[string]records.Product{}
	total := kafkatest.ReadCommitted(t, f.kc.Kafka, testTopic, want, func(r *kgo.Record) {
		var p records.Product
		if err := f.serde.Decode(context.Background(), r.Value, &p); err != nil {
			t.Fatalf("record %s[%d]@%d does not decode as Product: %v", r.Topic, r.Partition, r.Offset, err)
		}
		products[string(r.Key)] = p
	})
	if len(products) != want || total != want {
		t.Fatalf("topic holds %d records with %d distinct keys, want %d of each", total, len(products), want)
	}
	return products
}

func batchInput(first, count int64) workflows.EmulateBatchInput {
	return workflows.EmulateBatchInput{
		WorkflowID: "test-wf", Batch: first / 1000, First: first, Count: count, Topic: testTopic,
		Seed: 11, Shops: 4, ImageBaseURL: "http://127.0.0.1:8080/images",
		ProductTime: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
	}
}

func runBatch(t *testing.T, e *Emulate, in workflows.EmulateBatchInput) (workflows.EmulateBatchResult, error) {
	t.Helper()
	env := activityEnv(e)
	val, err := env.ExecuteActivity(workflows.ActivityEmulateBatch, in)
	var res workflows.EmulateBatchResult
	if err == nil {
		err = val.Get(&res)
	}
	return res, err
}

func TestEmulateBatchCommitsEachRecordOnce(t *testing.T) {
	f := newKafkaFixture(t)
	reg := prometheus.NewRegistry()
	e := f.emulate(t, reg)
	// The first attempt commits but "dies" before it reports, as a worker
	// killed right after the commit would.
	lost := true
	e.afterCommit = func(workflows.EmulateBatchInput) error {
		if lost {
			lost = false
			return errors.New("worker lost after commit")
		}
		return nil
	}
	in := batchInput(2000, 3000)
	if _, err := runBatch(t, e, in); err == nil || !strings.Contains(err.Error(), "worker lost") {
		t.Fatalf("first attempt: got %v, want the injected loss", err)
	}
	res, err := runBatch(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	if !res.AlreadyCommitted || res.Records != 3000 || len(res.Partitions) != 3 {
		t.Fatalf("retry: got %+v, want the earlier commit of 3000 records over 3 partitions", res)
	}
	products := f.readEachOnce(t, 3000)
	// The records are the generator's products for indexes 2000..4999.
	gen, err := shopgen.New(shopgen.Options{Seed: in.Seed, Shops: in.Shops, ImageBaseURL: in.ImageBaseURL, Now: in.ProductTime})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{2000, 3456, 4999} {
		want := gen.Product(i)
		if got, ok := products[want.Key()]; !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("product %d: topic has %+v, want %+v", i, got, want)
		}
	}
	// The end offsets the retry recovered are where the records end.
	ends, err := f.admin.ListEndOffsets(context.Background(), testTopic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		// The log ends with the commit's control record, one past the last
		// data record.
		if got := res.Partitions[o.Partition]; got != o.Offset-1 {
			t.Errorf("partition %d: batch says it ends at %d, log ends at %d", o.Partition, got, o.Offset)
		}
	})
	if got := testutil.ToFloat64(e.metrics.records); got != 3000 {
		t.Errorf("records metric %v, want 3000 (the recovery produced nothing)", got)
	}
	if got := testutil.CollectAndCount(e.metrics.batchSeconds); got != 2 {
		t.Errorf("batch duration series %d, want 2 (failed, recovered)", got)
	}
}

func TestEmulateBatchFencesAZombie(t *testing.T) {
	f := newKafkaFixture(t)
	e := f.emulate(t, nil)
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.beforeCommit = func(workflows.EmulateBatchInput) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(stalled)
			<-release // the first attempt stalls with its records in an open transaction
		}
		return nil
	}
	in := batchInput(0, 2000)
	zombie := make(chan error, 1)
	go func() {
		_, err := runBatch(t, e, in)
		zombie <- err
	}()
	<-stalled
	res, err := runBatch(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyCommitted || res.Records != 2000 {
		t.Fatalf("second attempt: got %+v, want a fresh commit of 2000", res)
	}
	close(release)
	if err := <-zombie; err == nil {
		t.Fatal("the stalled first attempt committed after a newer attempt had fenced it")
	}
	f.readEachOnce(t, 2000)
}

func TestEmulateBatchRetriesAfterBrokerError(t *testing.T) {
	f := newKafkaFixture(t)
	e := f.emulate(t, nil)
	// The broker refuses the first commit as a broken coordinator would; the
	// records of that attempt stay in an open transaction.
	f.cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil, true
	})
	in := batchInput(5000, 1500)
	if _, err := runBatch(t, e, in); err == nil {
		t.Fatal("first attempt succeeded although its commit was refused")
	}
	res, err := runBatch(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyCommitted || res.Records != 1500 {
		t.Fatalf("retry: got %+v", res)
	}
	f.readEachOnce(t, 1500)
}

func TestEmulateBatchWithoutTopic(t *testing.T) {
	f := newKafkaFixture(t)
	e := f.emulate(t, nil)
	in := batchInput(0, 10)
	in.Topic = "no_such_topic"
	_, err := runBatch(t, e, in)
	if err == nil || !strings.Contains(err.Error(), "shopstream bootstrap") {
		t.Fatalf("got %v, want an error that says to bootstrap", err)
	}
}

func TestEmulateCleanupDeletesMarkers(t *testing.T) {
	f := newKafkaFixture(t)
	e := f.emulate(t, nil)
	for _, first := range []int64{0, 1000} {
		if _, err := runBatch(t, e, batchInput(first, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	env := activityEnv(e)
	clean := func() workflows.EmulateCleanupResult {
		val, err := env.ExecuteActivity(workflows.ActivityEmulateCleanup, workflows.EmulateCleanupInput{WorkflowID: "test-wf", FirstBatch: 0, EndBatch: 2})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.EmulateCleanupResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := clean(); res.Deleted != 2 {
		t.Fatalf("cleanup deleted %d markers, want 2", res.Deleted)
	}
	if _, ok, err := e.committedBatch(context.Background(), BatchMarkerGroup("test-wf", 1)); err != nil || ok {
		t.Fatalf("marker of batch 1 after cleanup: found %v, err %v", ok, err)
	}
	if res := clean(); res.Deleted != 0 {
		t.Fatalf("second cleanup deleted %d, want 0", res.Deleted)
	}
}

func TestShopLimitsAgree(t *testing.T) {
	if workflows.MaxEmulateShops != shopgen.MaxShops {
		t.Fatalf("workflows allows %d shops, the generator %d", workflows.MaxEmulateShops, shopgen.MaxShops)
	}
}

// `shopstream dev` creates the topics a moment before the first run: a
// batch must see a topic that did not exist when it last looked.
func TestEmulateBatchSeesANewTopic(t *testing.T) {
	f := newKafkaFixture(t)
	e := f.emulate(t, nil)
	in := batchInput(0, 100)
	in.Topic = "created_late"
	if _, err := runBatch(t, e, in); err == nil {
		t.Fatal("a batch into a missing topic succeeded")
	}
	if _, err := f.admin.CreateTopic(context.Background(), 1, 1, nil, in.Topic); err != nil {
		t.Fatal(err)
	}
	if res, err := runBatch(t, e, in); err != nil || res.Records != 100 {
		t.Fatalf("batch right after the topic was created: %+v, %v", res, err)
	}
}

// countInits counts InitProducerID requests, one per new producer.
func countInits(f *kafkaFixture) *atomic.Int32 {
	var n atomic.Int32
	f.cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

func TestEmulateBatchKeepsTheSlotsProducer(t *testing.T) {
	f := newKafkaFixture(t)
	e := f.emulate(t, nil)
	inits := countInits(f)
	for _, first := range []int64{0, 1000, 2000} {
		if _, err := runBatch(t, e, batchInput(first, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if n := inits.Load(); n != 1 {
		t.Errorf("three batches in one slot initialised %d producers, want 1", n)
	}
	f.assertOnce(t, 3000)
}

func TestEmulateBatchReplacesAFencedProducer(t *testing.T) {
	f := newKafkaFixture(t)
	w1, w2 := f.emulate(t, nil), f.emulate(t, nil) // two workers
	inits := countInits(f)
	if _, err := runBatch(t, w1, batchInput(0, 1000)); err != nil {
		t.Fatal(err)
	}
	// The slot's next batch runs on the other worker, whose new producer
	// fences the one the first worker kept.
	if _, err := runBatch(t, w2, batchInput(1000, 1000)); err != nil {
		t.Fatal(err)
	}
	// The first worker's kept producer is refused; it makes a new one
	// within the same attempt.
	if _, err := runBatch(t, w1, batchInput(2000, 1000)); err != nil {
		t.Fatal(err)
	}
	if n := inits.Load(); n != 3 {
		t.Errorf("%d producers initialised, want 3 (w1, w2, w1 again)", n)
	}
	f.assertOnce(t, 3000)
}

func (f *kafkaFixture) assertOnce(t *testing.T, want int) {
	t.Helper()
	f.readEachOnce(t, want)
}
