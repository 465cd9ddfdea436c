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

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/testtool"
)

func TestOffsetsAndLagAsKafkaSeesThem(t *testing.T) {
	ctx := context.Background()
	kc := kafkatest.Start(t)
	cl := kc.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	topics := records.DefaultTopics()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, topics.Products); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topics.DLQ); err != nil {
		t.Fatal(err)
	}
	// 7 products on partition 0, 3 on partition 1, 2 dead letters.
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: topics.Products, Partition: int32(min(i/7, 1)), Value: []byte("p")})
	}
	recs = append(recs, &kgo.Record{Topic: topics.DLQ, Value: []byte("d")}, &kgo.Record{Topic: topics.DLQ, Value: []byte("d")})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A group that read 5 of partition 0 and all of partition 1, and a group
	// on a topic that is not shopstream's.
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topics.Products, Partition: 0, At: 5})
	offs.Add(kadm.Offset{Topic: topics.Products, Partition: 1, At: 3})
	if _, err := adm.CommitOffsets(ctx, "shopstream-sink", offs); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "someone_elses"); err != nil {
		t.Fatal(err)
	}
	var other kadm.Offsets
	other.Add(kadm.Offset{Topic: "someone_elses", Partition: 0, At: 0})
	if _, err := adm.CommitOffsets(ctx, "other-app", other); err != nil {
		t.Fatal(err)
	}

	// A group that only marks something (never consumes) is skipped.
	var marker kadm.Offsets
	marker.Add(kadm.Offset{Topic: topics.Products, Partition: 0, At: 1})
	if _, err := adm.CommitOffsets(ctx, "marker/batch-0", marker); err != nil {
		t.Fatal(err)
	}

	c, err := New(Options{Admin: adm, Kafka: kc.Kafka, Topics: TopicRoles(topics),
		SkipGroup: func(g string) bool { return strings.HasPrefix(g, "marker/") }})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	// The filter topics and the others are not created: no series, no error.
	want := `
# HELP shopstream_kafka_consumer_lag_records Records a consumer group has still to read in a partition: the committed records between its committed offset and the last stable offset (transaction markers and aborted records do not count).
# TYPE shopstream_kafka_consumer_lag_records gauge
shopstream_kafka_consumer_lag_records{group="shopstream-sink",partition="0",role="products",topic="shop_products"} 2
shopstream_kafka_consumer_lag_records{group="shopstream-sink",partition="1",role="products",topic="shop_products"} 0
# HELP shopstream_kafka_partition_end_offset Offset the next record written to a partition will get; its rate is the partition's write rate (transaction markers take offsets too).
# TYPE shopstream_kafka_partition_end_offset gauge
shopstream_kafka_partition_end_offset{partition="0",role="dlq",topic="shop_products_dlq"} 2
shopstream_kafka_partition_end_offset{partition="0",role="products",topic="shop_products"} 7
shopstream_kafka_partition_end_offset{partition="1",role="products",topic="shop_products"} 3
# HELP shopstream_kafka_partition_start_offset First offset still held in a partition (records before it were deleted or compacted away).
# TYPE shopstream_kafka_partition_start_offset gauge
shopstream_kafka_partition_start_offset{partition="0",role="dlq",topic="shop_products_dlq"} 0
shopstream_kafka_partition_start_offset{partition="0",role="products",topic="shop_products"} 0
shopstream_kafka_partition_start_offset{partition="1",role="products",topic="shop_products"} 0
# HELP shopstream_kafka_partition_stuck_seconds How long a partition's last stable offset has stayed at the same offset behind its end (0 when it is at the end or moving): read_committed consumers stop there. Longer than the transaction timeout means a hanging transaction; shopstream kafka hanging names it.
# TYPE shopstream_kafka_partition_stuck_seconds gauge
shopstream_kafka_partition_stuck_seconds{partition="0",role="dlq",topic="shop_products_dlq"} 0
shopstream_kafka_partition_stuck_seconds{partition="0",role="products",topic="shop_products"} 0
shopstream_kafka_partition_stuck_seconds{partition="1",role="products",topic="shop_products"} 0
# HELP shopstream_kafka_scrape_errors_total Scrapes whose Kafka requests failed or timed out (what was read is still exported).
# TYPE shopstream_kafka_scrape_errors_total counter
shopstream_kafka_scrape_errors_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}

	// Records deleted from the dead-letter topic move its start offset: the
	// records it holds are end - start.
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: topics.DLQ, Partition: 0, At: 2})
	if _, err := adm.DeleteRecords(ctx, del); err != nil {
		t.Fatal(err)
	}
	if got := testtool.MetricValue(t, reg, "shopstream_kafka_partition_start_offset", "topic", topics.DLQ); got != 2 {
		t.Fatalf("dead-letter start offset after deleting its records: %v, want 2", got)
	}
}

// A transaction left open keeps its partition's last stable offset in
// place: the stuck time grows from scrape to scrape, and once the
// transaction is older than its timeout the hanging gauge names its
// producer. Its abort marker sets both back.
func TestStuckStableOffsetAndHangingTransaction(t *testing.T) {
	ctx := context.Background()
	kc := kafkatest.Start(t)
	topics := records.DefaultTopics()
	kc.CreateTopic(2, nil, topics.Products)
	adm := kc.Admin()
	open := kc.Client(kgo.TransactionalID("stuck-txn"), kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(ctx, &kgo.Record{Topic: topics.Products, Partition: 1, Value: []byte("p")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A plain write after it: the end moves on, the stable offset cannot.
	plain := kc.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := plain.ProduceSync(ctx, &kgo.Record{Topic: topics.Products, Partition: 1, Value: []byte("p")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := open.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c, err := New(Options{Admin: adm, Kafka: kc.Kafka, Topics: TopicRoles(topics), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	stuck := func() float64 {
		return partitionValue(t, reg, "shopstream_kafka_partition_stuck_seconds", "1")
	}
	if got := stuck(); got != 0 {
		t.Fatalf("first scrape: stuck %vs, want 0", got)
	}
	now = now.Add(30 * time.Second)
	if got := stuck(); got != 30 {
		t.Fatalf("30s on, the stable offset unmoved: stuck %vs, want 30", got)
	}
	if n := testutil.CollectAndCount(c, "shopstream_kafka_hanging_transaction_seconds"); n != 0 {
		t.Fatalf("a transaction within its one-minute timeout: %d hanging series, want none", n)
	}
	now = now.Add(2 * time.Minute)
	labels, age := hangingSeries(t, reg)
	want := map[string]string{"topic": "shop_products", "role": "products", "partition": "1",
		"producer_id": fmt.Sprint(pid), "producer_epoch": fmt.Sprint(epoch), "transactional_id": "stuck-txn"}
	if fmt.Sprint(labels) != fmt.Sprint(want) {
		t.Fatalf("hanging transaction labels %v, want %v", labels, want)
	}
	if age < 150 || age > 200 {
		t.Fatalf("hanging transaction's age %vs, want the 2.5 minutes since it began", age)
	}

	var m kadm.TxnMarkers
	m.ProducerID, m.ProducerEpoch, m.Topics = pid, epoch, kadm.TopicsSet{}
	m.Topics.Add(topics.Products, 1)
	if _, err := adm.WriteTxnMarkers(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := stuck(); got != 0 {
		t.Fatalf("after the abort marker: stuck %vs, want 0", got)
	}
	if n := testutil.CollectAndCount(c, "shopstream_kafka_hanging_transaction_seconds"); n != 0 {
		t.Fatalf("after the abort marker: %d hanging series, want none", n)
	}
}

// hangingSeries returns the labels and value of the one hanging-transaction
// series.
func hangingSeries(t *testing.T, g prometheus.Gatherer) (map[string]string, float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shopstream_kafka_hanging_transaction_seconds" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d hanging transaction series, want 1", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		return labels, m.GetGauge().GetValue()
	}
	t.Fatal("no hanging transaction series gathered")
	return nil, 0
}

// partitionValue reads the gauge name of shop_products' partition.
func partitionValue(t *testing.T, g prometheus.Gatherer, name, partition string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == "shop_products" && labels["partition"] == partition {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("%s{topic=shop_products,partition=%s} not gathered", name, partition)
	return 0
}

// A Kafka that accepts connections and never answers makes a scrape count
// an error within the timeout, instead of hanging /metrics.
func TestScrapeOfAnUnreachableKafkaIsBoundedAndCounted(t *testing.T) {
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: []string{testtool.SilentListener(t)}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := k.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := New(Options{Admin: kadm.NewClient(cl), Kafka: k,
		Topics: TopicRoles(records.DefaultTopics()), Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for i := 1; i <= 2; i++ {
		t0 := time.Now()
		got := testtool.MetricValue(t, reg, "shopstream_kafka_scrape_errors_total")
		if took := time.Since(t0); took > 3*time.Second {
			t.Fatalf("scrape #%d took %s with Kafka silent, want about the 500ms timeout", i, took)
		}
		if got != float64(i) {
			t.Fatalf("after scrape #%d: %v scrape errors, want %d", i, got, i)
		}
	}
}

func TestNewRefusesMissingInput(t *testing.T) {
	if _, err := New(Options{Topics: map[string]string{"a": "products"}}); err == nil {
		t.Fatal("no admin client: want an error")
	}
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Admin: kadm.NewClient(nil), Kafka: k}); err == nil {
		t.Fatal("no topics: want an error")
	}
	if _, err := New(Options{Admin: kadm.NewClient(nil), Topics: map[string]string{"a": "products"}}); err == nil {
		t.Fatal("no Kafka clients for the reader that tells markers from records: want an error")
	}
}

// BenchmarkScrape measures one scrape of the Kafka view on kfake: the eight
// topics of 6 partitions, and four groups with committed offsets.
func BenchmarkScrape(b *testing.B) {
	ctx := context.Background()
	kc := kafkatest.Start(b)
	adm := kc.Admin()
	roles := TopicRoles(records.DefaultTopics())
	for topic := range roles {
		if _, err := adm.CreateTopic(ctx, 6, 1, nil, topic); err != nil {
			b.Fatal(err)
		}
	}
	for _, g := range []string{"shopstream-streamer", "shopstream-recommender", "shopstream-collector", "connect-products"} {
		var offs kadm.Offsets
		for topic := range roles {
			for p := range int32(6) {
				offs.Add(kadm.Offset{Topic: topic, Partition: p, At: 0})
			}
		}
		if _, err := adm.CommitOffsets(ctx, g, offs); err != nil {
			b.Fatal(err)
		}
	}
	c, err := New(Options{Admin: adm, Kafka: kc.Kafka, Topics: roles})
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ResetTimer()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 5 {
			b.Fatalf("gather: %v (%d families)", err, len(mfs))
		}
	}
}
