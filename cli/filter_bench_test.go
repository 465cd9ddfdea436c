package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/streamer"
)

// BenchmarkFilterChangeLatency measures, on the embedded stack with
// `shopstream dev` running (Temporal dev server, worker, streamer), the time
// from `shopstream filter set` returning to the first record in the
// filtered topic that carries the new version, as a read_committed consumer
// sees it. Products stream in every millisecond, each named to pass every
// filter the benchmark sets, so the first record after a change shows when
// it took effect. One op is one change:
//
//	TEMPORAL_CLI=$PWD/bin/temporal go test ./cli -run '^$' -bench FilterChangeLatency -benchtime 100x
func BenchmarkFilterChangeLatency(b *testing.B) {
	f := startFilterStack(b)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	waitLive(b, f)

	// The feed: one product per millisecond.
	var feed sync.WaitGroup
	feed.Add(1)
	go func() {
		defer feed.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			<-t.C
			now := time.Now()
			p := records.Product{ProductID: fmt.Sprintf("p-%d", i), MallID: "m", Name: fmt.Sprintf("alpha beta %d", i),
				Price: records.Price{Amount: "1", Currency: "EUR"}, CreatedAt: now, UpdatedAt: now}
			v, err := f.serde.Encode(ctx, nil, "shop_products", &p)
			if err != nil {
				return
			}
			f.cl.Produce(ctx, &kgo.Record{Topic: "shop_products", Key: []byte(p.Key()), Value: v}, nil)
		}
	}()
	defer feed.Wait()
	defer stop()

	// The observer: when each version first shows in the output.
	var mu sync.Mutex
	firstSeen := map[int64]time.Time{}
	tail, err := kgo.NewClient(kgo.SeedBrokers(f.stack.KafkaBrokers...), kgo.ConsumeTopics("analytic_products_filtered"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer tail.Close()
	go func() {
		for ctx.Err() == nil {
			fs := tail.PollFetches(ctx)
			now := time.Now()
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if v, ok := streamer.FilterVersion(r.Headers); ok {
					if _, seen := firstSeen[v]; !seen {
						firstSeen[v] = now
					}
				}
			})
			mu.Unlock()
		}
	}()

	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		sub := []string{"alpha", "beta"}[i%2]
		code, out, errOut := shopstream(ctx, append([]string{"filter", "set", sub}, f.flags...)...)
		returned := time.Now()
		if code != 0 {
			b.Fatalf("filter set: exit %d\n%s%s", code, out, errOut)
		}
		version := int64(i + 1)
		deadline := returned.Add(10 * time.Second)
		for {
			mu.Lock()
			seen, ok := firstSeen[version]
			mu.Unlock()
			if ok {
				latencies = append(latencies, max(0, seen.Sub(returned)))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("v%d not in the output 10s after filter set returned", version)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1)+0.5)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}

// waitLive waits until dev's streamer reports itself.
func waitLive(b *testing.B, f *filterStack) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		reps, err := health.ReadApplied(context.Background(), f.kafka, "shopstream_filter_applied")
		if err == nil && len(reps) > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("no streamer instance reports after 30s")
}
