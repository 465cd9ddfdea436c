package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// filterEnv is a test environment for StreamFilter whose activities are
// mocked by name: LoadFilterState returns loaded, PublishFilterState records
// what it was given.
type filterEnv struct {
	*testsuite.TestWorkflowEnvironment
	published []FilterState
}

func newFilterEnv(t *testing.T, loaded LoadFilterStateResult) *filterEnv {
	return newFilterEnvOn(&testsuite.WorkflowTestSuite{}, loaded)
}

func newFilterEnvOn(s *testsuite.WorkflowTestSuite, loaded LoadFilterStateResult) *filterEnv {
	e := &filterEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment()}
	e.RegisterWorkflow(StreamFilter)
	// The names must be registered for local activities to be called by
	// name; the mocks below replace these bodies.
	e.RegisterActivityWithOptions(func(context.Context, LoadFilterStateInput) (LoadFilterStateResult, error) {
		return LoadFilterStateResult{}, errors.New("not mocked")
	}, activity.RegisterOptions{Name: ActivityLoadFilterState})
	e.RegisterActivityWithOptions(func(context.Context, PublishFilterStateInput) (PublishFilterStateResult, error) {
		return PublishFilterStateResult{}, errors.New("not mocked")
	}, activity.RegisterOptions{Name: ActivityPublishFilterState})
	e.OnActivity(ActivityLoadFilterState, mock.Anything, mock.Anything).Return(loaded, nil)
	e.OnActivity(ActivityPublishFilterState, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in PublishFilterStateInput) (PublishFilterStateResult, error) {
			e.published = append(e.published, in.State)
			return PublishFilterStateResult{Topic: "shopstream_filter", Offset: int64(len(e.published) - 1)}, nil
		})
	return e
}

func (e *filterEnv) status(t *testing.T) StreamFilterStatus {
	t.Helper()
	v, err := e.QueryWorkflow(QueryFilter)
	if err != nil {
		t.Fatal(err)
	}
	var st StreamFilterStatus
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestStreamFilterSetClearGet(t *testing.T) {
	e := newFilterEnv(t, LoadFilterStateResult{Found: true, State: FilterState{Version: 7, Substring: "old", SetBy: "ops"}})
	at := func(d time.Duration, f func()) { e.RegisterDelayedCallback(f, d) }

	at(time.Second, func() {
		if st := e.status(t); st.Desired.Version != 7 || st.Desired.Substring != "old" || st.PublishedVersion != 7 {
			t.Errorf("before any change: %+v, want v7 loaded from the control topic", st)
		}
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "Phone", By: "ana", RequestID: "r1", RequestedAt: t0})
	})
	at(2*time.Second, func() {
		st := e.status(t)
		if d := st.Desired; d.Version != 8 || d.Substring != "Phone" || d.CaseSensitive || d.SetBy != "ana" || st.PublishedVersion != 8 {
			t.Errorf("after set: %+v", st)
		}
		if c, ok := st.Change("r1"); !ok || c.Version != 8 || c.Rejected != "" {
			t.Errorf("change r1: %+v %v", c, ok)
		}
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "TV", CaseSensitive: true, By: "bo", RequestID: "r2", RequestedAt: t0.Add(time.Second)})
	})
	at(3*time.Second, func() {
		if d := e.status(t).Desired; d.Version != 9 || d.Substring != "TV" || !d.CaseSensitive {
			t.Errorf("after case-sensitive set: %+v", d)
		}
		e.SignalWorkflow(SignalClearFilter, ClearFilterSignal{By: "ana", RequestID: "r3", RequestedAt: t0.Add(2 * time.Second)})
	})
	at(4*time.Second, func() {
		if d := e.status(t).Desired; d.Version != 10 || d.Substring != "" || d.CaseSensitive {
			t.Errorf("after clear: %+v", d)
		}
		// Bad input changes nothing and says why.
		for i, bad := range []string{"", "bad\xffutf8", strings.Repeat("x", MaxFilterSubstringRunes+1), "tab\there"} {
			e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: bad, By: "eve", RequestID: "bad" + string(rune('0'+i)), RequestedAt: t0.Add(3 * time.Second)})
		}
	})
	at(5*time.Second, func() {
		st := e.status(t)
		if st.Desired.Version != 10 || st.PublishedVersion != 10 {
			t.Errorf("rejected input changed the filter: %+v", st.Desired)
		}
		for i := range 4 {
			id := "bad" + string(rune('0'+i))
			if c, ok := st.Change(id); !ok || c.Rejected == "" || c.Version != 0 {
				t.Errorf("change %s: %+v %v, want a rejection", id, c, ok)
			}
		}
		e.CancelWorkflow()
	})

	e.ExecuteWorkflow(StreamFilter, StreamFilterInput{})
	if !e.IsWorkflowCompleted() {
		t.Fatal("workflow did not end on cancel")
	}
	if err := e.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("workflow error %v, want canceled", err)
	}
	var versions []int64
	for _, s := range e.published {
		versions = append(versions, s.Version)
	}
	if len(versions) != 3 || versions[0] != 8 || versions[1] != 9 || versions[2] != 10 || e.published[2].Substring != "" {
		t.Errorf("published %+v, want v8, v9, v10 (cleared)", e.published)
	}
}

func TestStreamFilterAppliesSignalsInOrder(t *testing.T) {
	e := newFilterEnv(t, LoadFilterStateResult{})
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(SignalClearFilter, ClearFilterSignal{By: "a", RequestID: "c", RequestedAt: t0})
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "phone", By: "a", RequestID: "s", RequestedAt: t0.Add(time.Second)})
	}, time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status(t)
		if st.Desired.Version != 2 || st.Desired.Substring != "phone" {
			t.Errorf("desired %+v, want v2 phone", st.Desired)
		}
		if c, _ := st.Change("c"); c.Version != 1 {
			t.Errorf("the clear became v%d, want v1", c.Version)
		}
		e.CancelWorkflow()
	}, 2*time.Second)
	e.ExecuteWorkflow(StreamFilter, StreamFilterInput{})
	if n := len(e.published); n == 0 || e.published[n-1].Version != 2 {
		t.Errorf("published %+v, want v2 last", e.published)
	}
}

// Signals of two names wait on two channels; when several reach the
// workflow in one task, the SDK does not say which came first, so they are
// applied in the order they were requested.
func TestOrderRequestsByRequestTime(t *testing.T) {
	rs := []request{
		{set: &SetFilterSignal{RequestID: "set-late", RequestedAt: t0.Add(2 * time.Second)}},
		{set: &SetFilterSignal{RequestID: "set-early", RequestedAt: t0}},
		{clear: &ClearFilterSignal{RequestID: "clear-mid", RequestedAt: t0.Add(time.Second)}},
		{clear: &ClearFilterSignal{RequestID: "clear-same-as-early", RequestedAt: t0}},
	}
	orderRequests(rs)
	var got []string
	for _, r := range rs {
		if r.set != nil {
			got = append(got, r.set.RequestID)
		} else {
			got = append(got, r.clear.RequestID)
		}
	}
	if strings.Join(got, " ") != "set-early clear-same-as-early clear-mid set-late" {
		t.Errorf("order %v", got)
	}
}

// continuedWith returns the input a run continued as new with.
func continuedWith(t *testing.T, e *filterEnv) StreamFilterInput {
	t.Helper()
	if !e.IsWorkflowCompleted() {
		t.Fatal("the workflow did not end")
	}
	var can *workflow.ContinueAsNewError
	if err := e.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next StreamFilterInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	return next
}

func TestStreamFilterContinuesAsNewWithoutLosingASignal(t *testing.T) {
	e := newFilterEnv(t, LoadFilterStateResult{Found: true, State: FilterState{Version: 3, Substring: "x"}})
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "a", RequestID: "1", RequestedAt: t0})
	}, time.Second)
	e.RegisterDelayedCallback(func() {
		// The second change reaches the limit; the two that come with it
		// must be applied before the run continues as new.
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "b", RequestID: "2", RequestedAt: t0.Add(time.Second)})
		e.SignalWorkflow(SignalClearFilter, ClearFilterSignal{RequestID: "3", RequestedAt: t0.Add(2 * time.Second)})
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "c", RequestID: "4", RequestedAt: t0.Add(3 * time.Second)})
	}, 2*time.Second)
	e.ExecuteWorkflow(StreamFilter, StreamFilterInput{MaxChangesPerRun: 2})
	next := continuedWith(t, e)
	if next.State == nil || next.State.Version != 7 || next.State.Substring != "c" || next.Published != 7 {
		t.Fatalf("continued with %+v (state %+v), want v7 'c' published", next, next.State)
	}
	if len(next.Recent) != 4 || next.Recent[3].RequestID != "4" || next.MaxChangesPerRun != 2 {
		t.Errorf("continued with recent %+v", next.Recent)
	}

	// The next run starts from that state without reading the topic again,
	// and versions keep increasing.
	e2 := newFilterEnv(t, LoadFilterStateResult{Found: true, State: FilterState{Version: 99}})
	e2.RegisterDelayedCallback(func() {
		e2.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "d", RequestID: "5", RequestedAt: t0.Add(4 * time.Second)})
	}, time.Second)
	e2.RegisterDelayedCallback(func() {
		if st := e2.status(t); st.Desired.Version != 8 || len(st.Recent) != 5 {
			t.Errorf("second run: %+v", st)
		}
		e2.CancelWorkflow()
	}, 2*time.Second)
	e2.ExecuteWorkflow(StreamFilter, next)
	e2.AssertNotCalled(t, "LoadFilterState", mock.Anything, mock.Anything)
}

func TestStreamFilterContinuesAsNewWhenSuggested(t *testing.T) {
	e := newFilterEnv(t, LoadFilterStateResult{})
	e.SetContinueAsNewSuggested(true)
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(SignalSetFilter, SetFilterSignal{Substring: "phone", By: "a", RequestID: "1", RequestedAt: t0})
	}, time.Second)
	e.ExecuteWorkflow(StreamFilter, StreamFilterInput{})
	next := continuedWith(t, e)
	if next.State == nil || next.State.Version != 1 || next.State.Substring != "phone" || next.Published != 1 {
		t.Fatalf("continued with %+v", next)
	}
	if len(e.published) != 1 {
		t.Errorf("published %+v before continuing, want v1", e.published)
	}
}
