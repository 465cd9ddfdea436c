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
	m := &metrics{
		prompts: f.CounterVec("shopstream_recommender_prompts_total",
			"Search prompts joined and committed, by whether any product matched.", "result"),
		matches: f.Counter("shopstream_recommender_matches_total",
			"Products recommended (one per matching product per prompt)."),
		joinLatency: freshness.Histogram(f, freshness.Prompted()),
		freshness:   freshness.Histogram(f, freshness.Recommendable()),
		tableProducts: f.Gauge("shopstream_recommender_table_products",
			"Filtered products in this instance's table."),
		tableNames: f.Gauge("shopstream_recommender_table_names",
			"Distinct normalised names in this instance's table."),
		tableCaughtUp: f.Gauge("shopstream_recommender_table_caught_up",
			"1 once the table has read the filtered topic up to the end offsets it found at start; prompts are joined only then."),
		catchUp: f.Gauge("shopstream_recommender_table_catch_up_seconds",
			"How long the table took to read the filtered topic up to its end offsets at start."),
		deadLetters: f.CounterVec("shopstream_recommender_dead_letters_total",
			"Records sent to the dead-letter topic, by input and reason.", "source", "reason"),
		transactions: f.CounterVec("shopstream_recommender_transactions_total",
			"Transactions ended, by result (aborted: a rebalance or an error; the prompts are joined again).", "result"),
		users: f.Gauge("shopstream_recommender_users",
			"Users whose recommendations this instance holds (those of its assigned partitions)."),
		restores: f.Counter("shopstream_recommender_partition_restores_total",
			"Partitions whose users' recommendations were restored from the recommendations topic."),
		evicted: f.Counter("shopstream_recommender_users_evicted_total",
			"Users forgotten because the instance held more than its maximum; their state stays in the recommendations topic."),
		recalled: f.Counter("shopstream_recommender_users_recalled_total",
			"Forgotten users whose recommendation was read back from the recommendations topic for a new prompt."),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
