package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// rangeRecorder stands in for the range activity: it records every call,
// checks that no partition ever has two ranges in flight, and counts how
// many partitions run at once.
type rangeRecorder struct {
	mu       sync.Mutex
	calls    []BackfillRangeInput
	fail     map[string]int // "p/r" -> attempts that fail first
	failWith error
	cleaned  []BackfillRangeID
	overlap[int32]
}

func (r *rangeRecorder) run(_ context.Context, in BackfillRangeInput) (BackfillRangeResult, error) {
	r.mu.Lock()
	r.calls = append(r.calls, in)
	id := fmt.Sprintf("%d/%d", in.Partition, in.Range)
	failNow := r.fail[id] > 0
	if failNow {
		r.fail[id]--
	}
	r.mu.Unlock()
	r.overlap.run(in.Partition, func() string {
		return fmt.Sprintf("range %d of partition %d started while another range of it ran", in.Range, in.Partition)
	})
	if failNow {
		if r.failWith != nil {
			return BackfillRangeResult{}, r.failWith
		}
		return BackfillRangeResult{}, errors.New("broker went away")
	}
	n := in.End - in.Start
	return BackfillRangeResult{Partition: in.Partition, Range: in.Range, Counts: BackfillCounts{Read: n, Forwarded: n / 2, Dropped: n - n/2}}, nil
}

func (r *rangeRecorder) cleanup(_ context.Context, in BackfillCleanupInput) (BackfillCleanupResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleaned = append(r.cleaned, in.Ranges...)
	return BackfillCleanupResult{Deleted: len(in.Ranges)}, nil
}

var testPlan = BackfillPlan{
	Filter: FilterState{Version: 4, Substring: "phone"}, Source: "shop_products", Target: "analytic_products_filtered",
	Partitions: []BackfillPartition{{0, 0, 2500}, {1, 100, 1100}, {2, 0, 0}, {3, 0, 999}},
}

func newBackfillEnv(r *rangeRecorder, plan BackfillPlan) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(Backfill)
	env.RegisterActivityWithOptions(func(context.Context, BackfillPrepareInput) (BackfillPlan, error) { return plan, nil },
		activity.RegisterOptions{Name: ActivityBackfillPrepare})
	env.RegisterActivityWithOptions(r.run, activity.RegisterOptions{Name: ActivityBackfillRange})
	env.RegisterActivityWithOptions(r.cleanup, activity.RegisterOptions{Name: ActivityBackfillCleanup})
	return env
}

func TestBackfillRunsEachPartitionsRangesInOrder(t *testing.T) {
	r := &rangeRecorder{fail: map[string]int{"0/1": 2}}
	env := newBackfillEnv(r, testPlan)
	var progress []BackfillProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryBackfillProgress)
		if err != nil {
			t.Error(err)
			return
		}
		var p BackfillProgress
		if err := v.Get(&p); err != nil {
			t.Error(err)
		}
		progress = append(progress, p)
	}, 1500*time.Millisecond)
	env.ExecuteWorkflow(Backfill, BackfillInput{RangeRecords: 1000, Concurrency: 2, RequestID: "req-7", By: "ops@host"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res BackfillResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	// Partition 0: [0,1000) [1000,2000) [2000,2500); 1: [100,1100); 2:
	// nothing; 3: [0,999).
	want := map[string][2]int64{"0/0": {0, 1000}, "0/1": {1000, 2000}, "0/2": {2000, 2500}, "1/0": {100, 1100}, "3/0": {0, 999}}
	attempts := map[string]int{}
	for _, c := range r.calls {
		id := fmt.Sprintf("%d/%d", c.Partition, c.Range)
		attempts[id]++
		if w, ok := want[id]; !ok || c.Start != w[0] || c.End != w[1] || c.Filter.Version != 4 || c.BackfillID != "req-7" || c.WorkflowID == "" {
			t.Errorf("call %+v, want range %s = %v with filter v4", c, id, w)
		}
	}
	if len(attempts) != 5 || attempts["0/1"] != 3 || attempts["0/0"] != 1 {
		t.Errorf("attempts %v, want each of the 5 ranges once, 0/1 three times", attempts)
	}
	if r.clash != "" || r.maxInFlight != 2 {
		t.Errorf("clash %q, at most %d ranges at once; want one range of a partition at a time, 2 partitions at once", r.clash, r.maxInFlight)
	}
	if res.Ranges != 5 || res.Counts.Read != 4499 || res.Counts.Forwarded != 500+500+250+500+499 || res.RequestID != "req-7" || res.Filter.Substring != "phone" {
		t.Errorf("result %+v", res)
	}
	if len(r.cleaned) != 5 {
		t.Errorf("markers cleaned %v, want all 5 ranges'", r.cleaned)
	}
	if len(progress) != 1 || progress[0].Ranges != 5 || progress[0].Offsets != 4499 || progress[0].Phase != PhaseRunning || progress[0].RequestID != "req-7" {
		t.Errorf("progress %+v, want 5 ranges over 4499 offsets, backfilling", progress)
	}
}

// A range that finds the filter changed stops the backfill with an error
// that says what to do; the ranges that committed stay, their markers go.
func TestBackfillStopsWhenTheFilterChanged(t *testing.T) {
	r := &rangeRecorder{fail: map[string]int{"1/0": 1}, failWith: temporal.NewNonRetryableApplicationError("the filter in force is v5 now", ErrTypeFilterChanged, nil)}
	env := newBackfillEnv(r, testPlan)
	env.ExecuteWorkflow(Backfill, BackfillInput{RangeRecords: 1000, Concurrency: 1})
	err := env.GetWorkflowError()
	if err == nil || !hasErrType(err, ErrTypeFilterChanged) || !strings.Contains(err.Error(), "run the backfill again") {
		t.Fatalf("got %v, want a FilterChanged error that says to run again", err)
	}
	for _, c := range r.calls {
		if c.Partition > 1 {
			t.Errorf("range %d/%d started after the filter changed", c.Partition, c.Range)
		}
	}
	if len(r.cleaned) != 3 {
		t.Errorf("markers cleaned %v, want those of partition 0's 3 ranges", r.cleaned)
	}
}

// A long backfill continues as new, carrying where each partition is.
func TestBackfillContinuesAsNew(t *testing.T) {
	r := &rangeRecorder{}
	plan := BackfillPlan{Filter: FilterState{Version: 1}, Partitions: []BackfillPartition{{0, 0, MaxBackfillRangesPerRun + 5}}}
	env := newBackfillEnv(r, plan)
	env.ExecuteWorkflow(Backfill, BackfillInput{RangeRecords: 1})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("got %v, want continue-as-new", err)
	}
	if len(r.calls) != MaxBackfillRangesPerRun {
		t.Fatalf("%d ranges in the first run, want %d", len(r.calls), MaxBackfillRangesPerRun)
	}
	var next BackfillInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.Resume == nil || next.Resume.Next[0] != MaxBackfillRangesPerRun || next.Resume.Counts.Read != MaxBackfillRangesPerRun || next.Resume.Runs != 1 {
		t.Fatalf("resume %+v", next.Resume)
	}
	// The next run goes on from there without planning again.
	r2 := &rangeRecorder{}
	env2 := newBackfillEnv(r2, BackfillPlan{})
	env2.OnActivity(ActivityBackfillPrepare, mock.Anything, mock.Anything).Return(BackfillPlan{}, errors.New("planned again")).Maybe()
	env2.ExecuteWorkflow(Backfill, next)
	var res BackfillResult
	if err := env2.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(r2.calls) != 5 || res.Counts.Read != MaxBackfillRangesPerRun+5 || res.Runs != 2 || res.Ranges != MaxBackfillRangesPerRun+5 {
		t.Fatalf("second run: %d calls, result %+v", len(r2.calls), res)
	}
}

func TestBackfillInputValidation(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, c := range []struct {
		in   BackfillInput
		want string
	}{
		{BackfillInput{}, ""},
		{BackfillInput{From: now, To: now}, "is not before"},
		{BackfillInput{RangeRecords: -1}, "range size"},
		{BackfillInput{Concurrency: MaxBackfillConcurrency + 1}, "concurrency"},
	} {
		err := c.in.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("#%d: %v, want %q", i, err, c.want)
		}
	}
}
