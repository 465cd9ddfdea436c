package helm

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// scaler is what KEDA reads from one rendered ScaledObject.
type scaler struct {
	component            string
	min, max, partitions int
	threshold            float64 // target per replica: lagThreshold, threshold or targetQueueSize
	activation           float64
}

// replicas is KEDA's documented computation: the HPA it drives asks for
// ceil(metric / target) replicas (an AverageValue target), bounded by the
// minimum and maximum replica counts; at or below the activation value a
// ScaledObject whose minimum is 0 scales to zero. A consumer group member
// past the partition count reads nothing, and the chart's maximum is never
// above it.
func (s scaler) replicas(metric float64) int {
	if metric <= s.activation && s.min == 0 {
		return 0
	}
	n := int(math.Ceil(metric / s.threshold))
	n = max(n, s.min, 1)
	n = min(n, s.max)
	if s.partitions > 0 {
		n = min(n, s.partitions)
	}
	return n
}

// scalers reads the production release's ScaledObjects.
func scalers(t *testing.T) map[string]scaler {
	t.Helper()
	objs, err := decode(mustRender(t, "production"))
	if err != nil {
		t.Fatal(err)
	}
	partitions := number(values(t, "production"), "kafka.partitions")
	out := map[string]scaler{}
	for _, o := range objs.of("ScaledObject") {
		so := o.Typed.(*scaledObject)
		c := so.Labels["app.kubernetes.io/component"]
		tr := so.Spec.Triggers[0]
		keys := map[string][2]string{
			"prometheus": {"threshold", "activationThreshold"},
			"kafka":      {"lagThreshold", "activationLagThreshold"},
			"temporal":   {"targetQueueSize", "activationTargetQueueSize"},
		}[tr.Type]
		key, act := keys[0], keys[1]
		threshold, err := strconv.ParseFloat(tr.Metadata[key], 64)
		if err != nil || threshold <= 0 {
			t.Fatalf("ScaledObject %s: %s %q", o.Name, key, tr.Metadata[key])
		}
		activation, _ := strconv.ParseFloat(tr.Metadata[act], 64)
		s := scaler{component: c, min: int(*so.Spec.MinReplicaCount), max: int(*so.Spec.MaxReplicaCount), threshold: threshold, activation: activation}
		if c != "worker" {
			s.partitions = partitions
		}
		out[c] = s
	}
	return out
}

// A lag time series — a 1M-product import arriving in two minutes and
// draining — replayed through the chart's thresholds: the replica counts a
// user would watch with `kubectl get hpa -w`, one row per polling interval.
// (The HPA also waits out its scale-down stabilization window, 5 minutes by
// default, before it removes replicas: the way down is slower than shown.)
func TestReplicasFollowLag(t *testing.T) {
	sc := scalers(t)
	streamer, sink, worker := sc["streamer"], sc["sink"], sc["worker"]
	lag := []float64{0, 4000, 30000, 90000, 180000, 420000, 760000, 500000, 230000, 61000, 19000, 900, 0}
	backlog := []float64{0, 0, 10, 40, 160, 300, 120, 30, 5, 0, 0, 0, 0}
	var table strings.Builder
	fmt.Fprintf(&table, "%6s %9s %9s %8s %9s %8s\n", "t", "lag", "streamer", "sink", "backlog", "worker")
	for i, l := range lag {
		s, k, w := streamer.replicas(l), sink.replicas(l), worker.replicas(backlog[i])
		fmt.Fprintf(&table, "%5ds %9.0f %9d %8d %9.0f %8d\n", i*15, l, s, k, backlog[i], w)
		if s > streamer.partitions || k > sink.partitions {
			t.Errorf("t=%ds: %d streamers, %d sinks on %d partitions", i*15, s, k, streamer.partitions)
		}
	}
	t.Logf("KEDA's replicas for the production values (streamer: %.0f records a replica, %d-%d; sink: %.0f, %d-%d; worker: %.0f tasks a replica, %d-%d):\n%s",
		streamer.threshold, streamer.min, streamer.max, sink.threshold, sink.min, sink.max, worker.threshold, worker.min, worker.max, table.String())

	// What the production values promise, computed by hand: the minimum
	// when caught up, one streamer per 20000 records of lag, never more
	// than the 12 partitions, and one worker per 20 queued tasks up to 4.
	for _, c := range []struct {
		s      scaler
		metric float64
		want   int
	}{
		{streamer, 0, 2}, {streamer, 90000, 5}, {streamer, 760000, 12},
		{sink, 0, 1}, {sink, 30000, 2}, {sink, 760000, 6},
		{worker, 0, 1}, {worker, 40, 2}, {worker, 300, 4},
	} {
		if got := c.s.replicas(c.metric); got != c.want {
			t.Errorf("%s at %.0f: %d replicas, want %d", c.s.component, c.metric, got, c.want)
		}
	}
}
