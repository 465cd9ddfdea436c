package supervise

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// part is a component that is ready when the test says so, and stops as its
// context says unless told to hang or to fail.
type part struct {
	ready chan struct{}
	fail  chan error
	hang  bool
}

func newPart() *part { return &part{ready: make(chan struct{}), fail: make(chan error, 1)} }

func (p *part) Ready() <-chan struct{} { return p.ready }

func (p *part) Run(ctx context.Context) error {
	select {
	case err := <-p.fail:
		return err
	case <-ctx.Done():
		if p.hang {
			select {} // a component that never returns
		}
		return fmt.Errorf("poll: %w", ctx.Err())
	}
}

func start(t *testing.T, g *Group) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- g.Run(ctx) }()
	t.Cleanup(cancel)
	return cancel, ch
}

// newGroup is a Group with bound and a stand-in part under each name.
func newGroup(t *testing.T, bound time.Duration, names ...string) (*Group, []*part) {
	t.Helper()
	g := New(bound)
	parts := make([]*part, len(names))
	for i, name := range names {
		parts[i] = newPart()
		mustAdd(t, g, name, parts[i])
	}
	return g, parts
}

func mustAdd(t *testing.T, g *Group, name string, c Component) {
	t.Helper()
	if err := g.Add(name, c); err != nil {
		t.Fatal(err)
	}
}

// Readiness names who is not ready and why, until every component is; a
// clean stop (the context ends) is no error.
func TestGroupReportsReadinessAndStopsCleanly(t *testing.T) {
	g, p := newGroup(t, time.Second, "filter", "recommender")
	filter, recs := p[0], p[1]
	mustAdd(t, g, "metrics", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	if got := g.NotReady(); len(got) != 3 || got["filter"] != "not started" {
		t.Errorf("before Run: NotReady = %v, want all three not started", got)
	}
	cancel, done := start(t, g)
	close(filter.ready)
	wctx, wcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := g.WaitReady(wctx)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "recommender (starting)") || strings.Contains(err.Error(), "filter") {
		t.Errorf("WaitReady with the recommender starting = %v, want a timeout naming only the recommender", err)
	}
	if got := g.NotReady(); len(got) != 1 || got["recommender"] != "starting" {
		t.Errorf("NotReady = %v, want only the recommender, starting", got)
	}
	close(recs.ready)
	if err := g.WaitReady(context.Background()); err != nil {
		t.Errorf("WaitReady once all are ready: %v", err)
	}
	if got := g.NotReady(); len(got) != 0 {
		t.Errorf("NotReady = %v once all are ready, want none", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after the context ended = %v, want nil", err)
	}
	if got := g.NotReady(); got["filter"] != "stopped" {
		t.Errorf("NotReady after the stop = %v, want every component stopped", got)
	}
}

// One component failing stops the others and is the error, named.
func TestGroupStopsEveryComponentWhenOneFails(t *testing.T) {
	g, p := newGroup(t, time.Second, "sink", "streamer")
	_, done := start(t, g)
	p[0].fail <- errors.New("open database: connection refused")
	select {
	case err := <-done:
		if err == nil || err.Error() != "sink: open database: connection refused" {
			t.Errorf("Run = %v, want the sink's failure, named", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after a component failed")
	}
	if got := g.NotReady(); !strings.HasPrefix(got["sink"], "failed: ") || got["streamer"] != "stopped" {
		t.Errorf("NotReady = %v, want the sink failed and the streamer stopped", got)
	}
}

// A component that does not stop is named, and Run returns at the bound
// instead of waiting for it.
func TestGroupNamesAComponentThatDoesNotStopInTime(t *testing.T) {
	g, p := newGroup(t, 200*time.Millisecond, "collector", "api")
	p[0].hang = true
	cancel, done := start(t, g)
	cancel()
	t0 := time.Now()
	select {
	case err := <-done:
		if err == nil || err.Error() != "collector did not stop within 200ms of being told to" {
			t.Errorf("Run = %v, want an error naming the collector alone", err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("Run returned %s after the stop, want about 200ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run waited for a component that never stops")
	}
}

// slowStop takes its time to stop, and says so.
type slowStop struct{ took, bound time.Duration }

func (s slowStop) Run(ctx context.Context) error {
	<-ctx.Done()
	time.Sleep(s.took)
	return nil
}

func (s slowStop) StopWithin() time.Duration { return s.bound }

// A component that states a longer bound than the group's gets it: a slow
// but announced stop is clean, and one that overruns its own bound is named
// with that bound.
func TestGroupWaitsTheBoundAComponentStates(t *testing.T) {
	g := New(50 * time.Millisecond)
	mustAdd(t, g, "collector", slowStop{took: 300 * time.Millisecond, bound: time.Second})
	cancel, done := start(t, g)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("a stop within the component's own bound: Run = %v, want nil", err)
	}
	g = New(50 * time.Millisecond)
	mustAdd(t, g, "collector", slowStop{took: time.Minute, bound: 200 * time.Millisecond})
	cancel, done = start(t, g)
	cancel()
	if err := <-done; err == nil || err.Error() != "collector did not stop within 200ms of being told to" {
		t.Errorf("Run = %v, want the collector named with its own bound", err)
	}
}

// A component that stops fails WaitReady, named, whether it stopped before
// it was ready or after; the others go on.
func TestWaitReadyNamesAComponentThatStopped(t *testing.T) {
	g, p := newGroup(t, time.Second, "worker", "api")
	worker, api := p[0], p[1]
	mustAdd(t, g, "sink", Func(func(context.Context) error { return nil }))
	_, done := start(t, g)
	close(worker.ready)
	api.fail <- nil // stops cleanly, never ready
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err == nil || err.Error() != "api stopped before it was ready" {
		t.Errorf("WaitReady = %v, want it to name the api that stopped", err)
	}
	for len(g.NotReady()) < 2 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if got := g.NotReady(); got["sink"] != "stopped" || got["api"] != "stopped" || len(got) != 2 {
		t.Errorf("NotReady = %v, want the api and the sink stopped", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while the worker still runs", err)
	default:
	}
}

func TestAddRefusesATakenNameAndARunningGroup(t *testing.T) {
	g := New(time.Second)
	mustAdd(t, g, "api", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	if err := g.Add("api", newPart()); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("second api: %v, want the name taken", err)
	}
	cancel, done := start(t, g)
	if err := g.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Add("late", newPart()); err == nil {
		t.Error("Add after Run succeeded, want an error")
	}
	if names := g.Names(); len(names) != 1 || names[0] != "api" {
		t.Errorf("Names = %v, want [api]", names)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
