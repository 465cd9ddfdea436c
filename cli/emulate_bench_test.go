package main

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/emulation"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/internal/telemetry"
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
		v, err := emulation.ParseCount(s)
		if err != nil {
			b.Fatalf("SHOPSTREAM_BENCH_COUNT=%q: %v", s, err)
		}
		n = v
	}
	if extra := os.Getenv("SHOPSTREAM_BENCH_TEMPORAL_CONFIG"); extra != "" {
		environment.TemporalDynamicConfig = append(environment.TemporalDynamicConfig, strings.Split(extra, ",")...)
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
	e, err := process.Connect(ctx, cfg, logger, telemetry.NewRegistry(), process.NeedKafka|process.NeedTemporal)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	w, err := e.Worker(0)
	if err != nil {
		b.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = w.Run(wctx)
	}()
	defer func() { stopWorker(); wg.Wait() }()

	topics := 0
	topic := func(name string) string {
		topics++
		t := name + "_" + suffix + "_" + strconv.Itoa(topics) // never a recreated name: clients cache topic ids
		resp, err := e.Admin.CreateTopic(ctx, partitions, 1, nil, t)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			b.Fatal(err)
		}
		return t
	}

	// The plain producer sends the same products, generated and encoded
	// before its clock starts.
	serde, err := clients.NewSerde(cfg.SchemaRegistryURL)
	if err != nil {
		b.Fatal(err)
	}
	gen, err := shopgen.New(shopgen.Options{Seed: 1, Shops: workflows.DefaultEmulateShops, Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	// pregenerate builds the plain producer's records for topic t. They are
	// built before each plain run and dropped after it, so the emulate run
	// does not pay for collecting garbage around a million live records.
	pregenerate := func(t string) []kgo.Record {
		id, err := serde.SchemaID(ctx, t, records.KindProduct)
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
			recs[i] = kgo.Record{Topic: t, Key: buf[k:v:v], Value: buf[v:len(buf):len(buf)]}
		}
		return recs
	}

	// Each side reports its wall-clock rate and the CPU this process spent
	// a record (Kafka is in process; the Temporal server is not counted).
	measure := func(do func()) sample {
		c0, t0 := processCPU(), time.Now()
		do()
		d, c := time.Since(t0), processCPU()-c0
		return sample{float64(n) / d.Seconds(), float64(c.Microseconds()) / float64(n)}
	}
	dropTopic := func(t string) {
		if _, err := e.Admin.DeleteTopics(ctx, t); err != nil {
			b.Logf("delete topic %s: %v", t, err)
		}
	}
	raw := func() sample {
		t := topic("bench_raw")
		defer dropTopic(t)
		recs := pregenerate(t)
		runtime.GC()
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
		res := measure(func() {
			for i := range recs {
				cl.Produce(ctx, &recs[i], promise)
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		return res
	}
	emulate := func() sample {
		in := workflows.EmulateShopInput{Count: n, Topic: topic("bench_emulate"), ImageBaseURL: shopgen.DefaultImageBaseURL}
		defer dropTopic(in.Topic)
		if v, err := strconv.Atoi(os.Getenv("SHOPSTREAM_BENCH_CONCURRENCY")); err == nil {
			in.Concurrency = v
		}
		if v, err := strconv.ParseInt(os.Getenv("SHOPSTREAM_BENCH_BATCH"), 10, 64); err == nil {
			in.BatchSize = v
		}
		var res workflows.EmulateShopResult
		runtime.GC()
		s := measure(func() {
			run, err := e.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: cfg.TaskQueue}, workflows.EmulateShop, in)
			if err != nil {
				b.Fatal(err)
			}
			if err := run.Get(ctx, &res); err != nil {
				b.Fatal(err)
			}
		})
		if res.Committed != n {
			b.Fatalf("emulate committed %d, want %d", res.Committed, n)
		}
		return s
	}

	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("SHOPSTREAM_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	b.ResetTimer()
	for range b.N {
		// Alternate the two, on a machine shared with others, and compare
		// medians; each run gets a fresh topic, deleted after it.
		var raws, ems, ratios []sample
		for r := range rounds {
			rs, es := raw(), emulate()
			raws, ems = append(raws, rs), append(ems, es)
			ratios = append(ratios, sample{es.rate / rs.rate, es.cpuMicros / rs.cpuMicros})
			b.Logf("round %d: plain producer %.0f/s (%.2f µs CPU a record), emulate %.0f/s (%.2f µs), ratio %.2f",
				r+1, rs.rate, rs.cpuMicros, es.rate, es.cpuMicros, es.rate/rs.rate)
		}
		rm, em, ra := median(raws), median(ems), median(ratios)
		b.ReportMetric(rm.rate, "raw_rec/s")
		b.ReportMetric(em.rate, "emulate_rec/s")
		b.ReportMetric(ra.rate, "ratio")
		b.ReportMetric(em.cpuMicros, "emulate_cpu_µs/rec")
		b.ReportMetric(rm.cpuMicros, "raw_cpu_µs/rec")
		b.Logf("%d products, median of %d rounds: plain producer %.0f/s, emulate %.0f/s, ratio %.2f", n, rounds, rm.rate, em.rate, ra.rate)
	}
}

// sample is one run's rate and the CPU this process spent a record.
type sample struct{ rate, cpuMicros float64 }

func median(xs []sample) sample {
	rates := make([]float64, len(xs))
	cpus := make([]float64, len(xs))
	for i, x := range xs {
		rates[i], cpus[i] = x.rate, x.cpuMicros
	}
	sort.Float64s(rates)
	sort.Float64s(cpus)
	return sample{rates[len(rates)/2], cpus[len(cpus)/2]}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
