package streamer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/topicread"
)

// BenchmarkScaleOut runs the real `shopstream streamer` binary as separate
// processes in one consumer group over 1M products on 12 partitions of one
// in-process broker: one instance, then a second joins a third of the way
// through, then a third at two thirds. It reports the group's records/s in
// each phase, how long each join stopped the group's commits, how many
// partitions each join took from the instances already there (with the
// cooperative-sticky assignor only the ones the newcomer gets), and checks
// the filtered topic, read as read_committed, for lost and duplicated
// products.
//
//	go test ./streamer -run '^$' -bench ScaleOut -benchtime 1x   (make bench-scaleout)
func BenchmarkScaleOut(b *testing.B) {
	const (
		products   = 1_000_000
		partitions = 12
		instances  = 3
	)
	bin := buildShopstream(b)
	var rates [instances][]float64
	var pauses [instances][]float64
	for range b.N {
		e := newTestEnv(b, partitions)
		want := e.produce(0, products)
		adm := e.admin
		group := DefaultGroup

		var progress []sample
		var mu sync.Mutex
		done := make(chan struct{})
		stopSampling := make(chan struct{})
		go func() {
			defer close(done)
			for {
				n := committed(adm, group, e.topics.Products)
				mu.Lock()
				progress = append(progress, sample{time.Now(), n})
				mu.Unlock()
				if n >= products {
					return
				}
				select {
				case <-stopSampling:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()

		var procs []*streamerProcess
		b.Cleanup(func() {
			for _, p := range procs {
				p.stop(b)
			}
		})
		joins := make([]time.Time, 0, instances)
		for i := 1; i <= instances; i++ {
			// The next instance joins when the group has done its share of
			// the work with the ones already there.
			if i > 1 {
				waitGroupProgress(b, &mu, &progress, int64(products*(i-1)/instances), done)
			}
			joins = append(joins, time.Now())
			procs = append(procs, startStreamer(b, bin, e, fmt.Sprintf("scaleout-%d", i)))
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			close(stopSampling)
			b.Fatalf("the group did not commit %d products in 5 minutes", products)
		}

		mu.Lock()
		report := scaleOutReport(progress, joins, procs)
		mu.Unlock()
		// Printed, not logged: the testing package cuts a benchmark's log
		// after a few lines.
		fmt.Printf("%d products, %d partitions, `shopstream streamer` processes joining one by one:\n%s", products, partitions, report.table)
		for i := range instances {
			rates[i] = append(rates[i], report.phases[i])
			pauses[i] = append(pauses[i], float64(report.pauses[i].Milliseconds()))
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var got []*kgo.Record
		if err := topicread.Read(ctx, e.kafka, e.topics.Filtered, topicread.Options{}, func(r *kgo.Record) error { got = append(got, r); return nil }); err != nil {
			cancel()
			b.Fatal(err)
		}
		cancel()
		expectSameKeys(b, got, want)
		fmt.Printf("filtered topic (read_committed): %d records for %d products: 0 lost, 0 duplicated\n\n", len(got), len(want))
		for _, p := range procs {
			p.stop(b)
		}
	}
	for i := range instances {
		b.ReportMetric(median(rates[i]), fmt.Sprintf("rec/s_%d_instances", i+1))
		if i > 0 {
			b.ReportMetric(median(pauses[i]), fmt.Sprintf("ms_pause_join_%d", i+1))
		}
	}
}

// median is the middle of xs, or the mean of the two middle values when
// their number is even.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

type sample struct {
	at        time.Time
	committed int64
}

// committed is the sum of the group's committed offsets on topic (the
// product topic has no transaction markers: it counts records).
func committed(adm *kadm.Client, group, topic string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			n += o.At
		}
	})
	return n
}

func waitGroupProgress(b *testing.B, mu *sync.Mutex, progress *[]sample, n int64, done <-chan struct{}) {
	b.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		mu.Lock()
		last := int64(0)
		if len(*progress) > 0 {
			last = (*progress)[len(*progress)-1].committed
		}
		mu.Unlock()
		if last >= n {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.Fatalf("the group did not commit %d products in 3 minutes", n)
}

// buildShopstream builds the binary the processes run.
func buildShopstream(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "shopstream")
	cmd := exec.Command("go", "build", "-o", bin, "./cli")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build shopstream: %v\n%s", err, out)
	}
	return bin
}

// streamerProcess is one `shopstream streamer` and what its log said about
// its partitions.
type streamerProcess struct {
	id      string
	cmd     *exec.Cmd
	mu      sync.Mutex
	events  []partitionEvent
	exited  chan struct{}
	stopped bool
}

type partitionEvent struct {
	at       time.Time
	assigned bool
	count    int
}

// partitionLog matches the streamer's "partitions assigned/revoked" lines,
// whose value is quoted once it holds a space: partitions="map[t:[0 1]]".
var partitionLog = regexp.MustCompile(`msg="partitions (assigned|revoked)".*partitions="?map\[[^\[]*\[([0-9 ]*)\]`)

func startStreamer(b *testing.B, bin string, e *testEnv, id string) *streamerProcess {
	b.Helper()
	cmd := exec.Command(bin, "streamer", "--instance-id", id, "--transactional-id", id,
		"--recommender", "off", "--metrics-addr", "127.0.0.1:0", "--log-level", "info")
	// Its own working directory: no .env file of the repository applies.
	cmd.Dir = b.TempDir()
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(e.kc.Brokers, ","), "SCHEMA_REGISTRY_URL="+e.kc.RegistryURL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &streamerProcess{id: id, cmd: cmd, exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if os.Getenv("STREAMER_TEST_LOG") != "" {
				fmt.Fprintln(os.Stderr, id, line)
			}
			if m := partitionLog.FindStringSubmatch(line); m != nil {
				p.mu.Lock()
				p.events = append(p.events, partitionEvent{time.Now(), m[1] == "assigned", len(strings.Fields(m[2]))})
				p.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	return p
}

// stop sends SIGTERM and waits for the process to leave.
func (p *streamerProcess) stop(b *testing.B) {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		b.Errorf("streamer %s did not stop within 15 s of SIGTERM", p.id)
	}
}

type scaleOut struct {
	table  string
	phases []float64       // records/s with 1, 2, 3 instances
	pauses []time.Duration // longest stop of the group's commits after each join
}

// scaleOutReport cuts the progress into phases at the joins. A phase's rate
// runs from the end of its join's pause to the next join (the last one to
// 95% of the products, before partitions start running dry); the pause is
// the longest time without a commit in the phase.
func scaleOutReport(progress []sample, joins []time.Time, procs []*streamerProcess) scaleOut {
	var out scaleOut
	total := progress[len(progress)-1].committed
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-10s %12s %18s %14s %18s\n", "instances", "records/s", "start→partitions", "group pause", "partitions moved")
	for i, join := range joins {
		var end time.Time
		if i+1 < len(joins) {
			end = joins[i+1]
		} else {
			end = timeAt(progress, total*95/100)
		}
		pause, resumed := longestStall(progress, join, end)
		if i == 0 {
			pause, resumed = 0, firstProgress(progress)
		}
		rate := rateBetween(progress, resumed, end)
		moved := 0
		for _, p := range procs[:i] {
			moved += p.revokedBetween(join, end)
		}
		out.phases = append(out.phases, rate)
		out.pauses = append(out.pauses, pause)
		assigned := procs[i].firstAssigned().Sub(join).Round(time.Millisecond).String()
		pauseText, movedText := "-", "-"
		if i > 0 {
			pauseText = pause.Round(time.Millisecond).String()
			movedText = fmt.Sprintf("%d of %d", moved, 12)
		}
		fmt.Fprintf(&tb, "%-10d %12.0f %18s %14s %18s\n", i+1, rate, assigned, pauseText, movedText)
	}
	out.table = tb.String()
	return out
}

// revokedBetween counts the partitions the process gave up in [from, to).
func (p *streamerProcess) revokedBetween(from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ev := range p.events {
		if !ev.assigned && !ev.at.Before(from) && ev.at.Before(to) {
			n += ev.count
		}
	}
	return n
}

// firstAssigned is when the process was first given partitions.
func (p *streamerProcess) firstAssigned() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if ev.assigned && ev.count > 0 {
			return ev.at
		}
	}
	return time.Time{}
}

func longestStall(progress []sample, from, to time.Time) (time.Duration, time.Time) {
	var longest time.Duration
	resumed := from
	var lastMove time.Time
	for i, s := range progress {
		if s.at.Before(from) || s.at.After(to) || i == 0 {
			continue
		}
		if lastMove.IsZero() {
			lastMove = s.at
		}
		if s.committed > progress[i-1].committed {
			if d := s.at.Sub(lastMove); d > longest {
				longest, resumed = d, s.at
			}
			lastMove = s.at
		}
	}
	return longest, resumed
}

func firstProgress(progress []sample) time.Time {
	for _, s := range progress {
		if s.committed > 0 {
			return s.at
		}
	}
	return progress[0].at
}

func timeAt(progress []sample, n int64) time.Time {
	for _, s := range progress {
		if s.committed >= n {
			return s.at
		}
	}
	return progress[len(progress)-1].at
}

func rateBetween(progress []sample, from, to time.Time) float64 {
	var first, last *sample
	for i := range progress {
		s := &progress[i]
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		if first == nil {
			first = s
		}
		last = s
	}
	if first == nil || last == first {
		return 0
	}
	return float64(last.committed-first.committed) / last.at.Sub(first.at).Seconds()
}
