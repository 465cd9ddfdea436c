package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/exitcode"
	"github.com/shopstream/shopstream/internal/status"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "one screen that answers \"is it working?\"; exits non-zero when something is unhealthy",
		Description: "Shows each topic's end offsets and rate, each consumer group's lag and whether it drains,\n" +
			"how fresh each stage's output is (p50 and p99 from the processes' /metrics),\n" +
			"and the last bootstrap, emulation, backfill and replay runs with their Web UI links. Exit code 1 when something is\n" +
			"unhealthy, so it can serve as a health check.\n\nExamples:\n  shopstream status\n  shopstream status --json | jq .groups",
		Flags: withFlags(
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "how long to sample rates and lag changes"},
			&cli.StringSliceFlag{Name: "metrics-url", EnvVars: []string{"SHOPSTREAM_METRICS_URLS"}, Usage: "/metrics of the processes to read freshness from (host:port or URL; repeat or comma-separate); default: every shopstream process on this host at its default port"},
		),
		Action: func(c *cli.Context) error {
			if c.Duration("interval") <= 0 {
				return usageErr("--interval %s: want a positive duration", c.Duration("interval"))
			}
			// Nothing connects up front: status reports what it cannot reach.
			e, err := connect(c, 0)
			if err != nil {
				return err
			}
			defer e.Close()
			r := status.Gather(c.Context, e, c.Duration("interval"), c.StringSlice("metrics-url")...)
			if c.Bool("json") {
				err = status.PrintJSON(c.App.Writer, r)
			} else {
				status.Print(c.App.Writer, r)
			}
			if err == nil && !r.Healthy {
				err = exitcode.New(1, "")
			}
			return err
		},
	}
}
