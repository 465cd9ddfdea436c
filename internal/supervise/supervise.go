// Package supervise runs the long-running components of one process
// together, each under its name: in one group that stops as a whole when its
// context ends or one component fails, with readiness (the ready line of
// `shopstream dev`, and /readyz through telemetry.Readiness) and a bounded
// stop. Once told to stop, the components have the group's bound (or the
// longer bound a component states) to return; Run then returns an error
// naming each one that did not, so an orchestrator's SIGKILL never comes as
// a surprise.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultStopWithin is how long components get to stop when New is given
// no bound: inside the 10 s an orchestrator waits between SIGTERM and
// SIGKILL.
const DefaultStopWithin = 8 * time.Second

// Component is one long-running part of a process. Run blocks until ctx ends
// (then it returns nil, or an error wrapping context.Canceled) or it fails.
type Component interface {
	Run(ctx context.Context) error
}

// Readier is a Component that says when it works: the channel is closed
// once it does (its clients connected, its partitions assigned, …). A
// Component without it is ready as soon as it runs.
type Readier interface {
	Ready() <-chan struct{}
}

// Bounded is a Component that states how long it takes to stop once its
// context ends (the bound written on its type); the group waits at least
// that long for it.
type Bounded interface {
	StopWithin() time.Duration
}

// Func is a Component made of a function, ready as soon as it runs.
type Func func(ctx context.Context) error

// Run calls f.
func (f Func) Run(ctx context.Context) error { return f(ctx) }

// Group runs named components. Add them, then call Run once.
type Group struct {
	stopWithin time.Duration

	mu      sync.Mutex
	units   []*unit
	running bool
}

type unit struct {
	name    string
	c       Component
	ready   <-chan struct{} // nil: ready once started
	started chan struct{}
	done    chan struct{}
	err     error // set before done is closed
}

// New returns an empty group whose components get stopWithin to stop
// (DefaultStopWithin when zero).
func New(stopWithin time.Duration) *Group {
	if stopWithin <= 0 {
		stopWithin = DefaultStopWithin
	}
	return &Group{stopWithin: stopWithin}
}

// Add adds a component under name. It returns an error once Run has
// started, or when the name is taken.
func (g *Group) Add(name string, c Component) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running {
		return fmt.Errorf("add component %s: the group already runs", name)
	}
	for _, u := range g.units {
		if u.name == name {
			return fmt.Errorf("add component %s: the name is taken", name)
		}
	}
	u := &unit{name: name, c: c, started: make(chan struct{}), done: make(chan struct{})}
	if r, ok := c.(Readier); ok {
		u.ready = r.Ready()
	}
	g.units = append(g.units, u)
	return nil
}

// Names lists the components in the order they were added.
func (g *Group) Names() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, len(g.units))
	for i, u := range g.units {
		out[i] = u.name
	}
	return out
}

// Run runs every component until ctx ends or one of them fails, then
// cancels the others' context and waits for them at most the group's bound,
// or the longest bound a component states. It returns the first failure,
// named after its component, joined with an error naming every component
// that did not stop in time; nil after a clean stop. It may be called once.
func (g *Group) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.running {
		g.mu.Unlock()
		return errors.New("supervise: Run called twice")
	}
	g.running = true
	units := append([]*unit(nil), g.units...)
	g.mu.Unlock()

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(units))
	for _, u := range units {
		go func() {
			close(u.started)
			err := u.c.Run(gctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", u.name, err)
			} else {
				err = nil
			}
			g.mu.Lock()
			u.err = err
			g.mu.Unlock()
			close(u.done)
			errs <- err
		}()
	}
	var first error
	left := len(units)
	// A component that returns nil before the end stopped on its own; the
	// others go on (its readiness says "stopped").
	for left > 0 && first == nil && gctx.Err() == nil {
		select {
		case err := <-errs:
			left--
			first = err
		case <-gctx.Done():
		}
	}
	cancel()
	bound := g.stopWithin
	for _, u := range units {
		if b, ok := u.c.(Bounded); ok {
			bound = max(bound, b.StopWithin())
		}
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for left > 0 {
		select {
		case err := <-errs:
			left--
			if first == nil {
				first = err
			}
		case <-timer.C:
			var late []string
			for _, u := range units {
				if !closed(u.done) {
					late = append(late, u.name)
				}
			}
			return errors.Join(first, fmt.Errorf("%s did not stop within %s of being told to", strings.Join(late, ", "), bound))
		}
	}
	return first
}

// NotReady names every component that is not ready, with why: "not
// started", "starting" (running, not ready yet), "stopped", or "failed: …".
// It is the process's telemetry.Readiness.
func (g *Group) NotReady() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]string{}
	for _, u := range g.units {
		switch {
		case closed(u.done) && u.err != nil:
			out[u.name] = "failed: " + u.err.Error()
		case closed(u.done):
			out[u.name] = "stopped"
		case !closed(u.started):
			out[u.name] = "not started"
		case u.ready != nil && !closed(u.ready):
			out[u.name] = "starting"
		}
	}
	return out
}

// WaitReady waits until every component is ready. It returns an error
// naming a component that stopped (a stopped component is not ready), or,
// when ctx ends first, every component not ready yet (errors.Is ctx.Err()).
func (g *Group) WaitReady(ctx context.Context) error {
	g.mu.Lock()
	units := append([]*unit(nil), g.units...)
	g.mu.Unlock()
	for _, u := range units {
		ready := u.ready
		if ready == nil {
			ready = u.started
		}
		select {
		case <-ready:
		case <-u.done:
		case <-ctx.Done():
			return fmt.Errorf("not ready yet: %s: %w", describe(g.NotReady()), ctx.Err())
		}
		switch {
		case closed(u.done) && !closed(ready):
			return fmt.Errorf("%s stopped before it was ready", u.name)
		case closed(u.done):
			return fmt.Errorf("%s stopped", u.name)
		}
	}
	return nil
}

// describe lists not-ready components as "name (why), …", sorted.
func describe(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for name, why := range m {
		parts = append(parts, name+" ("+why+")")
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
