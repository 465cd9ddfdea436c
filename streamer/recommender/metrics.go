package recommender

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/telemetry"
)

type metrics struct {
	prompts       *prometheus.CounterVec // result: matched, unmatched
	matches       prometheus.Counter
	joinLatency   prometheus.Histogram
	freshness     prometheus.Histogram // filtered products reaching the table
	tableProducts prometheus.Gauge
	tableNames    prometheus.Gauge
	tableCaughtUp prometheus.Gauge
	catchUp       prometheus.Gauge
	deadLetters   *prometheus.CounterVec // source: prompts, products; reason
	transactions  *prometheus.CounterVec // result: committed, aborted
	users         prometheus.Gauge
	restores      prometheus.Counter
	evicted       prometheus.Counter
	recalled      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	f := telemetry.With(reg)
	const ns, sub = "shopstream", "recommender"
	m := &metrics{
		prompts: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "prompts_total",
			Help: "Search prompts joined and committed, by whether any product matched."}, []string{"result"}),
		matches: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "matches_total",
			Help: "Products recommended (one per matching product per prompt)."}),
		joinLatency: freshness.Histogram(f, freshness.Prompted()),
		freshness:   freshness.Histogram(f, freshness.Recommendable()),
		tableProducts: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "table_products",
			Help: "Filtered products in this instance's table."}),
		tableNames: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "table_names",
			Help: "Distinct normalised names in this instance's table."}),
		tableCaughtUp: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "table_caught_up",
			Help: "1 once the table has read the filtered topic up to the end offsets it found at start; prompts are joined only then."}),
		catchUp: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "table_catch_up_seconds",
			Help: "How long the table took to read the filtered topic up to its end offsets at start."}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Records sent to the dead-letter topic, by input and reason."}, []string{"source", "reason"}),
		transactions: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "transactions_total",
			Help: "Transactions ended, by result (aborted: a rebalance or an error; the prompts are joined again)."}, []string{"result"}),
		users: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "users",
			Help: "Users whose recommendations this instance holds (those of its assigned partitions)."}),
		restores: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "partition_restores_total",
			Help: "Partitions whose users' recommendations were restored from the recommendations topic."}),
		evicted: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "users_evicted_total",
			Help: "Users forgotten because the instance held more than its maximum; their state stays in the recommendations topic."}),
		recalled: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "users_recalled_total",
			Help: "Forgotten users whose recommendation was read back from the recommendations topic for a new prompt."}),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
