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
		rows:         f.CounterVec("shopstream_sink_rows_written_total", "Rows upserted or deleted in PostgreSQL, after compacting each batch to the last record per key.", "table", "op"),
		records:      f.Counter("shopstream_sink_records_total", "Kafka records whose batch was committed (dead letters included)."),
		batchSeconds: f.Histogram("shopstream_sink_batch_seconds", "Time from a poll's records to its committed transaction (decode, dead letters, COPY, merge, offsets).", prometheus.ExponentialBuckets(0.001, 2, 15)),
		lag:          f.GaugeVec("shopstream_sink_lag_records", "Records in a partition not yet written to PostgreSQL, as of the last batch.", "topic", "partition"),
		dead:         f.CounterVec("shopstream_sink_dead_letters_total", "Records sent to the dead-letter topic, by source topic and class (the reason header: not-framed, invalid, refused, …).", "topic", "class"),
		retries:      f.CounterVec("shopstream_sink_retries_total", "Failed attempts that were retried (PostgreSQL, the schema registry or the dead-letter topic unavailable).", "step"),
		conflicts:    f.Counter("shopstream_sink_offset_conflicts_total", "Batches dropped because another consumer had advanced their partitions' stored offsets."),
		fetchErrors:  f.Counter("shopstream_sink_fetch_errors_total", "Per-partition fetch errors from Kafka."),
		freshness:    freshness.Histogram(f, freshness.Stored()),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
