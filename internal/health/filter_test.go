package health

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

func TestCheckFilter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	report := func(id string, version int64, seen time.Duration) records.AppliedReport {
		return records.AppliedReport{Instance: id, Version: version, HeartbeatAt: now.Add(-seen), HeartbeatEvery: 5 * time.Second}
	}
	reports := []records.AppliedReport{
		report("a", 3, time.Second), report("b", 2, time.Second), report("c", 4, time.Second), report("d", 1, time.Minute),
	}
	for i, c := range []struct {
		setAgo   time.Duration
		reports  []records.AppliedReport
		states   string
		problems string
	}{
		{time.Second, reports, "[applied behind ahead gone (no heartbeat since 2026-03-01T11:59:00Z)]", "[]"},
		{2 * time.Minute, reports, "[applied behind ahead gone (no heartbeat since 2026-03-01T11:59:00Z)]",
			"[streamer b applies filter v2, desired v3 for over 1m0s streamer c applies filter v4, desired v3 for over 1m0s]"},
		{time.Second, reports[3:], "[gone (no heartbeat since 2026-03-01T11:59:00Z)]",
			"[no live streamer instance reports a filter version: is `shopstream streamer` (or dev) running?]"},
	} {
		f := CheckFilter(3, now.Add(-c.setAgo), c.reports, now)
		var states []string
		for _, v := range f.Instances {
			states = append(states, v.State)
		}
		if got := fmt.Sprint(states); got != c.states {
			t.Errorf("#%d states %s, want %s", i, got, c.states)
		}
		if got := fmt.Sprint(f.Problems(now)); got != c.problems {
			t.Errorf("#%d problems %s, want %s", i, got, c.problems)
		}
	}
}
