package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

func filterCommand() *cli.Command {
	changeFlags := func(extra ...cli.Flag) []cli.Flag {
		return withFlags(append(extra,
			&cli.BoolFlag{Name: "wait", Usage: "return only when every live streamer instance applied the change"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long --wait waits"},
			&cli.StringFlag{Name: "by", EnvVars: []string{"SHOPSTREAM_USER"}, Usage: "who makes the change, as the workflow history records it (default: user@host)"},
		)...)
	}
	return &cli.Command{
		Name:  "filter",
		Usage: "set, clear or show the streamer's substring filter (owned by the StreamFilter workflow)",
		Description: "The StreamFilter workflow (fixed id " + workflows.StreamFilterWorkflowID + ") owns the filter: set and clear\n" +
			"signal it (starting it if needed), get queries it. Every change becomes a new version in its history\n" +
			"(see the Web UI) and is published to the control topic; each streamer instance applies it between two\n" +
			"records and reports the version it applied.",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "let through only products whose name contains SUBSTRING",
				ArgsUsage: "SUBSTRING",
				Description: fmt.Sprintf("Case-insensitive (Unicode case folding) unless --case-sensitive. At most %d characters of valid UTF-8.\n\n"+
					"Examples:\n  shopstream filter set phone\n  shopstream filter set \"Galaxy S\" --case-sensitive --wait", workflows.MaxFilterSubstringRunes),
				Flags: changeFlags(&cli.BoolFlag{Name: "case-sensitive", Usage: "match the exact case"},
					&cli.StringFlag{Name: "backfill", Usage: "then re-apply the filter to products published this long before (24h, 7d, or all): see `filter backfill --help`"}),
				SkipFlagParsing: true,
				Action: interspersed(func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErr("filter set: give exactly one SUBSTRING (quote it if it has spaces), e.g. shopstream filter set phone")
					}
					sub := c.Args().First()
					if err := workflows.ValidateFilterSubstring(sub); err != nil {
						return usageErr("filter set %q: %v", sub, err)
					}
					var backfillIn workflows.BackfillInput
					if c.IsSet("backfill") {
						var err error
						if backfillIn, err = backfillInput(c, c.String("backfill")); err != nil {
							return err
						}
					}
					err := changeFilter(c, workflows.SignalSetFilter, func(by, id string, at time.Time) any {
						return workflows.SetFilterSignal{Substring: sub, CaseSensitive: c.Bool("case-sensitive"), By: by, RequestID: id, RequestedAt: at}
					})
					if err != nil || !c.IsSet("backfill") {
						return err
					}
					return startBackfill(c, backfillIn)
				}),
			},
			{
				Name:            "clear",
				Usage:           "let every product through",
				Description:     "Examples:\n  shopstream filter clear\n  shopstream filter clear --wait",
				Flags:           changeFlags(),
				SkipFlagParsing: true,
				Action: interspersed(func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageErr("filter clear takes no arguments")
					}
					return changeFilter(c, workflows.SignalClearFilter, func(by, id string, at time.Time) any {
						return workflows.ClearFilterSignal{By: by, RequestID: id, RequestedAt: at}
					})
				}),
			},
			{
				Name:        "get",
				Usage:       "show the desired filter and the version each live streamer instance applies",
				Description: "Examples:\n  shopstream filter get\n  shopstream filter get --json",
				Flags:       withFlags(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
				Action:      getFilter,
			},
			backfillCommand(),
		},
	}
}

// interspersed lets flags follow the argument, as in `shopstream filter set
// phone --wait`: urfave/cli v2 stops reading flags at the first argument, so
// these commands skip its parsing and parse their flags here, wherever they
// stand. A substring that starts with '-' goes after "--".
func interspersed(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		name := "filter " + c.Command.Name
		bad := func(err error) error {
			return usageErr("%s: %v (see `shopstream %s --help`; a substring that starts with '-' goes after --)", name, err, name)
		}
		set := flag.NewFlagSet(name, flag.ContinueOnError)
		set.SetOutput(io.Discard)
		for _, f := range c.Command.Flags {
			if err := f.Apply(set); err != nil {
				return bad(err)
			}
		}
		raw := c.Args().Slice()
		var args []string
		for len(raw) > 0 {
			if err := set.Parse(raw); err != nil {
				return bad(err)
			}
			rest := set.Args()
			if used := len(raw) - len(rest); used > 0 && raw[used-1] == "--" {
				args = append(args, rest...)
				break
			}
			if len(rest) == 0 {
				break
			}
			args = append(args, rest[0])
			raw = rest[1:]
		}
		if err := set.Parse(append([]string{"--"}, args...)); err != nil {
			return bad(err)
		}
		parent := c.Lineage()[1]
		cc := cli.NewContext(c.App, set, parent)
		cc.Command = c.Command
		if cc.Bool("help") {
			return cli.ShowCommandHelp(parent, c.Command.Name)
		}
		return action(cc)
	}
}

func defaultBy() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// changeFilter signals the StreamFilter workflow (starting it if needed)
// and, with --wait, waits until every live instance applied the change.
func changeFilter(c *cli.Context, signal string, payload func(by, id string, at time.Time) any) error {
	by := c.String("by")
	if by == "" {
		by = defaultBy()
	}
	// A backfill re-applies the filter in force: the change must be
	// published first.
	wait := c.Bool("wait") || c.IsSet("backfill")
	e, err := connect(c, wait, true)
	if err != nil {
		return err
	}
	defer e.close()
	id := requestID()
	out := c.App.Writer
	start := time.Now()
	run, err := e.temporal.SignalWithStartWorkflow(c.Context, workflows.StreamFilterWorkflowID, signal, payload(by, id, start),
		client.StartWorkflowOptions{ID: workflows.StreamFilterWorkflowID, TaskQueue: e.cfg.TaskQueue},
		workflows.StreamFilter, workflows.StreamFilterInput{})
	if err != nil {
		return fmt.Errorf("signal the StreamFilter workflow: %w", err)
	}
	fmt.Fprintf(out, "filter: %s sent (request %s) to workflow %s\n", signal, id, run.GetID())
	fmt.Fprintf(out, "Web UI: %s\n", e.cfg.WorkflowURL(run.GetID(), ""))
	if !wait {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	return waitApplied(ctx, e, id, start, out)
}

// waitApplied waits until the workflow made request id a version and
// published it, then until every live streamer instance applied it.
func waitApplied(ctx context.Context, e *env, id string, start time.Time, out io.Writer) error {
	var change workflows.FilterChange
	var published bool
	for !published {
		st, err := queryFilter(ctx, e)
		if err == nil {
			var ok bool
			if change, ok = st.Change(id); ok {
				if change.Rejected != "" {
					return fmt.Errorf("the StreamFilter workflow rejected the change: %s", change.Rejected)
				}
				published = st.PublishedVersion >= change.Version
			}
		}
		if !published && !pause(ctx, 20*time.Millisecond) {
			return fmt.Errorf("the change was not published within --timeout (is a worker running? `shopstream dev` or `shopstream worker`): %v", errOr(err, ctx.Err()))
		}
	}
	fmt.Fprintf(out, "filter: %s published\n", streamer.Describe(change.Version, change.Substring, change.CaseSensitive))
	for {
		reps, err := streamer.ReadApplied(ctx, e.kafkaClients, e.cfg.Topics.FilterApplied)
		if err == nil {
			now := time.Now()
			var live, behind int
			for _, r := range reps {
				if r.Live(now) {
					live++
					if r.Version < change.Version {
						behind++
					}
				}
			}
			if live == 0 {
				fmt.Fprintln(out, "filter: no streamer instance is live; each applies the filter when it starts")
				return nil
			}
			if behind == 0 {
				fmt.Fprintf(out, "filter: applied by %d live instance(s) %s after the request\n", live, time.Since(start).Round(time.Millisecond))
				return nil
			}
		}
		if !pause(ctx, 20*time.Millisecond) {
			return fmt.Errorf("not every live streamer instance applied v%d within --timeout (see `shopstream filter get`): %v", change.Version, errOr(err, ctx.Err()))
		}
	}
}

func errOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// errNoFilterWorkflow: nobody ever set a filter.
var errNoFilterWorkflow = errors.New("no StreamFilter workflow")

func queryFilter(ctx context.Context, e *env) (workflows.StreamFilterStatus, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := e.temporal.QueryWorkflow(qctx, workflows.StreamFilterWorkflowID, "", workflows.QueryFilter)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return workflows.StreamFilterStatus{}, errNoFilterWorkflow
	}
	if err != nil {
		return workflows.StreamFilterStatus{}, fmt.Errorf("query the StreamFilter workflow: %w", err)
	}
	var st workflows.StreamFilterStatus
	if err := v.Get(&st); err != nil {
		return workflows.StreamFilterStatus{}, fmt.Errorf("decode the StreamFilter status: %w", err)
	}
	return st, nil
}

// filterInstances reads every streamer instance's applied-filter report and
// compares it with the desired filter.
func filterInstances(ctx context.Context, e *env, desired workflows.FilterState, now time.Time) (health.Filter, error) {
	reps, err := streamer.ReadApplied(ctx, e.kafkaClients, e.cfg.Topics.FilterApplied)
	if err != nil {
		return health.Filter{}, err
	}
	return health.CheckFilter(desired.Version, desired.SetAt, reps, now), nil
}

func getFilter(c *cli.Context) error {
	e, err := connect(c, true, true)
	if err != nil {
		return err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(c.Context, 15*time.Second)
	defer cancel()
	st, err := queryFilter(ctx, e)
	noWorkflow := errors.Is(err, errNoFilterWorkflow)
	if err != nil && !noWorkflow {
		return fmt.Errorf("%w (is a worker running? `shopstream dev` or `shopstream worker`)", err)
	}
	now := time.Now()
	f, err := filterInstances(ctx, e, st.Desired, now)
	if err != nil {
		return err
	}
	views := f.Instances
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"desired": st.Desired, "published_version": st.PublishedVersion, "instances": views, "recent": st.Recent})
	}
	d := st.Desired
	if noWorkflow {
		fmt.Fprintln(out, "desired:   none set yet (v0: everything passes); `shopstream filter set SUBSTRING` starts the workflow")
	} else {
		fmt.Fprintf(out, "desired:   %s", streamer.Describe(d.Version, d.Substring, d.CaseSensitive))
		if d.SetBy != "" {
			fmt.Fprintf(out, ", set by %s at %s", d.SetBy, d.SetAt.Local().Format(time.DateTime))
		}
		fmt.Fprintf(out, "\npublished: v%d\n", st.PublishedVersion)
	}
	if len(views) == 0 {
		fmt.Fprintln(out, "instances: none reporting (start one with `shopstream streamer` or `shopstream dev`)")
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INSTANCE\tAPPLIED\tSINCE\tLAST SEEN\tSTATE")
		for _, v := range views {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\n", v.Instance, streamer.Describe(v.Version, v.Substring, v.CaseSensitive),
				v.AppliedAt.Local().Format(time.DateTime), now.Sub(v.HeartbeatAt).Round(time.Second), v.State)
		}
		tw.Flush()
	}
	if n := len(st.Recent); n > 0 {
		fmt.Fprintln(out, "recent changes:")
		for _, ch := range st.Recent[max(0, n-5):] {
			what := "clear"
			if ch.Action == workflows.FilterActionSet {
				what = fmt.Sprintf("set %q", ch.Substring)
				if ch.CaseSensitive {
					what += " (case-sensitive)"
				}
			}
			result := fmt.Sprintf("v%d", ch.Version)
			if ch.Rejected != "" {
				result = "rejected: " + ch.Rejected
			}
			fmt.Fprintf(out, "  %s  %s by %s -> %s\n", ch.At.Local().Format(time.DateTime), what, ch.By, result)
		}
	}
	return nil
}
