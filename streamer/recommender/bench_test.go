package recommender

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

// Run with: go test -run '^$' -bench . -benchmem -cpu 1 ./streamer/recommender/
// (-cpu 1: the join loop is one goroutine; figures are per core).

const benchProducts = 1_000_000

var brands = []string{"Galaxy", "iPhone", "Pixel", "Xperia", "Nokia", "Moto", "Redmi", "OnePlus", "Fairphone", "Zenfone"}
var kinds = []string{"Phone", "Tablet", "Watch", "Buds", "Charger", "Case", "Cable", "Stand"}

// benchProduct is the i-th synthetic product: a million distinct names
// such as "Galaxy Phone 12345", and every 10th name shared by two malls.
func benchProduct(i int) *records.Product {
	n := i
	if i%10 == 1 {
		n = i - 1
	}
	return &records.Product{
		MallID: fmt.Sprintf("mall-%03d", i%500), ProductID: fmt.Sprintf("p-%07d", i),
		Name:      fmt.Sprintf("%s %s %d", brands[n%len(brands)], kinds[n/len(brands)%len(kinds)], n),
		Price:     records.Price{Amount: fmt.Sprintf("%d.99", 10+i%990), Currency: []string{"USD", "EUR", "KRW"}[i%3]},
		CreatedAt: time.UnixMilli(1_700_000_000_000), UpdatedAt: time.UnixMilli(1_700_000_000_000),
	}
}

var (
	benchTableOnce sync.Once
	benchTable     *Table
)

func millionTable() *Table {
	benchTableOnce.Do(func() {
		benchTable = NewTable()
		for i := range benchProducts {
			p := benchProduct(i)
			benchTable.Upsert(p.Key(), p)
		}
	})
	return benchTable
}

// benchPrompts are queries as users type them: half name a product (with
// other case and spacing), half name nothing.
func benchPrompts(n int) []*records.SearchPrompt {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]*records.SearchPrompt, n)
	for i := range out {
		var q string
		if i%2 == 0 {
			q = benchProduct(r.IntN(benchProducts)).Name
			switch i % 6 {
			case 0:
				q = strings.ToUpper(q)
			case 2:
				q = "  " + strings.ReplaceAll(q, " ", "  ") + " "
			}
		} else {
			q = fmt.Sprintf("%s Gadget %d", brands[i%len(brands)], r.IntN(1_000_000))
		}
		out[i] = &records.SearchPrompt{SearchID: fmt.Sprintf("s-%d", i), UserID: fmt.Sprintf("user-%d", i%10_000), Query: q,
			SearchedAt: time.UnixMilli(1_700_000_000_000 + int64(i))}
	}
	return out
}

// BenchmarkJoin is the join itself with a million products in the table:
// normalise the prompt, look it up, and fold the matches into the user's
// recommendation (10,000 users, lists growing to 50 products).
func BenchmarkJoin(b *testing.B) {
	tbl := millionTable()
	prompts := benchPrompts(1 << 16)
	users := make(map[string]*records.Recommendation, 10_000)
	var buf []Product
	matched := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := prompts[i&(len(prompts)-1)]
		buf = tbl.Lookup(buf[:0], Normalize(p.Query))
		if len(buf) > 0 {
			matched++
		}
		users[p.UserID] = Apply(users[p.UserID], p, buf)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "joins/s")
	b.ReportMetric(float64(matched)/float64(b.N), "matched/join")
}

// BenchmarkJoinRecord is what one prompt record costs the join loop, short
// of Kafka: decode the Avro prompt, join, encode the Avro recommendation.
func BenchmarkJoinRecord(b *testing.B) {
	tbl := millionTable()
	serde := benchSerde(b)
	ctx := context.Background()
	prompts := benchPrompts(1 << 14)
	raw := make([][]byte, len(prompts))
	for i, p := range prompts {
		v, err := serde.Encode(ctx, nil, "find", p)
		if err != nil {
			b.Fatal(err)
		}
		raw[i] = v
	}
	if _, err := serde.Encode(ctx, nil, "recom", &records.Recommendation{}); err != nil {
		b.Fatal(err)
	}
	users := make(map[string]*records.Recommendation, 10_000)
	var buf []Product
	var out []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var p records.SearchPrompt
		if err := serde.Decode(ctx, raw[i&(len(raw)-1)], &p); err != nil {
			b.Fatal(err)
		}
		buf = tbl.Lookup(buf[:0], Normalize(p.Query))
		next := Apply(users[p.UserID], &p, buf)
		users[p.UserID] = next
		var err error
		if out, err = serde.Encode(ctx, out[:0], "recom", next); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func benchSerde(b *testing.B) *records.Serde { return kafkatest.NewSerde(b) }

// BenchmarkTableMemory measures the heap a million products take in the
// table (run with -benchtime 1x: each iteration builds a table).
func BenchmarkTableMemory(b *testing.B) {
	products := make([]*records.Product, benchProducts)
	for i := range products {
		products[i] = benchProduct(i)
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tbl := NewTable()
		for _, p := range products {
			tbl.Upsert(p.Key(), p)
		}
		// Drop the decoded records' fields that the table did not take.
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchProducts, "B/product")
		runtime.KeepAlive(tbl)
	}
}

// BenchmarkRebuild times what a restarted instance does first: read a
// million filtered products from Kafka (kfake, in-process) into the table,
// up to the end offsets. Run with -benchtime 1x.
func BenchmarkRebuild(b *testing.B) {
	ctx := context.Background()
	kc := kafkatest.Start(b)
	cl := kc.Client(kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	admin := kadm.NewClient(cl)
	compact := "compact"
	if _, err := admin.CreateTopic(ctx, 6, 1, map[string]*string{"cleanup.policy": &compact}, "filtered"); err != nil {
		b.Fatal(err)
	}
	serde := kc.Serde
	t0 := time.Now()
	var wg sync.WaitGroup
	var perr error
	var mu sync.Mutex
	for i := range benchProducts {
		p := benchProduct(i)
		v, err := serde.Encode(ctx, nil, "filtered", p)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: "filtered", Key: []byte(p.Key()), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if perr != nil {
		b.Fatal(perr)
	}
	b.Logf("produced %d products in %s", benchProducts, time.Since(t0).Round(time.Millisecond))

	for b.Loop() {
		cfg := Options{Deps: component.Deps{Kafka: kc.Kafka, Serde: kc.NewSerde(),
			Topics: records.Topics{Filtered: "filtered", Find: "find", Recommendations: "recom", DLQ: "dlq"}}}
		if err := cfg.setDefaults(); err != nil {
			b.Fatal(err)
		}
		tbl := NewTable()
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			b.Fatal(err)
		}
		ld := newLoader(&cfg, tbl, m)
		lctx, cancel := context.WithCancel(ctx)
		caught := make(chan struct{})
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- ld.run(lctx, caught) }()
		select {
		case <-caught:
		case err := <-done:
			b.Fatalf("loader stopped: %v", err)
		}
		took := time.Since(start)
		cancel()
		<-done
		ld.close()
		if n, _ := tbl.Len(); n != benchProducts {
			b.Fatalf("table holds %d products, want %d", n, benchProducts)
		}
		b.ReportMetric(took.Seconds(), "s/rebuild")
		b.ReportMetric(benchProducts/took.Seconds(), "products/s")
	}
}
