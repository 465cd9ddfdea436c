package recommender

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/testtool"
)

// The scenario with one instance from start to end.
func TestScenarioOneInstance(t *testing.T) {
	h := newHarness(t)
	s := loadScenario(t)
	in := h.start("one", nil)
	h.run(s, func() []*instance { return []*instance{in} }, nil)
	h.check(s, 1)
	// What the metrics say follows from testdata/scenario.json: 14 valid
	// prompts, 10 of which matched 11 products in all; 6 products remain.
	for name, want := range map[string]float64{
		"shopstream_recommender_prompts_total":      14,
		"shopstream_recommender_matches_total":      11,
		"shopstream_recommender_table_products":     6,
		"shopstream_recommender_table_caught_up":    1,
		"shopstream_recommender_dead_letters_total": 6, // 5 prompts, 1 product
		"shopstream_recommender_users":              6,
	} {
		if got := testtool.MetricValue(t, in.reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := testtool.MetricValue(t, in.reg, "shopstream_recommender_prompts_total", "result", "unmatched"); got != 4 {
		t.Errorf("unmatched prompts = %v, want 4", got)
	}
	if got := testtool.MetricValue(t, in.reg, "shopstream_recommender_prompt_freshness_seconds"); got != 14 {
		t.Errorf("join latency observed %v times, want 14", got)
	}
	in.stop(t)
}

// The instance stops cleanly after the first prompts; products change while
// nothing runs; a new instance rebuilds the table and each user's previous
// recommendations from Kafka and carries on.
func TestScenarioRestartInTheMiddle(t *testing.T) {
	h := newHarness(t)
	s := loadScenario(t)
	first := firstPromptStep(t, s)
	var running []*instance
	running = append(running, h.start("a", nil))
	h.run(s, func() []*instance { return running }, func(i int) {
		switch {
		case i == first+1:
			running[0].stop(t)
			running = nil
		case i == len(s.Steps)-1:
			running = append(running, h.start("a", nil))
		}
	})
	h.check(s, 2)
	running[0].stop(t)
}

// The instance crashes after producing a batch of the last prompts, before
// the transaction ends. Its replacement (same instance id) fences the open
// transaction; the prompts are joined again; nobody sees a duplicate.
func TestScenarioCrashInTheMiddle(t *testing.T) {
	h := newHarness(t)
	s := loadScenario(t)
	crash := make(chan struct{})
	var armed atomic.Bool
	hooks := &testHooks{afterProduce: func() error {
		if !armed.CompareAndSwap(true, false) {
			return nil
		}
		close(crash)
		return errors.New("simulated crash")
	}}
	var mu sync.Mutex
	running := []*instance{h.start("a", hooks)}
	get := func() []*instance { mu.Lock(); defer mu.Unlock(); return running }
	last := len(s.Steps) - 1
	replaced := make(chan struct{})
	h.run(s, get, func(i int) {
		if i != last {
			return
		}
		armed.Store(true)
		// The crash happens while the step waits for its prompts to be
		// joined; then a replacement takes over.
		crashed := get()[0]
		go func() {
			defer close(replaced)
			<-crash
			<-crashed.done
			if err := crashed.err; err == nil || err.Error() != "simulated crash" {
				t.Errorf("crashed instance returned %v, want the simulated crash", err)
			}
			in := h.start("a", nil)
			mu.Lock()
			running = []*instance{in}
			mu.Unlock()
		}()
	})
	<-replaced
	h.check(s, 2)
	all, committed := len(h.readAll(h.topics.Recommendations, false)), len(h.readAll(h.topics.Recommendations, true))
	if all <= committed {
		t.Errorf("the crash left no aborted output (%d records, %d committed): the test did not crash mid-transaction", all, committed)
	}
}

// Three instances give the same answers as one.
func TestScenarioThreeInstances(t *testing.T) {
	h := newHarness(t)
	s := loadScenario(t)
	// Every partition must carry some user's prompts, or the test would
	// not show that the instances share the work.
	parts := map[int32]bool{}
	for user := range s.Expect {
		parts[int32(kgo.StickyKeyPartitioner(nil).ForTopic(h.topics.Find).Partition(&kgo.Record{Key: []byte(user)}, testPartitions))] = true
	}
	if len(parts) != testPartitions {
		t.Fatalf("the scenario's users fall in %d of %d partitions", len(parts), testPartitions)
	}
	ins := []*instance{h.start("x", nil), h.start("y", nil), h.start("z", nil)}
	h.run(s, func() []*instance { return ins }, nil)
	h.check(s, 3)
	for _, in := range ins {
		if n := testtool.MetricValue(t, in.reg, "shopstream_recommender_prompts_total"); n == 0 {
			t.Errorf("instance %s joined no prompt: the work was not shared", in.id)
		}
	}
	for _, in := range ins {
		in.stop(t)
	}
}

func firstPromptStep(t *testing.T, s scenario) int {
	for i, st := range s.Steps {
		if st.Prompts != nil {
			return i
		}
	}
	t.Fatal("the scenario has no prompts")
	return 0
}
