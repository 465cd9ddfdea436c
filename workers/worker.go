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
