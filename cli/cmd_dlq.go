package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/process"
)

func dlqCommand() *cli.Command {
	return &cli.Command{
		Name:  "dlq",
		Usage: "inspect the dead-letter topic, and send dead letters back once their cause is fixed",
		Subcommands: []*cli.Command{{
			Name:        "list",
			Usage:       "show the newest dead-lettered records: why, by whom, from where, when",
			Description: deadletter.Describe() + "\nExamples:\n  shopstream dlq list\n  shopstream dlq list --limit 100 --json",
			Flags: withFlags(
				&cli.IntFlag{Name: "limit", Value: 20, Usage: "show at most this many, the newest (0: all)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON, values base64-encoded"},
			),
			Action: listDLQ,
		}, dlqReplayCommand()},
	}
}

func listDLQ(c *cli.Context) error {
	limit := c.Int("limit")
	if limit < 0 {
		return usageErr("--limit %d: want 0 (all) or more", limit)
	}
	if c.NArg() != 0 {
		return usageErr("dlq list takes no arguments")
	}
	e, err := connect(c, process.NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	dead, err := deadletter.Read(ctx, e.Kafka, e.Config.Topics.DLQ, limit)
	if err != nil {
		return err
	}
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(dead)
	}
	if len(dead) == 0 {
		fmt.Fprintf(out, "dlq: %s is empty\n", e.Config.Topics.DLQ)
		return nil
	}
	deadletter.PrintTable(out, dead)
	fmt.Fprintf(out, "dlq: %d record(s) shown from %s\n", len(dead), e.Config.Topics.DLQ)
	return nil
}
