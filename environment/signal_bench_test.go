package environment

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/shopstream/shopstream/internal/clients/temporalclient"
)

// signalLatencyWorkflow records, for each signal, how long after the client
// sent it the workflow task that handles it started (workflow.Now is that
// task's start time on the server).
func signalLatencyWorkflow(ctx workflow.Context, n int) ([]time.Duration, error) {
	ch := workflow.GetSignalChannel(ctx, "ping")
	lat := make([]time.Duration, 0, n)
	for len(lat) < n {
		var sentNanos int64
		ch.Receive(ctx, &sentNanos)
		lat = append(lat, workflow.Now(ctx).Sub(time.Unix(0, sentNanos)))
	}
	return lat, nil
}

// BenchmarkSignalHandoff measures what the dev server's dynamic-config tuning
// buys: the time from a client's signal to the start of the workflow task
// that handles it, with the server's defaults and with TemporalDynamicConfig.
//
//	go test -run '^$' -bench SignalHandoff -benchtime 200x ./environment/
func BenchmarkSignalHandoff(b *testing.B) {
	for _, untuned := range []bool{true, false} {
		name := "tuned"
		if untuned {
			name = "untuned"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			stack, err := Start(ctx, Options{StartTemporal: true, UntunedTemporal: untuned})
			if err != nil {
				b.Fatal(err)
			}
			defer stack.Close()
			c, err := temporalclient.Dial(ctx, temporalclient.Options{HostPort: stack.TemporalAddress})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w := worker.New(c, "bench", worker.Options{})
			w.RegisterWorkflow(signalLatencyWorkflow)
			if err := w.Start(); err != nil {
				b.Fatal(err)
			}
			defer w.Stop()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "bench"}, signalLatencyWorkflow, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.SignalWorkflow(ctx, run.GetID(), "", "ping", time.Now().UnixNano()); err != nil {
					b.Fatal(err)
				}
				// One signal at a time, so each is handed off on its own.
				time.Sleep(20 * time.Millisecond)
			}
			var lat []time.Duration
			if err := run.Get(ctx, &lat); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(p(0.5), "p50-ms")
			b.ReportMetric(p(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op") // wall time per op includes the pacing sleep; meaningless here
			fmt.Printf("signal hand-off %s: p50 %.1f ms, p99 %.1f ms over %d signals\n", name, p(0.5), p(0.99), len(lat))
		})
	}
}
