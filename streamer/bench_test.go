package streamer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/internal/topicread"
)

// BenchmarkThroughput compares the streamer with the strict ceiling of what
// it does, side by side on one kfake broker, at 100% and at 10% pass:
//
//	go test ./streamer -run '^$' -bench Throughput -benchtime 2000000x -count 3
//
// The ceiling is a GroupTransactSession with the streamer's own client
// options and batch size that decodes nothing: it forwards the same share of
// the records the streamer forwards (every record at 100% pass, every tenth
// at 10%), with the same filter-version header, consumed and produced in
// the same transactions; input and output are the same bytes on both sides.
// Everything the streamer does beyond it (schema id, walk, name, match,
// bookkeeping, metrics, its filter follower and reporter) is what the ratio
// measures.
// One op is one record; the input is products the emulator makes (about
// 930 bytes), named so that the share passes "phone". Each side's input is
// produced in one open transaction while the timer is stopped and committed
// when it starts, so the instance (already in its group) sees all of it at
// once.
//
// The sides run in benchPairs pairs, taking turns at going first (ceiling,
// streamer, then streamer, ceiling, ...), so that a drift of the machine's
// load weighs on both alike. Each pair gives one ratio of the streamer's
// records/s to the ceiling's; streamer/ceiling is the median of the pairs,
// min- and max-streamer/ceiling the extremes, every pair counted, and each
// pair is logged. The verdict is the median against passGoal: one slow pair
// moves it less than it moves a ratio of sums, and a streamer that is slower
// in most pairs fails.
//
// The broker and the registry run in a child process, so that this
// process's CPU time is the client's: reported per million records over all
// the pairs as streamer-cpu-s/1M and ceiling-cpu-s/1M and as their ratio
// cpu-streamer/ceiling (the steadier figure on a loaded machine), beside
// streamer-records/s and ceiling-records/s; the broker's CPU per million
// records is there too (streamer-broker-cpu-s/1M, ceiling-broker-cpu-s/1M).
func BenchmarkThroughput(b *testing.B) {
	brokers, registry, broker := brokerProcess(b)
	e := newTestEnvOn(b, 6, brokers, registry)
	for _, c := range []struct {
		name     string
		passEach int     // one product in passEach has "phone" in its name
		goal     float64 // streamer/ceiling the streamer must reach
	}{
		{"pass100", 1, 0.97},
		{"pass10", 10, 0.95},
	} {
		b.Run(c.name, func(b *testing.B) {
			values := benchValues(b, e.serde, e.topics.Products, c.passEach)
			var streamer, ceiling throughput
			var ratios []float64
			for i := range benchPairs {
				var pair [2]throughput // the ceiling's run, the streamer's
				for _, isCeiling := range [][]bool{{true, false}, {false, true}}[i%2] {
					pair[b2i(!isCeiling)] = benchThroughput(b, e, broker, values, c.passEach, isCeiling)
				}
				ceiling.add(pair[0])
				streamer.add(pair[1])
				ratios = append(ratios, pair[1].rate()/pair[0].rate())
				if b.N == 1 {
					break // the first, one-record call only checks that both work
				}
				b.Logf("pair %d (%s first): streamer/ceiling %.3f (%.2f vs %.2f s), client CPU %.3f vs %.3f s/1M (%.3f)", i+1,
					[]string{"ceiling", "streamer"}[i%2], ratios[i], pair[1].elapsed.Seconds(), pair[0].elapsed.Seconds(),
					pair[1].cpuPerMillion(), pair[0].cpuPerMillion(), pair[1].cpuPerMillion()/pair[0].cpuPerMillion())
			}
			verdict := "met"
			if median(ratios) < c.goal {
				verdict = "NOT met"
			}
			if b.N > 1 {
				b.Logf("%s: streamer/ceiling median %.3f of %d pairs (%.3f-%.3f), goal %.2f %s; client CPU %.3f times the ceiling's",
					c.name, median(ratios), len(ratios), slices.Min(ratios), slices.Max(ratios), c.goal, verdict,
					streamer.cpuPerMillion()/ceiling.cpuPerMillion())
			}
			b.ReportMetric(streamer.rate(), "streamer-records/s")
			b.ReportMetric(ceiling.rate(), "ceiling-records/s")
			b.ReportMetric(median(ratios), "streamer/ceiling")
			b.ReportMetric(slices.Min(ratios), "min-streamer/ceiling")
			b.ReportMetric(slices.Max(ratios), "max-streamer/ceiling")
			b.ReportMetric(streamer.cpuPerMillion(), "streamer-cpu-s/1M")
			b.ReportMetric(ceiling.cpuPerMillion(), "ceiling-cpu-s/1M")
			b.ReportMetric(streamer.cpuPerMillion()/ceiling.cpuPerMillion(), "cpu-streamer/ceiling")
			b.ReportMetric(streamer.brokerPerMillion(), "streamer-broker-cpu-s/1M")
			b.ReportMetric(ceiling.brokerPerMillion(), "ceiling-broker-cpu-s/1M")
		})
	}
}

// benchPairs is how many ceiling/streamer pairs each case of
// BenchmarkThroughput runs; even, so that each side goes first as often.
const benchPairs = 4

// throughput sums one side's runs.
type throughput struct {
	runs              int
	records           int
	elapsed, cpu, brk time.Duration // brk: the broker process's CPU
}

func (t *throughput) add(u throughput) {
	t.runs += u.runs
	t.records += u.records
	t.elapsed += u.elapsed
	t.cpu += u.cpu
	t.brk += u.brk
}

func (t *throughput) rate() float64 { return float64(t.records) / t.elapsed.Seconds() }

func (t *throughput) cpuPerMillion() float64 { return t.cpu.Seconds() * 1e6 / float64(t.records) }

func (t *throughput) brokerPerMillion() float64 { return t.brk.Seconds() * 1e6 / float64(t.records) }

// benchRun numbers the runs, for their topics and groups.
var benchRun atomic.Int64

// benchThroughput runs the streamer (or the ceiling) over b.N records.
func benchThroughput(b *testing.B, e *testEnv, broker int, values [][]byte, passEach int, ceiling bool) throughput {
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
	// The side's goroutines, and those its clients start, carry a profiler
	// label: go tool pprof -tagfocus side=streamer (or side=ceiling) shows
	// one side's CPU in a -cpuprofile of the benchmark.
	side := pprof.Labels("side", map[bool]string{true: "ceiling", false: "streamer"}[ceiling])
	go pprof.Do(rctx, side, func(rctx context.Context) {
		if ceiling {
			done <- strictCeiling(rctx, s, passEach)
		} else {
			done <- s.Run(rctx)
		}
	})
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
	// Both sides start from a collected heap: the garbage of setting up
	// the input is not left for one of them to collect.
	runtime.GC()
	cpu0, broker0 := processCPU(), pidCPU(broker)
	start := time.Now()
	b.StartTimer()
	if err := input.EndTransaction(ctx, kgo.TryCommit); err != nil {
		b.Fatal(err)
	}
	waitCommitted(b, e.admin, group, topics.Products, next)
	b.StopTimer()
	elapsed := time.Since(start)
	cpu, brokerCPU := processCPU()-cpu0, pidCPU(broker)-broker0

	// The figure counts only if the output is right.
	want := (b.N + passEach - 1) / passEach
	got := 0
	if err := topicread.Read(ctx, e.kafka, topics.Filtered, topicread.Options{}, func(*kgo.Record) error { got++; return nil }); err != nil {
		b.Fatal(err)
	}
	if got != want {
		b.Fatalf("%d records in the output, want %d", got, want)
	}
	// The broker keeps every topic in memory: without them, the runs after
	// this one start with the same broker as this one did.
	if _, err := e.admin.DeleteTopics(ctx, topics.Products, topics.Filtered); err != nil {
		b.Fatal(err)
	}
	return throughput{runs: 1, records: b.N, elapsed: elapsed, cpu: cpu, brk: brokerCPU}
}

// benchValues are framed products as the emulator makes them (about 930
// bytes), the first of every passEach named with "phone" and none of the
// others.
func benchValues(b *testing.B, serde *records.Serde, topic string, passEach int) [][]byte {
	g, err := shopgen.New(shopgen.Options{Seed: 1, Now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for i := range 10 * passEach {
		var p records.Product
		g.Fill(&p, uint64(i))
		switch {
		case i%passEach == 0:
			p.Name = "Galaxy Phone 15, 256 GB, " + p.Name
		case strings.Contains(strings.ToLower(p.Name), "phone"):
			p.Name = "Laptop Pro 14 inch, space grey"
		}
		v, err := serde.Encode(context.Background(), nil, topic, &p)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// strictCeiling is what the streamer does with nothing decoded: the
// streamer's own session options and batch size, forwarding the bytes of
// every passEach-th record it consumes with the header the streamer adds.
// (The inputs have no headers of their own.)
func strictCeiling(ctx context.Context, s *Streamer, passEach int) error {
	version := []kgo.RecordHeader{{Key: HeaderFilterVersion, Value: []byte("1")}}
	sess, err := s.cfg.Kafka.WithLogger(s.cfg.Logger).NewGroupTransactSession(s.sessionOpts(kprom.NewMetrics("ceiling"))...)
	if err != nil {
		return err
	}
	defer sess.Close()
	out := make([]kgo.Record, s.cfg.MaxBatch)
	seen := 0
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
			seen++
			if (seen-1)%passEach != 0 {
				return
			}
			out[i] = kgo.Record{Topic: s.cfg.Topics.Filtered, Key: r.Key, Value: r.Value, Headers: version, Timestamp: r.Timestamp}
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

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// brokerEnv makes the test binary a broker process (runBroker).
const brokerEnv = "STREAMER_TEST_BROKER"

// runBroker runs kfake and the registry until its stdin closes, after
// printing where they listen.
func runBroker() int {
	ctx := context.Background()
	stack, err := environment.Start(ctx, environment.Options{StartKafka: true, StartRegistry: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stack.Close()
	fmt.Printf("%s %s\n", strings.Join(stack.KafkaBrokers, ","), stack.RegistryURL)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// pidCPU is the CPU time (user and system) process pid has used.
func pidCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name: utime and stime are the 12th and
	// 13th, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// brokerProcess starts a broker process for the benchmark and returns
// where its brokers and registry listen, and its pid.
func brokerProcess(b *testing.B) (brokers []string, registryURL string, pid int) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), brokerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addrs, registryURL, ok := strings.Cut(strings.TrimSpace(line), " ")
	if err != nil || !ok {
		b.Fatalf("the broker process did not say where it listens (%q, %v)", line, err)
	}
	return strings.Split(addrs, ","), registryURL, cmd.Process.Pid
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
