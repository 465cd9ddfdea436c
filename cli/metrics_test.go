package main

import (
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/shopstream/shopstream/internal/telemetry"
)

// Every process's metrics pass client_golang's Prometheus lint and
// shopstream's vocabulary (telemetry.CheckMetricName), and each process
// exposes the components it hosts.
func TestMetricsLintAndVocabulary(t *testing.T) {
	hosts := map[string][]string{
		"worker":    {"shopstream_emulate_", "shopstream_filter_", "shopstream_kafka_", "temporal_"},
		"streamer":  {"shopstream_streamer_", "shopstream_recommender_", "shopstream_streamer_kafka_"},
		"sink":      {"shopstream_sink_"},
		"collector": {"shopstream_collector_"},
		"api":       {"shopstream_api_"},
	}
	for _, p := range exposedMetrics(t) {
		t.Run(p.process, func(t *testing.T) {
			families := p.lintFamilies()
			problems, err := testutil.GatherAndLint(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil }))
			if err != nil {
				t.Fatal(err)
			}
			for _, pr := range problems {
				t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
			}
			kinds := p.kinds()
			var names []string
			for name := range kinds {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				if !strings.HasPrefix(name, "shopstream_") {
					continue
				}
				if kinds[name] == "" {
					t.Errorf("%s is registered but neither gathered nor a vector of a known kind", name)
					continue
				}
				if err := telemetry.CheckMetricName(name, kinds[name]); err != nil {
					t.Error(err)
				}
			}
			for _, prefix := range hosts[p.process] {
				found := false
				for _, name := range names {
					found = found || strings.HasPrefix(name, prefix)
				}
				if !found {
					t.Errorf("the %s exposes no %s* metric (it exposes %v)", p.process, prefix, names)
				}
			}
		})
	}
}
