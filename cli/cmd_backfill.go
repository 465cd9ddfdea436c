package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/backfill"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/filterctl"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/workflows"
)

func backfillFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "since", Usage: "re-read products published within this long before now: 90m, 24h, 7d (default: the topic's whole retention)"},
		&cli.StringFlag{Name: "from", Usage: "re-read products published at or after this time (RFC 3339, or local \"2026-01-02 15:04\")"},
		&cli.StringFlag{Name: "to", Usage: "re-read products published before this time (default: when the backfill starts)"},
		&cli.BoolFlag{Name: "detach", Usage: "return once the workflow started (follow it with: shopstream filter backfill status)"},
		&cli.IntFlag{Name: "concurrency", Value: workflows.DefaultBackfillConcurrency, Usage: "partitions backfilled at once"},
		&cli.Int64Flag{Name: "range-records", Hidden: true, Usage: "most records one range (one activity, one Kafka transaction) re-reads"},
		&cli.DurationFlag{Name: "heartbeat-timeout", Hidden: true, Usage: "how soon a range whose worker died is retried elsewhere (default 10s)"},
	}
}

func backfillCommand() *cli.Command {
	return &cli.Command{
		Name:  "backfill",
		Usage: "re-apply the filter in force to products published before it (the Backfill Temporal workflow)",
		Description: "A filter change applies to products published from then on. A backfill re-reads the product topic's\n" +
			"history and writes to the filtered topic every product that matches the filter in force and is missing\n" +
			"there: each product's newest record once, never over a newer state of it (a product updated while the\n" +
			"backfill runs keeps its newer value). It waits until every live streamer instance applied the filter,\n" +
			"then works partition by partition, each range one Kafka transaction with a marker, so a retried or\n" +
			"resumed range writes nothing twice. Records it writes carry the filter version and the header\n" +
			backfill.Header + ". One backfill runs at a time (workflow id " + workflows.BackfillWorkflowID + "); a second\n" +
			"request attaches to the running one. The Web UI shows every range.\n\n" +
			"Examples:\n" +
			"  shopstream filter backfill --since 24h\n" +
			"  shopstream filter backfill --from \"2026-01-02 00:00\" --to \"2026-01-03 00:00\" --detach\n" +
			"  shopstream filter set phone --backfill 24h     # the change and its backfill in one\n" +
			"  shopstream filter backfill status\n" +
			"  shopstream filter backfill cancel",
		Flags:       withFlags(backfillFlags()...),
		Action:      runBackfill,
		Subcommands: jobCommands(backfill.Job(), "backfill", "the ranges written"),
	}
}

// backfillInput reads the span flags; since is --since, or the --backfill
// of `filter set` ("all": the whole retention).
func backfillInput(c *cli.Context, since string) (workflows.BackfillInput, error) {
	in := workflows.BackfillInput{Concurrency: c.Int("concurrency"), RangeRecords: c.Int64("range-records"),
		HeartbeatTimeout: c.Duration("heartbeat-timeout"), RequestID: randid.Hex(8), By: filterctl.DefaultBy()}
	if since != "" && since != "all" && (c.String("from") != "" || c.String("to") != "") {
		return in, usageErr("filter backfill: give --since or --from/--to, not both")
	}
	if since != "" && since != "all" {
		age, err := config.ParseAge(since)
		if err != nil {
			return in, usageErr("filter backfill: --since %v", err)
		}
		in.From = time.Now().Add(-age)
	}
	for _, f := range []struct {
		name string
		to   *time.Time
	}{{"from", &in.From}, {"to", &in.To}} {
		if s := c.String(f.name); s != "" {
			t, err := config.ParseWhen(s, time.Local)
			if err != nil {
				return in, usageErr("filter backfill: --%s %q: %v", f.name, s, err)
			}
			*f.to = t
		}
	}
	if err := in.Validate(); err != nil {
		return in, usageErr("filter backfill: %v", err)
	}
	return in, nil
}

func runBackfill(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("filter backfill: unexpected argument %q (subcommands: status, cancel)", c.Args().First())
	}
	in, err := backfillInput(c, c.String("since"))
	if err != nil {
		return err
	}
	return startBackfill(c, in)
}

// startBackfill starts (or attaches to) the backfill and follows it unless
// --detach.
func startBackfill(c *cli.Context, in workflows.BackfillInput) error {
	e, err := connect(c, process.NeedTemporal)
	if err != nil {
		return err
	}
	defer e.Close()
	w := c.App.Writer
	st, err := backfill.Start(c.Context, e.Temporal, e.Config.TaskQueue, in)
	if err != nil {
		return err
	}
	url := e.Config.WorkflowURL(workflows.BackfillWorkflowID, "")
	if st.Attached {
		fmt.Fprintf(w, "backfill: one is running already (request %s by %s); following it instead of starting another\n", st.Running.RequestID, st.Running.By)
		backfill.PrintProgress(w, st.Running)
	} else {
		fmt.Fprintf(w, "backfill: started workflow %s: %s\n", workflows.BackfillWorkflowID, backfill.Describe(in.From, in.To, workflows.FilterState{}))
	}
	fmt.Fprintf(w, "backfill: Web UI %s\n", url)
	return backfill.Job().Follow(c.Context, e.Temporal, st.Run, url, w, isTerminal(w), c.Bool("detach"))
}
