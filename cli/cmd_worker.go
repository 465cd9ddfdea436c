package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/worker"

	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/workers"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:        "worker",
		Usage:       "run the Temporal worker that hosts every shopstream workflow and activity",
		Description: "`shopstream dev` runs one inside; run this against an external Temporal.\nStops cleanly on SIGINT/SIGTERM.",
		Flags:       withFlags(logFlag),
		Action: func(c *cli.Context) error {
			e, err := connect(c, true, true)
			if err != nil {
				return err
			}
			defer e.close()
			if err := registerKafkaView(e); err != nil {
				return err
			}
			addr, err := telemetry.Serve(c.Context, e.cfg.MetricsAddrFor("worker"), e.metrics, nil)
			if err != nil {
				return err
			}
			e.log.Info("worker started", "task_queue", e.cfg.TaskQueue, "temporal", e.cfg.TemporalAddress, "metrics", addr)
			fmt.Fprintf(c.App.Writer, "worker: polling task queue %s on %s; /metrics on %s\n", e.cfg.TaskQueue, e.cfg.TemporalAddress, addr)
			acts, err := e.activities()
			if err != nil {
				return err
			}
			return workers.Run(c.Context, e.temporal, e.cfg.TaskQueue, acts, worker.Options{})
		},
	}
}
