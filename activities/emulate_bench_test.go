package activities

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/workflows"
)

// BenchmarkEmulateBatch runs the batch activity alone (no Temporal) on an
// in-process broker: generation, encoding, one transaction with its marker.
func BenchmarkEmulateBatch(b *testing.B) {
	for _, size := range []int64{1000, 10_000} {
		b.Run(strconv.FormatInt(size, 10), func(b *testing.B) {
			f := newKafkaFixture(b)
			e := f.emulate(b, nil)
			var s testsuite.WorkflowTestSuite
			s.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(e)
			b.ResetTimer()
			for i := range b.N {
				in := batchInput(int64(i)*size, size)
				in.Batch = int64(i)
				if _, err := env.ExecuteActivity(workflows.ActivityEmulateBatch, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkPlainProduce sends 10000 records generated beforehand through
// one idempotent producer, for comparison with BenchmarkEmulateBatch.
func BenchmarkPlainProduce(b *testing.B) {
	f := newKafkaFixture(b)
	const size = 10_000
	in := batchInput(0, size)
	gen, err := shopgen.New(shopgen.Options{Seed: in.Seed, Shops: in.Shops, ImageBaseURL: in.ImageBaseURL, Now: in.ProductTime})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]kgo.Record, size)
	var p records.Product
	for i := range recs {
		gen.Fill(&p, uint64(i))
		recs[i] = kgo.Record{Topic: testTopic, Key: []byte(p.Key()), Value: shopgen.AppendProductAvro([]byte{0, 0, 0, 0, 1}, &p)}
	}
	cl, err := f.kc.Kafka.NewClient(ProducerOpts()...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	b.ResetTimer()
	for range b.N {
		for i := range recs {
			cl.Produce(context.Background(), &recs[i], nil)
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
