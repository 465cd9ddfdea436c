package workflows

import (
	"context"
	"errors"
	"fmt"
	"sort"
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

func emulateInput(count, batch int64) EmulateShopInput {
	return EmulateShopInput{Count: count, BatchSize: batch, Topic: "shop_products", ImageBaseURL: "http://127.0.0.1:8080/images", Concurrency: 3}
}

// batchRecorder stands in for the batch activity: it records what each call
// asked for and how many calls were in flight at once.
type batchRecorder struct {
	mu      sync.Mutex
	calls   []EmulateBatchInput
	fail    map[int64]int // batch -> attempts that fail before one succeeds
	cleaned []EmulateCleanupInput
	// The lanes are slots: one batch at a time in each.
	overlap[int]
}

func (r *batchRecorder) cleanup(_ context.Context, in EmulateCleanupInput) (EmulateCleanupResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleaned = append(r.cleaned, in)
	return EmulateCleanupResult{Deleted: int(in.EndBatch - in.FirstBatch)}, nil
}

func (r *batchRecorder) batch(ctx context.Context, in EmulateBatchInput) (EmulateBatchResult, error) {
	r.mu.Lock()
	r.calls = append(r.calls, in)
	failNow := r.fail[in.Batch] > 0
	if failNow {
		r.fail[in.Batch]--
	}
	r.mu.Unlock()
	r.overlap.run(in.Slot, func() string {
		return fmt.Sprintf("batch %d started in slot %d while another batch ran there", in.Batch, in.Slot)
	})
	if failNow {
		return EmulateBatchResult{}, errors.New("broker went away")
	}
	return EmulateBatchResult{Batch: in.Batch, Records: in.Count, Partitions: map[int32]int64{int32(in.Batch % 2): in.First + in.Count}}, nil
}

func newEmulateEnv(t *testing.T, r *batchRecorder) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(EmulateShop)
	env.RegisterActivityWithOptions(r.batch, activity.RegisterOptions{Name: ActivityEmulateBatch})
	env.RegisterActivityWithOptions(r.cleanup, activity.RegisterOptions{Name: ActivityEmulateCleanup})
	return env
}

// newMockedEmulateEnv registers the activity names for OnActivity mocks.
func newMockedEmulateEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(EmulateShop)
	env.RegisterActivityWithOptions(func(context.Context, EmulateBatchInput) (EmulateBatchResult, error) {
		return EmulateBatchResult{}, errors.New("not mocked")
	}, activity.RegisterOptions{Name: ActivityEmulateBatch})
	env.RegisterActivityWithOptions(func(context.Context, EmulateCleanupInput) (EmulateCleanupResult, error) {
		return EmulateCleanupResult{}, errors.New("not mocked")
	}, activity.RegisterOptions{Name: ActivityEmulateCleanup})
	return env
}

func TestEmulateShopSplitsIntoBatches(t *testing.T) {
	r := &batchRecorder{}
	env := newEmulateEnv(t, r)
	env.ExecuteWorkflow(EmulateShop, emulateInput(10_500, 1000))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res EmulateShopResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Count != 10_500 || res.Committed != 10_500 || res.Batches != 11 || res.Runs != 1 {
		t.Fatalf("result %+v, want 10500 committed in 11 batches in one run", res)
	}
	sort.Slice(r.calls, func(i, j int) bool { return r.calls[i].Batch < r.calls[j].Batch })
	next := int64(0)
	for i, c := range r.calls {
		if c.Batch != int64(i) || c.First != next {
			t.Fatalf("call %d: batch %d first %d, want batch %d first %d", i, c.Batch, c.First, i, next)
		}
		want := int64(1000)
		if i == 10 {
			want = 500
		}
		if c.Count != want || c.Topic != "shop_products" || c.Shops != DefaultEmulateShops || c.WorkflowID == "" {
			t.Fatalf("call %d: %+v", i, c)
		}
		// Without --seed the seed comes from the workflow id; every batch
		// shares it and the product time, so a retry repeats the batch.
		if c.Seed != EmulateSeed(c.WorkflowID) || !c.ProductTime.Equal(r.calls[0].ProductTime) || c.ProductTime.IsZero() {
			t.Fatalf("call %d: seed %d product time %v", i, c.Seed, c.ProductTime)
		}
		next += c.Count
	}
	if len(r.calls) != 11 || next != 10_500 {
		t.Fatalf("%d calls covering %d records, want 11 covering 10500", len(r.calls), next)
	}
	if r.maxInFlight > 3 || r.maxInFlight < 2 {
		t.Errorf("at most %d batches ran at once, want 2 or 3 (concurrency 3)", r.maxInFlight)
	}
	slots := map[int]bool{}
	for _, c := range r.calls {
		slots[c.Slot] = true
	}
	if r.clash != "" || len(slots) != 3 || !slots[0] || !slots[2] {
		t.Errorf("slots used %v, clash %q: want slots 0 to 2, one batch at a time in each", slots, r.clash)
	}
	// The recorder writes even batches to partition 0, odd ones to 1.
	if res.Partitions[0] != 10_500 || res.Partitions[1] != 10_000 {
		t.Errorf("partitions %v: want each partition's highest end offset", res.Partitions)
	}
	if len(r.cleaned) != 1 || r.cleaned[0].FirstBatch != 0 || r.cleaned[0].EndBatch != 11 {
		t.Errorf("cleanup calls %+v, want one for batches [0, 11)", r.cleaned)
	}
}

func TestDefaultBatchSize(t *testing.T) {
	for i, c := range []struct {
		count int64
		rate  float64
		want  int64
	}{
		{1_000_000, 0, 10_000}, // a million is a hundred batches
		{100_000, 0, 5000},
		{10, 0, 5000},
		{2_000_000, 0, 20_000},
		{1_000_000_000, 0, 50_000},
		{1_000_000, 200, 1000}, // five seconds of records
		{1_000_000, 0.1, 1},
	} {
		if got := DefaultEmulateBatchSize(c.count, c.rate); got != c.want {
			t.Errorf("#%d: DefaultEmulateBatchSize(%d, %g) = %d, want %d", i, c.count, c.rate, got, c.want)
		}
	}
}

func TestEmulateShopRetriesAFailingBatch(t *testing.T) {
	r := &batchRecorder{fail: map[int64]int{2: 2}}
	env := newEmulateEnv(t, r)
	env.ExecuteWorkflow(EmulateShop, emulateInput(5000, 1000))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res EmulateShopResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Committed != 5000 {
		t.Fatalf("committed %d, want 5000", res.Committed)
	}
	attempts := map[int64]int{}
	for _, c := range r.calls {
		attempts[c.Batch]++
	}
	if attempts[2] != 3 || attempts[0] != 1 || len(attempts) != 5 {
		t.Fatalf("attempts per batch %v, want batch 2 three times and the others once", attempts)
	}
}

func TestEmulateShopRecoveredBatchCountsOnce(t *testing.T) {
	env := newMockedEmulateEnv()
	env.OnActivity(ActivityEmulateCleanup, mock.Anything, mock.Anything).Return(EmulateCleanupResult{}, nil)
	env.OnActivity(ActivityEmulateBatch, mock.Anything, mock.Anything).Return(func(_ context.Context, in EmulateBatchInput) (EmulateBatchResult, error) {
		return EmulateBatchResult{Batch: in.Batch, Records: in.Count, AlreadyCommitted: in.Batch == 1}, nil
	})
	env.ExecuteWorkflow(EmulateShop, emulateInput(3000, 1000))
	var res EmulateShopResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Committed != 3000 || res.Recovered != 1 {
		t.Fatalf("result %+v, want 3000 committed, 1 batch recovered", res)
	}
}

func TestEmulateShopCancel(t *testing.T) {
	env := newMockedEmulateEnv()
	var mu sync.Mutex
	started := 0
	env.OnActivity(ActivityEmulateBatch, mock.Anything, mock.Anything).Return(func(ctx context.Context, in EmulateBatchInput) (EmulateBatchResult, error) {
		mu.Lock()
		started++
		mu.Unlock()
		if in.Batch == 0 {
			return EmulateBatchResult{Batch: 0, Records: in.Count}, nil
		}
		// A long batch that heartbeats, as the real one does, until it
		// hears of the cancel (bounded, so a failing test does not spin).
		for end := time.Now().Add(time.Second); ctx.Err() == nil && time.Now().Before(end); {
			activity.RecordHeartbeat(ctx, 0)
			time.Sleep(5 * time.Millisecond)
		}
		return EmulateBatchResult{}, ctx.Err()
	})
	var cleaned *EmulateCleanupInput
	env.OnActivity(ActivityEmulateCleanup, mock.Anything, mock.Anything).Return(func(_ context.Context, in EmulateCleanupInput) (EmulateCleanupResult, error) {
		cleaned = &in
		return EmulateCleanupResult{}, nil
	})
	var progress EmulateProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryEmulateProgress)
		if err != nil {
			t.Errorf("query progress: %v", err)
		} else if err := v.Get(&progress); err != nil {
			t.Error(err)
		}
		env.CancelWorkflow()
	}, 300*time.Millisecond) // the mock clock follows the wall clock while batches run
	env.SetTestTimeout(20 * time.Second)
	in := emulateInput(10_000, 1000)
	in.HeartbeatTimeout = time.Minute
	env.ExecuteWorkflow(EmulateShop, in)
	err := env.GetWorkflowError()
	var ce *temporal.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("workflow error %v, want canceled", err)
	}
	if progress.Committed != 1000 || progress.Running != 3 || progress.Count != 10_000 || progress.Batches != 10 || progress.Done {
		t.Errorf("progress before cancel %+v, want batch 0 committed and 3 running", progress)
	}
	// Batch 0 finished and three more started; canceling starts no other.
	// (The test environment does not pass the cancel on to a running
	// activity's context; the integration test shows a real one stopping.)
	mu.Lock()
	defer mu.Unlock()
	if started != 4 {
		t.Errorf("%d batches started, want 4", started)
	}
	if cleaned == nil || cleaned.FirstBatch != 0 || cleaned.EndBatch != 4 {
		t.Errorf("cleanup after cancel: %+v, want batches [0, 4)", cleaned)
	}
}

func TestEmulateShopContinuesAsNew(t *testing.T) {
	r := &batchRecorder{}
	env := newEmulateEnv(t, r)
	in := emulateInput(MaxEmulateBatchesPerRun+100, 1)
	in.Concurrency = 8
	env.ExecuteWorkflow(EmulateShop, in)
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow error %v, want continue-as-new", err)
	}
	var next EmulateShopInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.Resume.NextBatch != MaxEmulateBatchesPerRun || next.Resume.Committed != MaxEmulateBatchesPerRun || next.Resume.Runs != 1 || next.Seed == 0 {
		t.Fatalf("continued with %+v, want batch %d next with %d committed", next.Resume, MaxEmulateBatchesPerRun, MaxEmulateBatchesPerRun)
	}
	if len(r.calls) != MaxEmulateBatchesPerRun {
		t.Fatalf("%d batches ran in the first run, want %d", len(r.calls), MaxEmulateBatchesPerRun)
	}

	// The next run picks up where the first stopped and finishes.
	r2 := &batchRecorder{}
	env2 := newEmulateEnv(t, r2)
	env2.ExecuteWorkflow(EmulateShop, next)
	var res EmulateShopResult
	if err := env2.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Committed != in.Count || res.Runs != 2 || len(r2.calls) != 100 || !res.StartedAt.Equal(next.Resume.StartedAt) {
		t.Fatalf("second run: %+v after %d batches", res, len(r2.calls))
	}
}

func TestEmulateShopRejectsBadInput(t *testing.T) {
	for i, in := range []EmulateShopInput{
		{Count: 0, Topic: "t", ImageBaseURL: "u"},
		{Count: -5, Topic: "t", ImageBaseURL: "u"},
		{Count: 10, BatchSize: -1, Topic: "t", ImageBaseURL: "u"},
		{Count: 10, Rate: -1, Topic: "t", ImageBaseURL: "u"},
		{Count: 10, Shops: MaxEmulateShops + 1, Topic: "t", ImageBaseURL: "u"},
		{Count: 10, ImageBaseURL: "u"},
		{Count: 100_000, BatchSize: 100_000, Rate: 10, Topic: "t", ImageBaseURL: "u"}, // a 10000 s transaction
	} {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		env.RegisterWorkflow(EmulateShop)
		env.ExecuteWorkflow(EmulateShop, in)
		var ae *temporal.ApplicationError
		if err := env.GetWorkflowError(); !errors.As(err, &ae) || ae.Type() != ErrTypeInvalidInput || !ae.NonRetryable() {
			t.Errorf("#%d: %+v: got %v, want a non-retryable %s error", i, in, err, ErrTypeInvalidInput)
		}
	}
}
