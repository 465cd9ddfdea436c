package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/filterctl"
	"github.com/shopstream/shopstream/internal/process"
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
					&cli.StringFlag{Name: "backfill", Usage: "then re-apply the filter to products published this long before (24h, 7d, or all; see filter backfill --help)"}),
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
				Action: withEnv(process.NeedKafka|process.NeedTemporal, func(c *cli.Context, e *process.Env) error {
					return filterctl.Show(c.Context, e, c.Bool("json"), c.App.Writer)
				}),
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

// changeFilter sends a filter change, with --wait until every live
// streamer instance applied it.
func changeFilter(c *cli.Context, signal string, payload func(by, id string, at time.Time) any) error {
	// A backfill re-applies the filter in force: the change must be
	// published and applied first.
	wait := c.Bool("wait") || c.IsSet("backfill")
	needs := process.NeedTemporal
	if wait {
		needs |= process.NeedKafka
	}
	e, err := connect(c, needs)
	if err != nil {
		return err
	}
	defer e.Close()
	return filterctl.Send(c.Context, e, filterctl.Change{
		Signal: signal, Payload: payload, By: c.String("by"), Wait: wait, Timeout: c.Duration("timeout"),
	}, c.App.Writer)
}
