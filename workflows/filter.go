package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// StreamFilterWorkflowID is fixed: there is one filter, owned by one
// long-running workflow that `shopstream filter` signals with start.
const StreamFilterWorkflowID = "shopstream-stream-filter"

// Signals and the query of StreamFilter.
const (
	SignalSetFilter   = "set-filter"
	SignalClearFilter = "clear-filter"
	QueryFilter       = "filter"
)

// Activity names implemented by activities.Filter. Both run as local
// activities: publishing is one small produce, and running it in the
// worker that handles the signal keeps a filter change off the activity
// task queue's round trip.
const (
	ActivityPublishFilterState = "PublishFilterState"
	ActivityLoadFilterState    = "LoadFilterState"
)

// MetricFilterDesiredVersion is the gauge of the filter version the
// workflow wants applied, emitted through the worker's Temporal metrics
// handler; each streamer exports the version it applied. The SDK does not
// record metrics while it replays, so a restarted worker exports it again
// from the next filter change on.
const MetricFilterDesiredVersion = "shopstream_filter_desired_version"

// Limits on filter input.
const (
	MaxFilterSubstringRunes = 200
	maxSetByRunes           = 200
	// DefaultMaxFilterChangesPerRun bounds a run's history even where the
	// server does not suggest continue-as-new.
	DefaultMaxFilterChangesPerRun = 500
	// recentFilterChanges is how many changes the query shows and
	// continue-as-new carries.
	recentFilterChanges = 20
)

// FilterState is the desired filter. Version 0 is the state before any
// change: the empty substring, everything passes.
type FilterState struct {
	Version       int64
	Substring     string
	CaseSensitive bool
	SetAt         time.Time
	SetBy         string
}

// SetFilterSignal asks for a new substring.
type SetFilterSignal struct {
	Substring     string
	CaseSensitive bool
	By            string
	// RequestID lets the sender find its change (and version) in the query.
	RequestID string
	// RequestedAt orders changes that reach the workflow in the same task:
	// signals of two names arrive on two channels, whose relative order the
	// SDK does not keep.
	RequestedAt time.Time
}

// ClearFilterSignal asks to let every product through.
type ClearFilterSignal struct {
	By          string
	RequestID   string
	RequestedAt time.Time
}

// Filter change actions.
const (
	FilterActionSet   = "set"
	FilterActionClear = "clear"
)

// FilterChange is one request and what became of it.
type FilterChange struct {
	RequestID     string
	Action        string
	Substring     string
	CaseSensitive bool
	By            string
	RequestedAt   time.Time
	// At is when the workflow applied it.
	At time.Time
	// Version is the state it created; 0 when rejected.
	Version  int64
	Rejected string
}

// StreamFilterInput carries the state across continue-as-new. The first run
// starts with a nil State and loads the newest state from the control topic,
// so versions keep increasing even after the workflow was terminated.
type StreamFilterInput struct {
	State     *FilterState
	Published int64
	Recent    []FilterChange
	// MaxChangesPerRun: 0 means DefaultMaxFilterChangesPerRun.
	MaxChangesPerRun int
}

// StreamFilterStatus is what QueryFilter returns.
type StreamFilterStatus struct {
	Desired FilterState
	// PublishedVersion is the newest version on the control topic.
	PublishedVersion int64
	// Recent are the latest changes, oldest first.
	Recent         []FilterChange
	ChangesThisRun int
}

// Change returns the recent change made by a request.
func (s StreamFilterStatus) Change(requestID string) (FilterChange, bool) {
	for _, c := range s.Recent {
		if c.RequestID == requestID {
			return c, true
		}
	}
	return FilterChange{}, false
}

// PublishFilterStateInput is one state to write to the control topic.
type PublishFilterStateInput struct {
	State FilterState
}

// PublishFilterStateResult says where it was written.
type PublishFilterStateResult struct {
	Topic     string
	Partition int32
	Offset    int64
}

// LoadFilterStateInput asks for the newest state on the control topic.
type LoadFilterStateInput struct{}

// LoadFilterStateResult is that state; Found is false on an empty topic.
type LoadFilterStateResult struct {
	Found bool
	State FilterState
}

// ValidateFilterSubstring checks a substring to set: not empty (clearing is
// its own request), valid UTF-8, at most MaxFilterSubstringRunes characters,
// no control characters.
func ValidateFilterSubstring(s string) error {
	switch {
	case s == "":
		return errors.New("the substring is empty: clear the filter to let everything through")
	case !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError):
		// U+FFFD is what a JSON encoder makes of invalid UTF-8 on the way
		// here: the text was mangled before it arrived.
		return errors.New("the substring is not valid UTF-8")
	case utf8.RuneCountInString(s) > MaxFilterSubstringRunes:
		return fmt.Errorf("the substring has %d characters, at most %d are allowed", utf8.RuneCountInString(s), MaxFilterSubstringRunes)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("the substring contains a control character")
	}
	return nil
}

func validateBy(by string) error {
	if !utf8.ValidString(by) || utf8.RuneCountInString(by) > maxSetByRunes {
		return fmt.Errorf("the requester name must be valid UTF-8 of at most %d characters", maxSetByRunes)
	}
	return nil
}

// StreamFilter owns the streamer's filter: it applies set and clear signals
// in order, each as a new version, publishes every new state to the control
// topic, answers QueryFilter, and continues as new when Temporal suggests it
// (or after MaxChangesPerRun changes) without dropping a signal.
func StreamFilter(ctx workflow.Context, in StreamFilterInput) error {
	w := &filterRun{in: in, recent: in.Recent, published: in.Published}
	if in.State != nil {
		w.desired = *in.State
	}
	if w.in.MaxChangesPerRun <= 0 {
		w.in.MaxChangesPerRun = DefaultMaxFilterChangesPerRun
	}
	if err := workflow.SetQueryHandler(ctx, QueryFilter, func() (StreamFilterStatus, error) {
		return w.status(), nil
	}); err != nil {
		return fmt.Errorf("register query %s: %w", QueryFilter, err)
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		// Retried until Kafka answers; signals queue up meanwhile and the
		// newest state is published next.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second},
	})
	log := workflow.GetLogger(ctx)

	if in.State == nil {
		var res LoadFilterStateResult
		if err := workflow.ExecuteLocalActivity(lctx, ActivityLoadFilterState, LoadFilterStateInput{}).Get(ctx, &res); err != nil {
			return fmt.Errorf("load the filter state from the control topic: %w", err)
		}
		if res.Found {
			w.desired, w.published = res.State, res.State.Version
			log.Info("filter loaded from the control topic", "version", res.State.Version, "substring", res.State.Substring)
		}
	}

	desired := workflow.GetMetricsHandler(ctx).Gauge(MetricFilterDesiredVersion)
	desired.Update(float64(w.desired.Version))

	setCh := workflow.GetSignalChannel(ctx, SignalSetFilter)
	clearCh := workflow.GetSignalChannel(ctx, SignalClearFilter)
	pending := func() bool { return setCh.Len() > 0 || clearCh.Len() > 0 }
	for {
		if err := workflow.Await(ctx, pending); err != nil {
			return err
		}
		w.apply(ctx, drain(setCh, clearCh))
		desired.Update(float64(w.desired.Version))
		if w.desired.Version > w.published {
			var res PublishFilterStateResult
			err := workflow.ExecuteLocalActivity(lctx, ActivityPublishFilterState, PublishFilterStateInput{State: w.desired}).Get(ctx, &res)
			if err != nil {
				return fmt.Errorf("publish filter v%d: %w", w.desired.Version, err)
			}
			w.published = w.desired.Version
			log.Info("filter published", "version", w.published, "topic", res.Topic, "offset", res.Offset)
			if err := workflow.UpsertMemo(ctx, map[string]any{
				"filter":         describeFilter(w.desired),
				"filter_version": w.desired.Version,
			}); err != nil {
				log.Warn("upsert memo", "err", err)
			}
		}
		if w.changes >= w.in.MaxChangesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			if pending() {
				continue // signals that came while publishing belong to this run
			}
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			log.Info("continuing as new", "version", w.desired.Version, "changes", w.changes)
			return workflow.NewContinueAsNewError(ctx, StreamFilter, w.next())
		}
	}
}

// request is a set or clear signal, in one type for ordering.
type request struct {
	set   *SetFilterSignal
	clear *ClearFilterSignal
}

func (r request) at() time.Time {
	if r.set != nil {
		return r.set.RequestedAt
	}
	return r.clear.RequestedAt
}

// drain takes every signal waiting on either channel, in the order they
// were requested.
func drain(setCh, clearCh workflow.ReceiveChannel) []request {
	var out []request
	for {
		var s SetFilterSignal
		if !setCh.ReceiveAsync(&s) {
			break
		}
		out = append(out, request{set: &s})
	}
	for {
		var c ClearFilterSignal
		if !clearCh.ReceiveAsync(&c) {
			break
		}
		out = append(out, request{clear: &c})
	}
	orderRequests(out)
	return out
}

// orderRequests sorts requests by the time they were requested, keeping the
// arrival order of equal times.
func orderRequests(rs []request) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].at().Before(rs[j].at()) })
}

type filterRun struct {
	in        StreamFilterInput
	desired   FilterState
	published int64
	recent    []FilterChange
	changes   int
}

func (w *filterRun) apply(ctx workflow.Context, reqs []request) {
	log := workflow.GetLogger(ctx)
	now := workflow.Now(ctx)
	for _, r := range reqs {
		var c FilterChange
		var err error
		if r.set != nil {
			c = FilterChange{RequestID: r.set.RequestID, Action: FilterActionSet, Substring: r.set.Substring,
				CaseSensitive: r.set.CaseSensitive, By: r.set.By, RequestedAt: r.set.RequestedAt, At: now}
			err = ValidateFilterSubstring(r.set.Substring)
		} else {
			c = FilterChange{RequestID: r.clear.RequestID, Action: FilterActionClear, By: r.clear.By, RequestedAt: r.clear.RequestedAt, At: now}
		}
		if err == nil {
			err = validateBy(c.By)
		}
		if err != nil {
			c.Rejected = err.Error()
			c.Substring = truncate(c.Substring)
			c.By = truncate(c.By)
			log.Warn("filter change rejected", "request", c.RequestID, "by", c.By, "reason", c.Rejected)
		} else {
			w.desired = FilterState{Version: w.desired.Version + 1, Substring: c.Substring, CaseSensitive: c.CaseSensitive, SetAt: now, SetBy: c.By}
			c.Version = w.desired.Version
			w.changes++
			log.Info("filter changed", "version", c.Version, "action", c.Action, "substring", c.Substring,
				"case_sensitive", c.CaseSensitive, "by", c.By, "request", c.RequestID)
		}
		w.recent = append(w.recent, c)
		if n := len(w.recent); n > recentFilterChanges {
			w.recent = append([]FilterChange(nil), w.recent[n-recentFilterChanges:]...)
		}
	}
}

// truncate keeps a rejected value short enough to show and carry.
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}

func (w *filterRun) status() StreamFilterStatus {
	return StreamFilterStatus{
		Desired: w.desired, PublishedVersion: w.published,
		Recent: append([]FilterChange(nil), w.recent...), ChangesThisRun: w.changes,
	}
}

func (w *filterRun) next() StreamFilterInput {
	st := w.desired
	return StreamFilterInput{State: &st, Published: w.published, Recent: w.recent, MaxChangesPerRun: w.in.MaxChangesPerRun}
}

func describeFilter(s FilterState) string {
	if s.Substring == "" {
		return "everything passes"
	}
	mode := "case-insensitive"
	if s.CaseSensitive {
		mode = "case-sensitive"
	}
	return fmt.Sprintf("name contains %q (%s), set by %s", s.Substring, mode, s.SetBy)
}
