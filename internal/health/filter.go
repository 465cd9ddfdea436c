package health

import (
	"fmt"
	"time"

	"github.com/shopstream/shopstream/internal/records"
)

// FilterStaleAfter is how long a live streamer instance may apply another
// filter version than the desired one before it is unhealthy; the alert
// rule uses the same bound.
const FilterStaleAfter = time.Minute

// Instance is one streamer instance's report against the desired filter.
type Instance struct {
	records.AppliedReport
	Live    bool   `json:"live"`
	Applied bool   `json:"applied"`
	State   string `json:"state"` // applied, behind, ahead, or gone (…)
}

// Filter is the desired filter against what every instance applies.
type Filter struct {
	Desired   int64
	SetAt     time.Time
	Instances []Instance
}

// CheckFilter compares the instances' reports (ReadApplied) with
// the desired version, set at setAt.
func CheckFilter(desired int64, setAt time.Time, reports []records.AppliedReport, now time.Time) Filter {
	f := Filter{Desired: desired, SetAt: setAt, Instances: make([]Instance, 0, len(reports))}
	for _, r := range reports {
		v := Instance{AppliedReport: r, Live: r.Live(now), Applied: r.Version == desired}
		switch {
		case !v.Live:
			v.State = "gone (no heartbeat since " + r.HeartbeatAt.Format(time.RFC3339) + ")"
		case v.Applied:
			v.State = "applied"
		case r.Version < desired:
			v.State = "behind"
		default:
			v.State = "ahead"
		}
		f.Instances = append(f.Instances, v)
	}
	return f
}

// Problems says what is wrong: a live instance that has not applied a
// change made more than FilterStaleAfter ago, or no live instance at all.
func (f Filter) Problems(now time.Time) []string {
	var out []string
	live := 0
	for _, v := range f.Instances {
		if !v.Live {
			continue
		}
		live++
		if !v.Applied && now.Sub(f.SetAt) > FilterStaleAfter {
			out = append(out, fmt.Sprintf("streamer %s applies filter v%d, desired v%d for over %s", v.Instance, v.Version, f.Desired, FilterStaleAfter))
		}
	}
	if live == 0 {
		out = append(out, "no live streamer instance reports a filter version: is `shopstream streamer` (or dev) running?")
	}
	return out
}
