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

// Run runs a worker on taskQueue until ctx ends, then stops it (letting
// running activities finish within the worker's stop timeout).
func Run(ctx context.Context, c client.Client, taskQueue string, acts Activities, opts worker.Options) error {
	w := worker.New(c, taskQueue, opts)
	Register(w, acts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start Temporal worker on task queue %s: %w", taskQueue, err)
	}
	<-ctx.Done()
	w.Stop()
	return nil
}
