package sink

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
)

const benchRows = 20000

// BenchmarkSinkVsCopy measures, in one run on one server and one table, the
// sink writing benchRows product records (Avro decode, staging COPY, merge,
// offsets; in polls of its default batch size) against a raw pgx COPY of the
// same rows, already decoded, into the same table. For updates the sink
// overwrites every row; COPY cannot update, so its figure is the same rows
// copied into the emptied table, the floor of writing them. Reported:
// sink-rows/s, copy-rows/s and sink/copy.
func BenchmarkSinkVsCopy(b *testing.B) {
	ctx := context.Background()
	store := openStore(b, pgtest.DB(b))
	topics := records.DefaultTopics()
	// The sink is driven batch by batch, never run: its Kafka is not used.
	s, err := New(Options{Deps: component.Deps{Kafka: kafkatest.Start(b).Kafka, Topics: topics, Serde: kafkatest.NewSerde(b)}, Group: "bench", Store: store})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	var offset int64
	// batch encodes benchRows products (version v of each key) as records
	// at the next offsets, and returns their rows as COPY takes them.
	batch := func(v int) ([]*kgo.Record, [][]any) {
		recs := make([]*kgo.Record, benchRows)
		rows := make([][]any, benchRows)
		for i := range recs {
			p := randProduct(rng, fmt.Sprintf("m%d", i%7), fmt.Sprintf("p%d", i), v)
			val, err := s.opts.Serde.Encode(ctx, nil, topics.Products, &p)
			if err != nil {
				b.Fatal(err)
			}
			recs[i] = &kgo.Record{Topic: topics.Products, Key: []byte(p.Key()), Value: val, Offset: offset}
			vals, err := pgstore.ProductValues(p.Key(), &p)
			if err != nil {
				b.Fatal(err)
			}
			rows[i] = append(vals, int32(0), offset)
			offset++
		}
		return recs, rows
	}
	cols := []string{"key", "product_id", "mall_id", "name", "description", "price_amount", "price_currency", "category", "brand", "sku",
		"tags", "images", "stock", "specifications", "created_at", "updated_at", "source_partition", "source_offset"}
	sinkWrite := func(recs []*kgo.Record) time.Duration {
		t0 := time.Now()
		for start := 0; start < len(recs); start += s.opts.BatchSize {
			part := recs[start:min(start+s.opts.BatchSize, len(recs))]
			f := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topics.Products, Partitions: []kgo.FetchPartition{
				{Partition: 0, Records: part, HighWatermark: part[len(part)-1].Offset + 1}}}}}}
			if err := s.handle(ctx, nil, f); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	copyWrite := func(rows [][]any) time.Duration {
		if _, err := store.Pool.Exec(ctx, "TRUNCATE products"); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := store.Pool.CopyFrom(ctx, pgx.Identifier{"products"}, cols, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	s.stored[tp{topics.Products, 0}] = pgstore.NoOffset
	for _, mode := range []string{"inserts", "updates"} {
		b.Run(mode, func(b *testing.B) {
			var sinkTime, copyTime time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				recs, rows := batch(i)
				if mode == "inserts" {
					if _, err := store.Pool.Exec(ctx, "TRUNCATE products"); err != nil {
						b.Fatal(err)
					}
				} else {
					copyWrite(rows) // every key exists: the sink updates them all
				}
				b.StartTimer()
				sinkTime += sinkWrite(recs)
				copyTime += copyWrite(rows)
			}
			var n int
			_ = store.Pool.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n)
			if n != benchRows {
				b.Fatalf("products holds %d rows, want %d", n, benchRows)
			}
			total := float64(b.N * benchRows)
			b.ReportMetric(total/sinkTime.Seconds(), "sink-rows/s")
			b.ReportMetric(total/copyTime.Seconds(), "copy-rows/s")
			b.ReportMetric(copyTime.Seconds()/sinkTime.Seconds(), "sink/copy")
		})
	}
}

// BenchmarkProductRow is the sink's per-record CPU work: Avro decode,
// validation and the row's column values.
func BenchmarkProductRow(b *testing.B) {
	ctx := context.Background()
	serde := kafkatest.NewSerde(b)
	rng := rand.New(rand.NewSource(1))
	p := randProduct(rng, "m1", "p1", 1)
	p.Tags, p.Images, p.Specifications = []string{"a", "b"}, []records.Image{{URL: "http://img/1", Alt: "one"}}, map[string]string{"colour": "red"}
	val, err := serde.Encode(ctx, nil, "shop_products", &p)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := productValues(ctx, serde, p.Key(), val); err != nil {
			b.Fatal(err)
		}
	}
}
