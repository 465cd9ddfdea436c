package emulation

import (
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/runwatch"
	"github.com/shopstream/shopstream/workflows"
)

func TestParseCount(t *testing.T) {
	for i, c := range []struct {
		in   string
		want int64
	}{
		{"100000", 100_000}, {"100_000", 100_000}, {"100k", 100_000}, {"1M", 1_000_000},
		{"2.5M", 2_500_000}, {"1e6", 1_000_000}, {" 7 ", 7},
	} {
		if got, err := ParseCount(c.in); err != nil || got != c.want {
			t.Errorf("#%d: ParseCount(%q) = %d, %v; want %d", i, c.in, got, err, c.want)
		}
	}
	for i, in := range []string{"0", "-1", "1.5", "abc", "", "1e20", "0.5", "1.0001k"} {
		if got, err := ParseCount(in); err == nil {
			t.Errorf("#%d: ParseCount(%q) = %d, want an error", i, in, got)
		}
	}
}

// Progress shows committed products against the count, the rate over the
// last seconds and the time left; the rate follows a stall within ten
// seconds.
func TestProgressLineAndRate(t *testing.T) {
	p := workflows.EmulateProgress{Count: 1000, Committed: 250, Batches: 10, BatchesDone: 2, Running: 3}
	if got, want := progressLine(p, 100, 7500*time.Millisecond), "emulate: 250/1000 products committed (25.0%), 2/10 batches, 3 running, 100/s, ETA 8s"; got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
	if got := progressBar(p, 0, 0); !strings.HasPrefix(got, strings.Repeat("█", 7)+strings.Repeat("░", 23)) || !strings.Contains(got, "25.0%  250/1000") {
		t.Errorf("progressBar = %q", got)
	}
	var m runwatch.RateMeter
	t0 := time.Unix(0, 0)
	m.Add(t0, 0)
	if r := m.Add(t0.Add(2*time.Second), 200); r != 100 {
		t.Errorf("rate after 200 in 2s = %v, want 100", r)
	}
	for s := 3; s <= 20; s++ {
		m.Add(t0.Add(time.Duration(s)*time.Second), 200) // stalled
	}
	if r := m.Add(t0.Add(21*time.Second), 200); r != 0 {
		t.Errorf("rate after a stall of 19s = %v, want 0", r)
	}
}
