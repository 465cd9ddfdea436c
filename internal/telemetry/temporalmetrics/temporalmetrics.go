// Package temporalmetrics exposes the Temporal SDK's own metrics on a
// Prometheus registry. It is apart from package telemetry so that the
// packages that register their metrics through telemetry (the streamer's hot
// path among them) do not depend on the Temporal SDK.
package temporalmetrics

import (
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// Handler returns a metrics handler that exposes the Temporal SDK's
// own metrics (temporal_workflow_task_execution_latency_seconds,
// temporal_activity_execution_failed_total, …) on reg, under the names
// Temporal's published dashboards use. Close the returned closer on exit.
func Handler(reg prometheus.Registerer) (client.MetricsHandler, io.Closer) {
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer: reg,
		// Histograms, not summaries: they aggregate across instances.
		DefaultTimerType: tallyprom.HistogramTimerType,
		DefaultHistogramBuckets: []float64{
			0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
		// tally's own tally_internal_*_cardinality gauges describe tally,
		// not the worker, and break Prometheus' naming lint.
		OmitCardinalityMetrics: true,
	}, time.Second)
	return sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)), closer
}
