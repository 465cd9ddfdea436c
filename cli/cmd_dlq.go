package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/deadletter"
)

func dlqCommand() *cli.Command {
	return &cli.Command{
		Name:  "dlq",
		Usage: "inspect the dead-letter topic, and send dead letters back once their cause is fixed",
		Subcommands: []*cli.Command{{
			Name:        "list",
			Usage:       "show the newest dead-lettered records: why, by whom, from where, when",
			Description: dlqDescription(),
			Flags: withFlags(
				&cli.IntFlag{Name: "limit", Value: 20, Usage: "show at most this many, the newest (0: all)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON, values base64-encoded"},
			),
			Action: listDLQ,
		}, dlqReplayCommand()},
	}
}

// dlqDescription lists the reason vocabulary that every component writes.
func dlqDescription() string {
	var b strings.Builder
	b.WriteString("Records land here when a component (streamer, recommender, sink, collector) cannot process them.\n" +
		"Their key, value and headers are kept; added headers say why (the reason, and the error in detail),\n" +
		"which component, the source topic, partition and offset, and when. The reasons:\n\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, m := range deadletter.Vocabulary() {
		fmt.Fprintf(tw, "  %s\t%s\n", m.Reason, m.Means)
	}
	tw.Flush()
	b.WriteString("\nExamples:\n  shopstream dlq list\n  shopstream dlq list --limit 100 --json")
	return b.String()
}

func listDLQ(c *cli.Context) error {
	limit := c.Int("limit")
	if limit < 0 {
		return usageErr("--limit %d: want 0 (all) or more", limit)
	}
	if c.NArg() != 0 {
		return usageErr("dlq list takes no arguments")
	}
	e, err := connect(c, true, false)
	if err != nil {
		return err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	dead, err := deadletter.Read(ctx, e.kafkaClients, e.cfg.Topics.DLQ, limit)
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
		fmt.Fprintf(out, "dlq: %s is empty\n", e.cfg.Topics.DLQ)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tBY\tREASON\tFROM\tKEY\tVALUE\tERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.Local().Format("2006-01-02 15:04:05.000"), d.Component, d.Reason,
			d.SourceTopic+"/"+strconv.Itoa(int(d.SourcePartition))+"@"+strconv.FormatInt(d.SourceOffset, 10),
			preview(d.Key, 24), fmt.Sprintf("%d bytes %s", len(d.Value), preview(d.Value, 16)), d.Error)
	}
	tw.Flush()
	fmt.Fprintf(out, "dlq: %d record(s) shown from %s\n", len(dead), e.cfg.Topics.DLQ)
	return nil
}

// preview shows the start of a key or value: text as text, binary as hex.
func preview(b []byte, n int) string {
	if b == nil {
		return "null"
	}
	printable := utf8.Valid(b) && strings.IndexFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) }) < 0
	if printable {
		s := string(b)
		if r := []rune(s); len(r) > n {
			s = string(r[:n]) + "…"
		}
		return strconv.Quote(s)
	}
	if len(b) > n/2 {
		return fmt.Sprintf("%x…", b[:n/2])
	}
	return fmt.Sprintf("%x", b)
}
