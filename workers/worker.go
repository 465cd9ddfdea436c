// Package workers builds and runs the Temporal worker that hosts every
// shopstream workflow and activity.
package workers

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/workflows"
)

// Activities holds one struct per activity family; each is registered once,
// and its exported methods become the activities that workflows call by name.
type Activities struct {
	Bootstrap *activities.Bootstrap
	Filter    *activities.Filter
	Emulate   *activities.Emulate
}

// Register registers every workflow and the given activities.
func Register(r worker.Registry, acts Activities) {
	r.RegisterWorkflow(workflows.Bootstrap)
	r.RegisterWorkflow(workflows.StreamFilter)
	r.RegisterWorkflow(workflows.EmulateShop)
	if acts.Bootstrap != nil {
		r.RegisterActivity(acts.Bootstrap)
	}
	if acts.Filter != nil {
		r.RegisterActivity(acts.Filter)
	}
	if acts.Emulate != nil {
		r.RegisterActivity(acts.Emulate)
	}
}

// Worker is the Temporal worker as one of a process's components. Run
// returns once the worker has stopped: running activities get the worker's
// stop timeout (worker.Options.WorkerStopTimeout) to finish.
type Worker struct {
	c         client.Client
	taskQueue string
	acts      Activities
	opts      worker.Options
	ready     chan struct{}
}

// New builds a worker on taskQueue with every workflow and acts; it starts
// nothing.
func New(c client.Client, taskQueue string, acts Activities, opts worker.Options) *Worker {
	return &Worker{c: c, taskQueue: taskQueue, acts: acts, opts: opts, ready: make(chan struct{})}
}

// Ready is closed once the worker polls its task queue.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run runs the worker until ctx ends, then stops it.
func (w *Worker) Run(ctx context.Context) error {
	tw := worker.New(w.c, w.taskQueue, w.opts)
	Register(tw, w.acts)
	if err := tw.Start(); err != nil {
		return fmt.Errorf("start Temporal worker on task queue %s: %w", w.taskQueue, err)
	}
	close(w.ready)
	<-ctx.Done()
	tw.Stop()
	return nil
}

// Run runs a worker on taskQueue until ctx ends, then stops it (letting
// running activities finish within the worker's stop timeout).
func Run(ctx context.Context, c client.Client, taskQueue string, acts Activities, opts worker.Options) error {
	return New(c, taskQueue, acts, opts).Run(ctx)
}
