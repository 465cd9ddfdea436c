package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A component built twice on one registry shares its series: the second
// build's counter is the first one's, so /metrics shows one total.
func TestFactoryReusesAnIdenticalMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "shopstream_sink_records_total", Help: "Records."}
	build := func() prometheus.Counter {
		f := With(reg)
		c := f.NewCounter(opts)
		if err := f.Err(); err != nil {
			t.Fatalf("register: %v", err)
		}
		return c
	}
	build().Add(2)
	build().Add(3)
	if got := testutil.ToFloat64(build()); got != 5 {
		t.Fatalf("counter after two builds = %v, want 5 (one shared series)", got)
	}
	if n, err := testutil.GatherAndCount(reg, "shopstream_sink_records_total"); err != nil || n != 1 {
		t.Fatalf("gathered %d series (%v), want 1", n, err)
	}
}

// A name taken by another metric is an error that names the metric, not a
// panic; the other metrics of the same factory are still registered.
func TestFactoryReportsACollision(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "shopstream_api_requests_total", Help: "Taken."})); err != nil {
		t.Fatal(err)
	}
	f := With(reg)
	f.NewCounterVec(prometheus.CounterOpts{Name: "shopstream_api_requests_total", Help: "Requests."}, []string{"code"})
	f.NewHistogram(prometheus.HistogramOpts{Namespace: "shopstream", Subsystem: "api", Name: "request_seconds", Help: "Time."})
	err := f.Err()
	if err == nil || !strings.Contains(err.Error(), "register metric shopstream_api_requests_total") {
		t.Fatalf("Err() = %v, want an error naming shopstream_api_requests_total", err)
	}
	if n, _ := testutil.GatherAndCount(reg, "shopstream_api_request_seconds"); n != 1 {
		t.Fatalf("the histogram after the collision was not registered (%d series)", n)
	}
}

// An identical description of another type is not reused: a gauge handed
// out as a counter would go down.
func TestRegisterRefusesAnotherTypeUnderTheSameDescription(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.Opts{Name: "shopstream_recommender_users", Help: "Users."}
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts(opts))); err != nil {
		t.Fatal(err)
	}
	if _, err := Register[prometheus.Counter](reg, prometheus.NewCounter(prometheus.CounterOpts(opts))); err == nil {
		t.Fatal("a counter was registered over a gauge of the same description")
	}
}

// A nil registerer registers nowhere, as promauto.With(nil) did.
func TestFactoryWithoutRegisterer(t *testing.T) {
	f := With(nil)
	c := f.NewGaugeVec(prometheus.GaugeOpts{Name: "shopstream_sink_lag_records", Help: "Lag."}, []string{"topic"})
	c.WithLabelValues("t").Set(4)
	if err := f.Err(); err != nil || testutil.ToFloat64(c.WithLabelValues("t")) != 4 {
		t.Fatalf("Err() = %v, value %v", err, testutil.ToFloat64(c.WithLabelValues("t")))
	}
}
