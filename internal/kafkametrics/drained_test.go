package kafkametrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

// An exactly-once consumer that read everything still has the commit and
// abort markers, and the aborted records, after its committed offset: raw
// offset lag that it never reads. The gauge an autoscaler reads and the lag
// `shopstream status` shows (health) both say 0 then; once there is work,
// both say how much, partition by partition.
func TestLagGaugeAndStatusSayZeroOnADrainedExactlyOncePipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := kafkatest.Start(t)
	cl := kc.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	topics := records.DefaultTopics()
	for _, name := range []string{topics.Products, topics.Filtered} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}

	// Shops write in transactions: two at once on partition 0, so that it
	// ends with two commit markers, and one aborted on partition 1.
	shop := func(id string) *kgo.Client {
		tx := kc.Client(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	produce := func(cl *kgo.Client, p int32, n int) {
		t.Helper()
		for i := range n {
			r := &kgo.Record{Topic: topics.Products, Partition: p, Key: []byte(fmt.Sprint(p, "-", i)), Value: []byte("product")}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	end := func(cl *kgo.Client, how kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.EndTransaction(ctx, how); err != nil {
			t.Fatal(err)
		}
	}
	a, b := shop("shop-a"), shop("shop-b")
	produce(a, 0, 3)
	produce(a, 1, 2)
	produce(b, 0, 2)
	end(a, kgo.TryCommit)
	end(b, kgo.TryCommit)
	c := shop("shop-c")
	produce(c, 1, 2)
	end(c, kgo.TryAbort)
	const committed = 7

	// The streamer's shape: consume, produce, and commit the offsets in the
	// same transaction, until everything committed was read.
	const group = "shopstream-streamer"
	sess, err := kc.Kafka.NewGroupTransactSession(
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics.Products), kgo.TransactionalID("streamer-1"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for read := 0; read < committed; {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d committed products before the deadline", read, committed)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctx, &kgo.Record{Topic: topics.Filtered, Key: r.Key, Value: r.Value}, nil)
		})
		if ok, err := sess.End(ctx, kgo.TryCommit); err != nil || !ok {
			t.Fatalf("commit the batch: %v (committed %v)", err, ok)
		}
		read += fs.NumRecords()
	}

	c0, err := New(Options{Admin: adm, Kafka: kc.Kafka, Topics: TopicRoles(topics)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c0)
	k := health.Kafka{Admin: adm, Kafka: kc.Kafka}
	status := func() *health.GroupLag {
		t.Helper()
		lags, err := k.Lags(ctx, []string{group}, nil)
		if err != nil || len(lags) != 1 {
			t.Fatalf("health lags: %v %+v", err, lags)
		}
		return &lags[0]
	}
	gauge := func(lag map[int32]int64) string {
		out := "# HELP shopstream_kafka_consumer_lag_records Records a consumer group has still to read in a partition: the committed records between its committed offset and the last stable offset (transaction markers and aborted records do not count).\n" +
			"# TYPE shopstream_kafka_consumer_lag_records gauge\n"
		for p := range int32(2) {
			out += fmt.Sprintf("shopstream_kafka_consumer_lag_records{group=%q,partition=\"%d\",role=\"products\",topic=%q} %d\n", group, p, topics.Products, lag[p])
		}
		return out
	}
	byPartition := func(g *health.GroupLag) map[int32]int64 {
		out := map[int32]int64{}
		for _, p := range g.Partitions {
			out[p.Partition] = p.Lag
		}
		return out
	}

	drained := status()
	if drained.Raw() < 5 {
		t.Fatalf("raw offset lag %d: want the 3 markers and 2 aborted records after the committed offsets, or the test proves nothing", drained.Raw())
	}
	if drained.Lag() != 0 || drained.Problem(nil, time.Second) != "" {
		t.Errorf("status on the drained pipeline: lag %d, problem %q; want 0 and none", drained.Lag(), drained.Problem(nil, time.Second))
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(gauge(map[int32]int64{0: 0, 1: 0})), "shopstream_kafka_consumer_lag_records"); err != nil {
		t.Errorf("the lag gauge on the drained pipeline: %v", err)
	}

	// Work arrives: 4 products in a transaction on partition 0, 1 outside
	// any on partition 1. The consumer does not poll.
	d := shop("shop-d")
	produce(d, 0, 4)
	end(d, kgo.TryCommit)
	produce(cl, 1, 1)
	busy := status()
	if got := byPartition(busy); got[0] != 4 || got[1] != 1 {
		t.Fatalf("status lag by partition %v, want 0:4 1:1", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(gauge(byPartition(busy))), "shopstream_kafka_consumer_lag_records"); err != nil {
		t.Errorf("the lag gauge disagrees with status: %v", err)
	}
}
