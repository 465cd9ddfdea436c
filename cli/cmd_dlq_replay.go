package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/dlqreplay"
	"github.com/shopstream/shopstream/internal/filterctl"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/workflows"
)

func dlqReplayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "send dead letters back to their source topic, exactly once (the ReplayDeadLetters Temporal workflow)",
		Description: "Once the cause of a dead letter is fixed (a schema registered, a constraint relaxed), replay sends the\n" +
			"original record back to the topic it came from, where every consumer of that topic reads it again.\n" +
			"Each record goes back once, however many components dead-lettered it (the streamer, the sink and the\n" +
			"collector all read the product topic): the records sent back are written to a ledger topic in the same\n" +
			"Kafka transaction, so a retried or resumed range and a later replay skip them. A record that fails again\n" +
			"lands in the dead-letter topic again, its header shopstream.dlq.replays counting the replays; after\n" +
			strconv.Itoa(dlqreplay.DefaultMaxReplays) + " replays it is not replayed any more. A letter of a product that has a newer record in its topic\n" +
			"is superseded and stays. Filters combine (all must match); --dry-run shows what would go and why.\n" +
			"One replay runs at a time (workflow id " + workflows.ReplayWorkflowID + ").\n\n" +
			"Examples:\n" +
			"  shopstream dlq replay --dry-run\n" +
			"  shopstream dlq replay --reason unknown-schema-id --since 2h\n" +
			"  shopstream dlq replay --component sink --limit 100 --detach\n" +
			"  shopstream dlq replay --key m1/p-42\n" +
			"  shopstream dlq replay status  |  shopstream dlq replay cancel",
		Flags: withFlags(
			&cli.StringSliceFlag{Name: "reason", Usage: "only letters with this reason (repeat for several; dlq list --help lists them)"},
			&cli.StringSliceFlag{Name: "component", Usage: "only letters from this component: streamer, recommender, sink or collector"},
			&cli.StringFlag{Name: "since", Usage: "only letters dead-lettered within this long before now: 90m, 24h, 7d"},
			&cli.StringSliceFlag{Name: "key", Usage: "only letters of this record key (repeat for several)"},
			&cli.IntFlag{Name: "limit", Usage: "send back at most this many, the oldest first (0: all)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would go back, and why the others would not; send nothing"},
			&cli.BoolFlag{Name: "json", Usage: "with --dry-run: print the plan as JSON"},
			&cli.BoolFlag{Name: "detach", Usage: "return once the workflow started (follow it with: shopstream dlq replay status)"},
			&cli.IntFlag{Name: "range-letters", Hidden: true, Usage: "most letters one range (one activity, one Kafka transaction) sends back"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Hidden: true, Usage: "how soon a range whose worker died is retried elsewhere (default 10s)"},
		),
		Action:      runReplay,
		Subcommands: jobCommands(dlqreplay.Job(), "replay", "ranges sent back"),
	}
}

func readReplayInput(c *cli.Context) (workflows.ReplayInput, error) {
	in := workflows.ReplayInput{
		Selection: workflows.ReplaySelection{Reasons: c.StringSlice("reason"), Components: c.StringSlice("component"), Keys: c.StringSlice("key")},
		Limit:     c.Int("limit"), RangeLetters: c.Int("range-letters"), HeartbeatTimeout: c.Duration("heartbeat-timeout"),
		RequestID: randid.Hex(8), By: filterctl.DefaultBy(),
	}
	if c.NArg() > 0 {
		return in, usageErr("dlq replay: unexpected argument %q (subcommands: status, cancel)", c.Args().First())
	}
	if s := c.String("since"); s != "" {
		age, err := config.ParseAge(s)
		if err != nil {
			return in, usageErr("dlq replay: --since %v", err)
		}
		in.Selection.Since = time.Now().Add(-age)
	}
	if err := dlqreplay.Selection(in.Selection).Validate(); err != nil {
		return in, usageErr("dlq replay: %v", err)
	}
	if err := in.Validate(); err != nil {
		return in, usageErr("dlq replay: %v", err)
	}
	return in, nil
}

func runReplay(c *cli.Context) error {
	in, err := readReplayInput(c)
	if err != nil {
		return err
	}
	dry := c.Bool("dry-run")
	needs := process.NeedTemporal
	if dry {
		needs = process.NeedKafka
	}
	e, err := connect(c, needs)
	if err != nil {
		return err
	}
	defer e.Close()
	w := c.App.Writer
	if dry {
		ctx, cancel := context.WithTimeout(c.Context, time.Minute)
		defer cancel()
		if err := dlqreplay.DryRun(ctx, e.Kafka, e.Config.Topics, dlqreplay.Selection(in.Selection), in.Limit, w, c.Bool("json")); err != nil {
			return fmt.Errorf("dlq replay --dry-run: %w", err)
		}
		return nil
	}
	run, err := dlqreplay.Start(c.Context, e.Temporal, e.Config.TaskQueue, in)
	if err != nil {
		return cli.Exit("dlq replay: "+err.Error(), 1)
	}
	url := e.Config.WorkflowURL(run.GetID(), "")
	fmt.Fprintf(w, "dlq replay: started workflow %s\ndlq replay: Web UI %s\n", run.GetID(), url)
	return dlqreplay.Job().Follow(c.Context, e.Temporal, run, url, w, isTerminal(w), c.Bool("detach"))
}
