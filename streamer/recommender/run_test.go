package recommender

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/component"
)

func TestRunChecksTopics(t *testing.T) {
	h := newHarness(t)
	// recom with 2 partitions against find's 3.
	mismatched := h.topics
	mismatched.Recommendations = "recom_two"
	if _, err := h.admin.CreateTopic(h.ctx, 2, 1, nil, mismatched.Recommendations); err != nil {
		t.Fatal(err)
	}
	missing := h.topics
	missing.Filtered = "no_such_topic"
	for i, c := range []struct {
		cfg  Options
		want []string
	}{
		{Options{Deps: component.Deps{Kafka: h.kafka, Topics: mismatched, Serde: h.serde}}, []string{"find (3 partitions)", "recom_two (2 partitions)", "same number of partitions"}},
		{Options{Deps: component.Deps{Kafka: h.kafka, Topics: missing, Serde: h.serde}}, []string{"topic no_such_topic does not exist", "shopstream bootstrap"}},
		{Options{Deps: component.Deps{Topics: h.topics, Serde: h.serde}}, []string{"no Kafka clients"}},
	} {
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		err := runOnce(ctx, c.cfg)
		cancel()
		if err == nil {
			t.Errorf("#%d: Run started, want an error", i)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("#%d: error %q does not say %q", i, err, w)
			}
		}
	}
}

// Run stops soon after its context ends, whether it is catching up or
// joining.
func TestRunStopsOnCancel(t *testing.T) {
	h := newHarness(t)
	in := h.start("stopper", nil)
	h.writePrompt("u", prompt("u", "s", "anything", 1))
	h.waitPromptsJoined()
	t0 := time.Now()
	in.stop(t)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Run took %s to stop", d)
	}
}

// The streamer must stay free of Temporal (DESIGN.md: the hot path never
// waits on Temporal).
func TestNoTemporalDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "go.temporal.io") {
			t.Fatalf("streamer/recommender depends on %s", dep)
		}
	}
}

// Started before `shopstream bootstrap` (as `shopstream dev` starts it),
// Run waits for its topics instead of failing.
func TestRunWaitsForTopics(t *testing.T) {
	h := newHarness(t)
	topics := h.topics
	topics.Filtered = "filtered_later"
	caught := make(chan int, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	go func() {
		done <- runOnce(ctx, Options{Deps: component.Deps{Kafka: h.kafka, Topics: topics, Serde: h.serde}, InstanceID: "waiter",
			TopicWait: 30 * time.Second, OnCaughtUp: func(n int) { caught <- n }})
	}()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before its topic existed", err)
	case <-caught:
		t.Fatal("Run caught up on a topic that does not exist")
	default:
	}
	if _, err := h.admin.CreateTopic(h.ctx, testPartitions, 1, nil, topics.Filtered); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-caught:
		if n != 0 {
			t.Errorf("caught up with %d products, want 0", n)
		}
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not start within 20s of the topic's creation")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel", err)
	}
}
