// Package freshness says how fresh the pipeline's output is: for each stage
// a product reaches (filtered, recommendable, a row in PostgreSQL, complete
// with its images) a histogram of the seconds from its creation (its Kafka
// record timestamp in the product topic) to that stage, and one from a
// search prompt to its recommendation. Each component observes its own
// stage on the histogram this package builds, so that every stage has the
// same buckets and the same shape of name; `shopstream status` reads them
// back from the processes' /metrics (Scrape) and shows p50 and p99 per
// stage, and the dashboards and the freshness alert query them.
//
// A record that the filter backfill writes keeps the timestamp of the
// product it copies: its age is the age of the history re-read, not of the
// pipeline, so the stages after the filter leave it out.
package freshness

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// Stage is one point a product or a prompt reaches, and the histogram
// that measures how long it takes to get there.
type Stage struct {
	// Key names the stage in the freshness alert's stage label; Name says
	// what it is, as status shows it.
	Key  string
	Name string
	// Metric is the histogram's name; Help its help text.
	Metric string
	Help   string
}

// Stages lists every stage, in the order a product passes them, then a
// search's.
func Stages() []Stage {
	return []Stage{
		// The streamer committed the product's copy in the filtered topic.
		{"filtered", "product created to filtered", "shopstream_streamer_product_freshness_seconds",
			"From a product record's timestamp to the commit of its copy in the filtered topic."},
		// The product is in the recommender's join table, from where the
		// next matching search recommends it.
		{"recommended", "product created to recommendable", "shopstream_recommender_product_freshness_seconds",
			"From a filtered product's record timestamp to its arrival in the recommender's join table, from where the next matching search recommends it (backfilled records and the table's catch-up at start left out)."},
		// The sink committed the product's row in PostgreSQL.
		{"stored", "product created to its row in PostgreSQL", "shopstream_sink_product_freshness_seconds",
			"From a product record's timestamp to the commit of its row in PostgreSQL."},
		// The collector committed the complete product, every image collected.
		{"complete", "product created to complete with images", "shopstream_collector_product_freshness_seconds",
			"From a product record's timestamp to the commit of its complete product, every image collected."},
		// The recommender committed the recommendation a search prompt produced.
		{"prompted", "search to recommendation", "shopstream_recommender_prompt_freshness_seconds",
			"From a search prompt's record timestamp to the commit of the recommendation it produced."},
	}
}

// Each stage by name, as the component that reaches it builds its histogram.
func Filtered() Stage      { return Stages()[0] }
func Recommendable() Stage { return Stages()[1] }
func Stored() Stage        { return Stages()[2] }
func Complete() Stage      { return Stages()[3] }
func Prompted() Stage      { return Stages()[4] }

// DefaultThreshold is the p99 beyond which the freshness alert fires (for
// 5 minutes); dashboards/alerts.yml holds it as a literal.
const DefaultThreshold = 5 * time.Second

// Buckets are every freshness histogram's: fine below a second, where a
// healthy pipeline is, and up to ten minutes, where a stalled one goes.
func Buckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
}

// Histogram builds stage's histogram on f.
func Histogram(f *telemetry.Factory, s Stage) prometheus.Histogram {
	return f.Histogram(s.Metric, s.Help, Buckets())
}

// Observe records that a record with timestamp ts reached the stage at
// now; a clock that runs behind the producer's counts as no delay.
func Observe(h prometheus.Observer, now, ts time.Time) {
	h.Observe(max(now.Sub(ts).Seconds(), 0))
}

// AgedProduct is a recommended product with its age: the seconds since the
// search that recommended it.
type AgedProduct struct {
	records.RecommendedProduct
	AgeSeconds float64 `json:"age_seconds"`
}

// AgedRecommendation is a user's recommendations as `recs --json` prints
// them: each product with its age, and the age of the last search.
type AgedRecommendation struct {
	*records.Recommendation
	Products   []AgedProduct `json:"products"`
	AgeSeconds float64       `json:"age_seconds"`
}

// Aged adds the ages, as of now, to rec.
func Aged(rec *records.Recommendation, now time.Time) AgedRecommendation {
	out := AgedRecommendation{Recommendation: rec, Products: make([]AgedProduct, 0, len(rec.Products)),
		AgeSeconds: max(now.Sub(rec.LastSearchedAt).Seconds(), 0)}
	for _, p := range rec.Products {
		out.Products = append(out.Products, AgedProduct{RecommendedProduct: p, AgeSeconds: max(now.Sub(p.RecommendedAt).Seconds(), 0)})
	}
	return out
}
