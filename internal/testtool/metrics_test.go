package testtool

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The value of a family is the sum of its matching series: all of them
// without labels, one label or several, a histogram by its count.
func TestMetricValueAddsTheMatchingSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rows_total", Help: "Rows."}, []string{"table", "op"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "latency_seconds", Help: "Latency."})
	reg.MustRegister(rows, latency)
	rows.WithLabelValues("products", "upsert").Add(3)
	rows.WithLabelValues("products", "delete").Add(1)
	rows.WithLabelValues("searches", "upsert").Add(5)
	latency.Observe(0.1)
	latency.Observe(0.2)
	for i, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"rows_total", nil, 9},
		{"rows_total", []string{"table", "products"}, 4},
		{"rows_total", []string{"table", "products", "op", "upsert"}, 3},
		{"rows_total", []string{"table", "orders"}, 0},
		{"latency_seconds", nil, 2},
		{"no_such_total", nil, 0},
	} {
		if got := MetricValue(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("#%d: MetricValue(%s, %q) = %v, want %v", i, c.name, c.labels, got, c.want)
		}
	}
}
