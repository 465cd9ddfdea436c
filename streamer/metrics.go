package streamer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// keptVersions bounds the label values of the per-version counters: the
// series of older filter versions are dropped, so a filter changed every
// minute for a year does not grow /metrics without end.
const keptVersions = 16

// metrics are the streamer's own series; kprom adds the Kafka client's.
// Record counters move only when a transaction commits, so they count each
// record once, as the output topic does.
type metrics struct {
	in, passed, dropped *prometheus.CounterVec // by version
	deadLettered        *prometheus.CounterVec // by version and reason
	commits, aborts     prometheus.Counter
	latency             prometheus.Histogram
	filterVersion       prometheus.Gauge
	filterAppliedAt     prometheus.Gauge
	controlErrors       prometheus.Counter

	versions []string // label values in use, oldest first
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "shopstream", "streamer"
	f := telemetry.With(reg)
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	m := &metrics{
		in:           counterVec("records_in_total", "Product records consumed and committed, by the filter version in force.", "version"),
		passed:       counterVec("records_passed_total", "Records forwarded to the filtered topic, by filter version.", "version"),
		dropped:      counterVec("records_dropped_total", "Records whose name did not contain the substring, by filter version.", "version"),
		deadLettered: counterVec("dead_letters_total", "Records sent to the dead-letter topic, by filter version and reason.", "version", "reason"),
		commits: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "transactions_committed_total", Help: "Transactions committed."}),
		aborts: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "transactions_aborted_total", Help: "Transactions aborted (rebalance, produce error, registry unreachable, shutdown)."}),
		latency: freshness.Histogram(f, freshness.Filtered()),
		filterVersion: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "filter_applied_version", Help: "Version of the filter this instance applies; the StreamFilter workflow exports the version it wants as shopstream_filter_desired_version."}),
		filterAppliedAt: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "filter_applied_timestamp_seconds", Help: "When this instance switched to its current filter."}),
		controlErrors: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "control_errors_total", Help: "Control-topic records or fetches that could not be used."}),
	}
	// A streamer built again in the same process gets the series the first
	// one registered.
	if err := f.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// tally counts one batch's records under one filter version until the
// batch's transaction ends.
type tally struct {
	filter              *Filter
	version             string
	in, passed, dropped int
	// deadLettered counts by reason; nil until a record is dead-lettered,
	// which is rare.
	deadLettered map[string]int
}

func (t *tally) deadLetter(reason string) {
	if t.deadLettered == nil {
		t.deadLettered = map[string]int{}
	}
	t.deadLettered[reason]++
}

// flush adds a committed batch's tallies.
func (m *metrics) flush(ts []tally) {
	for i := range ts {
		t := &ts[i]
		m.track(t.version)
		m.in.WithLabelValues(t.version).Add(float64(t.in))
		m.passed.WithLabelValues(t.version).Add(float64(t.passed))
		m.dropped.WithLabelValues(t.version).Add(float64(t.dropped))
		for reason, n := range t.deadLettered {
			m.deadLettered.WithLabelValues(t.version, reason).Add(float64(n))
		}
	}
}

func (m *metrics) track(version string) {
	for _, v := range m.versions {
		if v == version {
			return
		}
	}
	m.versions = append(m.versions, version)
	if len(m.versions) <= keptVersions {
		return
	}
	old := m.versions[0]
	m.versions = m.versions[1:]
	m.in.DeleteLabelValues(old)
	m.passed.DeleteLabelValues(old)
	m.dropped.DeleteLabelValues(old)
	m.deadLettered.DeletePartialMatch(prometheus.Labels{"version": old})
}
