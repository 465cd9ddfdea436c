package telemetry

import (
	"strings"
	"testing"
)

func TestCheckMetricName(t *testing.T) {
	for i, c := range []struct {
		name, kind string
		bad        string // a part of the error; empty: the name is good
	}{
		{"shopstream_streamer_records_in_total", KindCounter, ""},
		{"shopstream_collector_image_bytes_total", KindCounter, ""},
		{"shopstream_sink_batch_seconds", KindHistogram, ""},
		{"shopstream_emulate_batch_duration_seconds", KindHistogram, ""},
		{"shopstream_kafka_consumer_lag_records", KindGauge, ""},
		{"shopstream_streamer_filter_applied_timestamp_seconds", KindGauge, ""},
		{"shopstream_recommender_users", KindGauge, ""},
		{"shopstream_filter_desired_version", KindGauge, ""},
		{"shopstream_streamer_e2e_latency_seconds", KindHistogram, ""},

		{"streamer_records_in_total", KindCounter, "start with shopstream_"},
		{"shopstream_streamer_recordsIn_total", KindCounter, "lowercase"},
		{"shopstream_streamer__in_total", KindCounter, "lowercase"},
		{"shopstream_worker_batches_total", KindCounter, `"worker" is not a component`},
		{"shopstream_api", KindGauge, "say what is measured"},
		{"shopstream_streamer_records_in", KindCounter, "a counter ends in _total"},
		{"shopstream_api_total", KindCounter, "say what is measured"},
		{"shopstream_sink_batch", KindHistogram, "ends in a base unit"},
		{"shopstream_sink_seconds", KindHistogram, "say what is measured"},
		{"shopstream_sink_batch_ms", KindHistogram, `"ms" is not in the vocabulary; use seconds`},
		{"shopstream_sink_lag_records_total", KindGauge, "only counters end in _total"},
		{"shopstream_collector_image_kb_total", KindCounter, `"kb"`},
		{"shopstream_streamer_records_dead_lettered_total", KindCounter, "dead_letters"},
		{"shopstream_sink_dlq_records_total", KindCounter, "dead_letters"},
		{"shopstream_api_requests_counter_total", KindCounter, "the type is in the exposition"},
		{"shopstream_api_request_seconds_count", KindGauge, `"count" is not in the vocabulary`},
		{"shopstream_api_request_seconds_bucket", KindGauge, "histograms add _bucket"},
		{"shopstream_api_requests_total", "untyped", "kind"},
	} {
		err := CheckMetricName(c.name, c.kind)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("#%d %s (%s): %v, want no error", i, c.name, c.kind, err)
		case c.bad != "" && err == nil:
			t.Errorf("#%d %s (%s): no error, want one saying %q", i, c.name, c.kind, c.bad)
		case c.bad != "" && !strings.Contains(err.Error(), c.bad):
			t.Errorf("#%d %s (%s): %v, want it to say %q", i, c.name, c.kind, err, c.bad)
		}
	}
}
