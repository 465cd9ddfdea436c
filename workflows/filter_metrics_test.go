package workflows

import (
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
)

// gauges is a Temporal metrics handler that keeps the last value of each
// gauge.
type gauges struct {
	mu   *sync.Mutex
	last map[string]float64
}

func (g gauges) WithTags(map[string]string) client.MetricsHandler { return g }
func (g gauges) Counter(string) client.MetricsCounter             { return client.MetricsNopHandler.Counter("") }
func (g gauges) Timer(string) client.MetricsTimer                 { return client.MetricsNopHandler.Timer("") }
func (g gauges) Gauge(name string) client.MetricsGauge            { return gauge{g, name} }

type gauge struct {
	g    gauges
	name string
}

func (x gauge) Update(v float64) {
	x.g.mu.Lock()
	defer x.g.mu.Unlock()
	x.g.last[x.name] = v
}

func (g gauges) get(name string) (float64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.last[name]
	return v, ok
}

// The desired version is exported from the loaded state on, and moves with
// each accepted change, before it is published; a rejected change leaves it.
func TestStreamFilterExportsTheDesiredVersion(t *testing.T) {
	m := gauges{mu: &sync.Mutex{}, last: map[string]float64{}}
	var s testsuite.WorkflowTestSuite
	s.SetMetricsHandler(m)
	e := newFilterEnvOn(&s, LoadFilterStateResult{Found: true, State: FilterState{Version: 4, Substring: "old"}})
	want := func(v float64) {
		t.Helper()
		if got, ok := m.get(MetricFilterDesiredVersion); !ok || got != v {
			t.Errorf("%s = %v (exported %v), want %v", MetricFilterDesiredVersion, got, ok, v)
		}
	}
	e.RegisterDelayedCallback(func() {
		want(4)
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "Phone", By: "ana", RequestID: "r1", RequestedAt: t0})
	}, time.Second)
	e.RegisterDelayedCallback(func() {
		want(5)
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "", By: "ana", RequestID: "r2", RequestedAt: t0.Add(time.Second)})
		e.SignalWorkflow(SignalClearFilter, ClearFilterSignal{By: "bo", RequestID: "r3", RequestedAt: t0.Add(2 * time.Second)})
	}, 2*time.Second)
	e.RegisterDelayedCallback(func() {
		want(6) // r2 rejected (empty substring), r3 cleared: v6
		e.CancelWorkflow()
	}, 3*time.Second)
	e.ExecuteWorkflow(StreamFilter, StreamFilterInput{})
	if !e.IsWorkflowCompleted() {
		t.Fatal("workflow did not end")
	}
}
