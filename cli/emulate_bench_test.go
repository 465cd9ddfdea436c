package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/workers"
	"github.com/shopstream/shopstream/workflows"
)

// BenchmarkEmulateVsRawProducer publishes the same products twice on the
// same embedded broker: through the EmulateShop workflow (Temporal, batch
// activities, one transaction a batch, generation and encoding included),
// and with a plain franz-go producer sending records generated and encoded
// beforehand. It reports both rates and their ratio (goal: at least 0.7).
// SHOPSTREAM_BENCH_COUNT sets the products per run (default 1000000).
//
//	go test ./cli -run '^$' -bench EmulateVsRaw -benchtime 1x
func BenchmarkEmulateVsRawProducer(b *testing.B) {
	n := int64(1_000_000)
	if s := os.Getenv("SHOPSTREAM_BENCH_COUNT"); s != "" {
		v, err := parseCount(s)
		if err != nil {
			b.Fatalf("SHOPSTREAM_BENCH_COUNT=%q: %v", s, err)
		}
		n = v
	}
	stack := sharedStack.get(b)
	ctx := context.Background()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = stack.KafkaBrokers, stack.RegistryURL
	cfg.TemporalAddress, cfg.TemporalUIURL = stack.TemporalAddress, stack.TemporalUIURL
	cfg.TaskQueue = "bench-" + suffix
	const partitions = 6 // as `shopstream bootstrap` makes the product topic

	logger, _ := telemetry.NewLogger(&bytes.Buffer{}, "error")
	e, err := connectWith(ctx, cfg, logger, true, true)
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	wctx, stopWorker := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = workers.Run(wctx, e.temporal, cfg.TaskQueue, e.activities(), worker.Options{})
	}()
	defer func() { stopWorker(); wg.Wait() }()

	topic := func(name string) string {
		t := name + "_" + suffix
		resp, err := e.admin.CreateTopic(ctx, partitions, 1, nil, t)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			b.Fatal(err)
		}
		return t
	}

	// The plain producer's records: the same products, generated and
	// encoded before the clock starts.
	serde, err := clients.Serde(cfg)
	if err != nil {
		b.Fatal(err)
	}
	rawTopic := topic("bench_raw")
	id, err := serde.SchemaID(ctx, rawTopic, records.KindProduct)
	if err != nil {
		b.Fatal(err)
	}
	gen, err := shopgen.New(shopgen.Options{Seed: 1, Shops: workflows.DefaultEmulateShops, Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]kgo.Record, n)
	buf := make([]byte, 0, 64<<20)
	var p records.Product
	for i := range recs {
		gen.Fill(&p, uint64(i))
		if cap(buf)-len(buf) < 4096 {
			buf = make([]byte, 0, 64<<20)
		}
		k := len(buf)
		buf = append(append(append(buf, p.MallID...), '/'), p.ProductID...)
		v := len(buf)
		if buf, err = serde.AppendEncode(buf, id, records.KindProduct, &p); err != nil {
			b.Fatal(err)
		}
		recs[i] = kgo.Record{Topic: rawTopic, Key: buf[k:v:v], Value: buf[v:len(buf):len(buf)]}
	}

	raw := func() float64 {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.KafkaBrokers...)}, activities.ProducerOpts()...)...)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		var mu sync.Mutex
		var firstErr error
		promise := func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		}
		t0 := time.Now()
		for i := range recs {
			cl.Produce(ctx, &recs[i], promise)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		return float64(n) / d.Seconds()
	}
	emulate := func() float64 {
		in := workflows.EmulateShopInput{Count: n, Topic: topic("bench_emulate"), ImageBaseURL: shopgen.DefaultImageBaseURL}
		t0 := time.Now()
		run, err := e.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: cfg.TaskQueue}, workflows.EmulateShop, in)
		if err != nil {
			b.Fatal(err)
		}
		var res workflows.EmulateShopResult
		if err := run.Get(ctx, &res); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		if res.Committed != n {
			b.Fatalf("emulate committed %d, want %d", res.Committed, n)
		}
		return float64(n) / d.Seconds()
	}

	b.ResetTimer()
	for range b.N {
		// Raw before and after, so a broker that slows as it fills up
		// does not favour either side.
		r1 := raw()
		em := emulate()
		r2 := raw()
		rawRate := (r1 + r2) / 2
		b.ReportMetric(rawRate, "raw_rec/s")
		b.ReportMetric(em, "emulate_rec/s")
		b.ReportMetric(em/rawRate, "ratio")
		b.Logf("%d products: plain producer %.0f and %.0f/s, emulate %.0f/s, ratio %.2f", n, r1, r2, em, em/rawRate)
	}
}
