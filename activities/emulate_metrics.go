package activities

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/telemetry"
)

type emulateMetrics struct {
	records      prometheus.Counter
	batchSeconds *prometheus.HistogramVec
}

func newEmulateMetrics(reg prometheus.Registerer) (*emulateMetrics, error) {
	// Building the activities twice on one registry shares the series.
	f := telemetry.With(reg)
	m := &emulateMetrics{
		records:      f.Counter("shopstream_emulate_records_produced_total", "Products that emulation batches committed to Kafka."),
		batchSeconds: f.HistogramVec("shopstream_emulate_batch_duration_seconds", "How long an emulation batch activity took, by outcome: committed, recovered (an earlier attempt had committed) or failed.", prometheus.ExponentialBuckets(0.01, 2, 14), "outcome"),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
