package activities

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type emulateMetrics struct {
	records      prometheus.Counter
	batchSeconds *prometheus.HistogramVec
}

func newEmulateMetrics(reg prometheus.Registerer) (*emulateMetrics, error) {
	m := &emulateMetrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shopstream_emulate_records_produced_total",
			Help: "Products that emulation batches committed to Kafka.",
		}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shopstream_emulate_batch_duration_seconds",
			Help:    "How long an emulation batch activity took, by outcome: committed, recovered (an earlier attempt had committed) or failed.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"outcome"}),
	}
	var err error
	if m.records, err = register(reg, m.records); err != nil {
		return nil, err
	}
	if m.batchSeconds, err = register(reg, m.batchSeconds); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so building the activities twice on one registry is fine.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register emulation metrics: %w", err)
	}
	return c, nil
}
