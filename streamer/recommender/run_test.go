package recommender

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
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
		cfg  Config
		want []string
	}{
		{Config{Brokers: h.brokers, Topics: mismatched, Serde: h.serde}, []string{"find (3 partitions)", "recom_two (2 partitions)", "same number of partitions"}},
		{Config{Brokers: h.brokers, Topics: missing, Serde: h.serde}, []string{"topic no_such_topic does not exist", "shopstream bootstrap"}},
		{Config{Topics: h.topics, Serde: h.serde}, []string{"no Kafka brokers"}},
	} {
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		err := Run(ctx, c.cfg)
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
