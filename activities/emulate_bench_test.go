package activities

import (
	"strconv"
	"testing"

	"go.temporal.io/sdk/testsuite"

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
