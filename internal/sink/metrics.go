package sink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/telemetry"
)

type metrics struct {
	rows         *prometheus.CounterVec
	records      prometheus.Counter
	batchSeconds prometheus.Histogram
	lag          *prometheus.GaugeVec
	dead         *prometheus.CounterVec
	retries      *prometheus.CounterVec
	conflicts    prometheus.Counter
	fetchErrors  prometheus.Counter
	freshness    prometheus.Histogram // products reaching their row
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	f := telemetry.With(reg)
	m := &metrics{
		rows: f.NewCounterVec(prometheus.CounterOpts{
			Name: "shopstream_sink_rows_written_total",
			Help: "Rows upserted or deleted in PostgreSQL, after compacting each batch to the last record per key.",
		}, []string{"table", "op"}),
		records: f.NewCounter(prometheus.CounterOpts{
			Name: "shopstream_sink_records_total",
			Help: "Kafka records whose batch was committed (dead letters included).",
		}),
		batchSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "shopstream_sink_batch_seconds",
			Help:    "Time from a poll's records to its committed transaction (decode, dead letters, COPY, merge, offsets).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shopstream_sink_lag_records",
			Help: "Records in a partition not yet written to PostgreSQL, as of the last batch.",
		}, []string{"topic", "partition"}),
		dead: f.NewCounterVec(prometheus.CounterOpts{
			Name: "shopstream_sink_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by source topic and class (the reason header: not-framed, invalid, refused, …).",
		}, []string{"topic", "class"}),
		retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "shopstream_sink_retries_total",
			Help: "Failed attempts that were retried (PostgreSQL, the schema registry or the dead-letter topic unavailable).",
		}, []string{"step"}),
		conflicts: f.NewCounter(prometheus.CounterOpts{
			Name: "shopstream_sink_offset_conflicts_total",
			Help: "Batches dropped because another consumer had advanced their partitions' stored offsets.",
		}),
		fetchErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "shopstream_sink_fetch_errors_total",
			Help: "Per-partition fetch errors from Kafka.",
		}),
		freshness: freshness.Histogram(f, freshness.Stored()),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
