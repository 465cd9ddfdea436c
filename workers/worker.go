// Package workers builds and runs the Temporal worker that hosts every
// shopstream workflow and activity.
package workers

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/dlqreplay"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// Activities holds one struct per activity family; each is registered once,
// and its exported methods become the activities that workflows call by name.
type Activities struct {
	Bootstrap *activities.Bootstrap
	Filter    *activities.Filter
	Emulate   *activities.Emulate
	Backfill  *activities.Backfill
	Replay    *activities.Replay
}

// Register registers every workflow and the given activities.
func Register(r worker.Registry, acts Activities) {
	r.RegisterWorkflow(workflows.Bootstrap)
	r.RegisterWorkflow(workflows.StreamFilter)
	r.RegisterWorkflow(workflows.EmulateShop)
	r.RegisterWorkflow(workflows.Backfill)
	r.RegisterWorkflow(workflows.ReplayDeadLetters)
	if acts.Bootstrap != nil {
		r.RegisterActivity(acts.Bootstrap)
	}
	if acts.Filter != nil {
		r.RegisterActivity(acts.Filter)
	}
	if acts.Emulate != nil {
		r.RegisterActivity(acts.Emulate)
	}
	if acts.Backfill != nil {
		r.RegisterActivity(acts.Backfill)
	}
	if acts.Replay != nil {
		r.RegisterActivity(acts.Replay)
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

// NewOperations builds the activities of the two operations on history,
// the filter backfill and the dead-letter replay, over one process's
// clients and topics.
func NewOperations(kafka *clients.Kafka, admin *kadm.Client, serde *records.Serde, topics records.Topics, reg prometheus.Registerer) (Activities, error) {
	bf, err := activities.NewBackfill(activities.BackfillOptions{Kafka: kafka, Admin: admin, Serde: serde, Topics: topics, Registerer: reg})
	if err != nil {
		return Activities{}, fmt.Errorf("build the backfill activities: %w", err)
	}
	rp, err := activities.NewReplay(activities.ReplayOptions{
		Kafka: kafka, Admin: admin, DLQ: topics.DLQ, Ledger: topics.DLQReplayed, Registerer: reg, Changelogs: dlqreplay.Changelogs(topics),
	})
	if err != nil {
		return Activities{}, fmt.Errorf("build the dead-letter replay activities: %w", err)
	}
	return Activities{Backfill: bf, Replay: rp}, nil
}
