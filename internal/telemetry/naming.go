package telemetry

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// MetricComponents are the <component> part of shopstream's metric names:
// the part of the system that owns a metric, whichever process hosts it.
// kafka is the Kafka view the worker exports (topic offsets, group lag);
// filter is the StreamFilter workflow and its backfills; emulate its batch
// activities; replay the dead-letter replay's activities.
func MetricComponents() []string {
	return []string{"api", "collector", "emulate", "filter", "kafka", "recommender", "replay", "sink", "streamer"}
}

// Metric kinds, as Prometheus' exposition format names them.
const (
	KindCounter   = "counter"
	KindGauge     = "gauge"
	KindHistogram = "histogram"
	KindSummary   = "summary"
)

var metricWords = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// baseUnits are the units a shopstream metric is measured in; a duration is
// always in seconds, a size in bytes, a count of Kafka records in records.
var baseUnits = []string{"seconds", "bytes", "records"}

// badWords name a unit that is not a base unit, a metric type, a suffix
// Prometheus reserves for histogram series, or a synonym of a word of the
// vocabulary; each maps to what to write instead.
var badWords = map[string]string{
	"ms": "seconds", "millis": "seconds", "milliseconds": "seconds", "us": "seconds", "microseconds": "seconds",
	"ns": "seconds", "nanoseconds": "seconds", "minutes": "seconds", "hours": "seconds", "days": "seconds",
	"kb": "bytes", "mb": "bytes", "gb": "bytes", "kilobytes": "bytes", "megabytes": "bytes", "gigabytes": "bytes", "bits": "bytes",
	"percent": "a ratio (0 to 1)",
	"counter": "nothing: the type is in the exposition", "gauge": "nothing: the type is in the exposition",
	"histogram": "nothing: the type is in the exposition", "summary": "nothing: the type is in the exposition",
	"bucket": "nothing: histograms add _bucket", "count": "a plural noun (e.g. _records) or _total",
	"sum": "nothing: histograms add _sum",
	"dlq": "dead_letters", "lettered": "dead_letters (records sent to the dead-letter topic)",
	"msgs": "records", "messages": "records",
}

// CheckMetricName checks a shopstream metric name against the vocabulary:
//
//	shopstream_<component>_<what>_<unit>
//
// <component> is one of MetricComponents; <what> is one or more lowercase
// words; the unit depends on the kind: a counter ends in _total (its words
// before may name a unit: _bytes_total), a histogram or summary in a base
// unit (_seconds, _bytes, _records), a gauge in a base unit or in a plain
// noun (shopstream_recommender_users, shopstream_streamer_filter_applied_version).
// No word may be a non-base unit, a metric type, a reserved histogram suffix
// or a synonym the vocabulary replaces (dlq, dead_lettered, messages).
func CheckMetricName(name, kind string) error {
	rest, ok := strings.CutPrefix(name, "shopstream_")
	if !ok {
		return fmt.Errorf("%s: shopstream metrics start with shopstream_", name)
	}
	if !metricWords.MatchString(rest) {
		return fmt.Errorf("%s: want lowercase words joined by single underscores", name)
	}
	words := strings.Split(rest, "_")
	if !slices.Contains(MetricComponents(), words[0]) {
		return fmt.Errorf("%s: %q is not a component; want shopstream_<component>_… with a component of %v", name, words[0], MetricComponents())
	}
	what := words[1:]
	if len(what) == 0 {
		return fmt.Errorf("%s: say what is measured after the component", name)
	}
	for _, w := range what {
		if instead, bad := badWords[w]; bad {
			return fmt.Errorf("%s: %q is not in the vocabulary; use %s", name, w, instead)
		}
	}
	last := what[len(what)-1:]
	minWhat := 1 // words before the unit
	switch kind {
	case KindCounter:
		if last[0] != "total" {
			return fmt.Errorf("%s: a counter ends in _total", name)
		}
	case KindHistogram, KindSummary:
		if !slices.Contains(baseUnits, last[0]) {
			return fmt.Errorf("%s: a %s ends in a base unit, one of _%s", name, kind, strings.Join(baseUnits, ", _"))
		}
	case KindGauge:
		if last[0] == "total" {
			return fmt.Errorf("%s: only counters end in _total; a gauge ends in a base unit or a plain noun", name)
		}
		if !slices.Contains(baseUnits, last[0]) {
			minWhat = 0 // a plain noun is its own what
		}
	default:
		return fmt.Errorf("%s: kind %q: want %s, %s, %s or %s", name, kind, KindCounter, KindGauge, KindHistogram, KindSummary)
	}
	if len(what)-1 < minWhat {
		return fmt.Errorf("%s: say what is measured between the component and the unit", name)
	}
	return nil
}
