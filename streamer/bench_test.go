package streamer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// BenchmarkThroughput compares the streamer with a pass-through ceiling on
// the same kfake broker: the ceiling consumes and produces the same bytes
// with the same group transact session and batch size, but decodes, matches
// and adds nothing. One op is one record; records/s is the figure to
// compare:
//
//	go test ./streamer -run '^$' -bench Throughput -benchtime 100000x -count 3
//
// Each run's input is produced in one open transaction while the timer is
// stopped and committed when it starts, so the instance (already in its
// group, partitions assigned) sees all of it at once.
func BenchmarkThroughput(b *testing.B) {
	e := newTestEnv(b, 6)
	for _, c := range []struct {
		name     string
		passEach int // one product in passEach has "phone" in its name
		ceiling  bool
	}{
		{"ceiling", 1, true},
		{"streamer-pass100", 1, false},
		{"streamer-pass10", 10, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchThroughput(b, e, c.passEach, c.ceiling)
		})
	}
}

var benchRun atomic.Int64

func benchThroughput(b *testing.B, e *testEnv, passEach int, ceiling bool) {
	b.StopTimer() // setting up the topics, the instance and the input is not measured
	ctx := context.Background()
	n := benchRun.Add(1)
	topics := e.topics
	topics.Products = fmt.Sprintf("bench-in-%d", n)
	topics.Filtered = fmt.Sprintf("bench-out-%d", n)
	group := fmt.Sprintf("bench-group-%d", n)
	for _, name := range []string{topics.Products, topics.Filtered} {
		if _, err := e.admin.CreateTopic(ctx, 6, 1, nil, name); err != nil {
			b.Fatal(err)
		}
	}
	e.setFilter(1, "phone", false)
	cfg := e.config(group)
	cfg.Topics, cfg.Group, cfg.Registerer = topics, group, prometheus.NewRegistry()
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	if ceiling {
		go func() { done <- passThrough(rctx, s) }()
	} else {
		go func() { done <- s.Run(rctx) }()
	}
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	waitMember(b, e.admin, group)

	input, err := e.kafka.NewClient(kgo.TransactionalID(fmt.Sprintf("bench-input-%d", n)), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer input.Close()
	if err := input.BeginTransaction(); err != nil {
		b.Fatal(err)
	}
	values := benchValues(b, e.serde, topics.Products, passEach)
	var perr atomic.Pointer[error]
	var mu sync.Mutex
	next := map[int32]int64{} // per partition, the offset after the last record
	for i := range b.N {
		input.Produce(ctx, &kgo.Record{Topic: topics.Products, Key: fmt.Appendf(nil, "m/p-%d", i), Value: values[i%len(values)]},
			func(r *kgo.Record, err error) {
				if err != nil {
					perr.CompareAndSwap(nil, &err)
					return
				}
				mu.Lock()
				next[r.Partition] = max(next[r.Partition], r.Offset+1)
				mu.Unlock()
			})
	}
	if err := input.Flush(ctx); err != nil || perr.Load() != nil {
		b.Fatalf("produce the input: %v %v", err, perr.Load())
	}
	b.StartTimer()
	start := time.Now()
	if err := input.EndTransaction(ctx, kgo.TryCommit); err != nil {
		b.Fatal(err)
	}
	waitCommitted(b, e.admin, group, topics.Products, next)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")

	// The figure counts only if the output is right.
	want := b.N
	if !ceiling {
		want = (b.N + passEach - 1) / passEach
	}
	got := 0
	if err := topicread.Read(ctx, e.kafka, topics.Filtered, topicread.Options{}, func(*kgo.Record) error { got++; return nil }); err != nil {
		b.Fatal(err)
	}
	if got != want {
		b.Fatalf("%d records in the output, want %d", got, want)
	}
}

// benchValues are framed products, one in passEach named with "phone".
func benchValues(b *testing.B, serde *records.Serde, topic string, passEach int) [][]byte {
	var out [][]byte
	for i := range passEach {
		name := "Laptop Pro 14 inch, space grey"
		if i == 0 {
			name = "Galaxy Phone 15, 256 GB, black"
		}
		now := time.Now()
		p := records.Product{ProductID: "p-123456", MallID: "mall-42", Name: name, Description: "A description of moderate length for a product.",
			Price: records.Price{Amount: "499.99", Currency: "EUR"}, Category: "electronics", Brand: "Acme", SKU: "SKU-123456",
			Tags: []string{"new", "sale"}, Images: []records.Image{{URL: "https://img.example/p-123456/1.jpg", Alt: "front"}},
			Stock: 12, Specifications: map[string]string{"colour": "black"}, CreatedAt: now, UpdatedAt: now}
		v, err := serde.Encode(context.Background(), nil, topic, &p)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// passThrough is the ceiling: the streamer's own session options and batch
// size, forwarding every record's bytes as they are.
func passThrough(ctx context.Context, s *Streamer) error {
	sess, err := kgo.NewGroupTransactSession(s.sessionOpts(kprom.NewMetrics("ceiling"))...)
	if err != nil {
		return err
	}
	defer sess.Close()
	out := make([]kgo.Record, s.cfg.MaxBatch)
	for {
		fs := sess.PollRecords(ctx, s.cfg.MaxBatch)
		if ctx.Err() != nil {
			return nil
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		var perr atomic.Pointer[error]
		i := 0
		fs.EachRecord(func(r *kgo.Record) {
			out[i] = kgo.Record{Topic: s.cfg.Topics.Filtered, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
			sess.Produce(ctx, &out[i], func(_ *kgo.Record, err error) {
				if err != nil {
					perr.CompareAndSwap(nil, &err)
				}
			})
			i++
		})
		if _, err := sess.End(context.WithoutCancel(ctx), perr.Load() == nil); err != nil {
			return err
		}
	}
}

// waitMember waits until the group has a member with partitions.
func waitMember(b *testing.B, adm *kadm.Client, group string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		groups, err := adm.DescribeGroups(context.Background(), group)
		if err == nil {
			if g, ok := groups[group]; ok && len(g.AssignedPartitions()) > 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("group %s has no assignment after 30s", group)
}

// waitCommitted waits until group committed, in each partition of topic,
// the offset after the last record. (The end offset is one further: the
// input transaction's commit marker, which a consumer never returns.)
func waitCommitted(b *testing.B, adm *kadm.Client, group, topic string, next map[int32]int64) {
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			behind := false
			for p, want := range next {
				c, ok := committed.Lookup(topic, p)
				behind = behind || !ok || c.Err != nil || c.At < want
			}
			if !behind {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("group %s did not commit %s within 5 minutes", group, topic)
}
