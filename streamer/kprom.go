package streamer

import (
	"regexp"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/plugin/kprom"
)

// kafkaClientMetrics is kprom's collector with two names fixed: kprom calls
// its buffered-record gauges *_records_total, a suffix Prometheus keeps for
// counters, so they are exported without it
// (shopstream_streamer_kafka_buffered_fetch_records and
// …_buffered_produce_records).
type kafkaClientMetrics struct {
	kp *kprom.Metrics

	mu      sync.Mutex
	renamed map[*prometheus.Desc]*prometheus.Desc // nil: kept as is
}

func newKafkaClientMetrics(kp *kprom.Metrics) *kafkaClientMetrics {
	return &kafkaClientMetrics{kp: kp, renamed: map[*prometheus.Desc]*prometheus.Desc{}}
}

// Describe describes nothing: kprom creates its metrics with the client,
// after registration, so the collector is an unchecked one.
func (k *kafkaClientMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect passes kprom's metrics on, renaming the buffered-record gauges.
func (k *kafkaClientMetrics) Collect(ch chan<- prometheus.Metric) {
	inner := make(chan prometheus.Metric, 64)
	go func() { k.kp.Collect(inner); close(inner) }()
	for m := range inner {
		if d := k.rename(m.Desc()); d != nil {
			var pb dto.Metric
			if err := m.Write(&pb); err == nil && pb.Gauge != nil {
				m = prometheus.MustNewConstMetric(d, prometheus.GaugeValue, pb.GetGauge().GetValue())
			}
		}
		ch <- m
	}
}

var descFQName = regexp.MustCompile(`fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)"`)

func (k *kafkaClientMetrics) rename(d *prometheus.Desc) *prometheus.Desc {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r, seen := k.renamed[d]; seen {
		return r
	}
	var r *prometheus.Desc
	if m := descFQName.FindStringSubmatch(d.String()); m != nil &&
		strings.Contains(m[1], "_buffered_") && strings.HasSuffix(m[1], "_records_total") {
		r = prometheus.NewDesc(strings.TrimSuffix(m[1], "_total"), strings.ReplaceAll(m[2], `\"`, `"`), nil, nil)
	}
	k.renamed[d] = r
	return r
}
