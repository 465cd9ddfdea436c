package main

import (
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/search"
)

func searchCommand() *cli.Command {
	return &cli.Command{
		Name:      "search",
		Usage:     "send a search prompt for a user; a product whose name equals it becomes a recommendation",
		ArgsUsage: `"<prompt>"  (or prompts line by line on standard input)`,
		Description: "Produces a SearchPrompt {search_id, user_id, query, searched_at} keyed by the user to the find\n" +
			"topic. The recommender (built in, or ksqlDB) joins it with the filtered products whose name equals\n" +
			"it after trimming, case folding and collapsing spaces, and updates the user's recommendations;\n" +
			"--wait prints what the search produced. A prompt must not be empty or longer than 1024 bytes.\n\n" +
			"With no prompt argument, prompts are read from standard input one per line: from a pipe they are\n" +
			"all checked before any is sent; at a terminal each line is sent as it is typed (Ctrl-D ends).\n\n" +
			"Examples:\n" +
			"  shopstream search --user alice \"iPhone 15\"\n" +
			"  shopstream search --user alice --wait \"iPhone 15\"\n" +
			"  printf 'iPhone 15\\nGalaxy S24\\n' | shopstream search --user bob",
		Flags: withFlags(
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, EnvVars: []string{"SHOPSTREAM_USER"}, Usage: "who is searching (the record key)"},
			&cli.BoolFlag{Name: "wait", Usage: "wait for the recommendations each search produced and print them"},
			&cli.DurationFlag{Name: "wait-timeout", Value: 30 * time.Second, Usage: "how long --wait waits for the recommender"},
		),
		Action: runSearch,
	}
}

func runSearch(c *cli.Context) error {
	user, err := search.CheckUser(c.String("user"))
	if err != nil {
		return err
	}
	if c.Duration("wait-timeout") <= 0 {
		return usageErr("--wait-timeout %s: want a positive duration such as 30s", c.Duration("wait-timeout"))
	}
	interactive := false
	var prompts []string
	if c.NArg() > 0 {
		q := strings.Join(c.Args().Slice(), " ")
		if err := search.CheckPrompt(q); err != nil {
			return usageErr("%v", err)
		}
		prompts = []string{q}
	} else if isTerminal(c.App.Reader) {
		interactive = true
	} else {
		// From a pipe or a file: check every line before sending any.
		if prompts, err = search.ReadPrompts(c.App.Reader); err != nil {
			return err
		}
	}

	e, err := connect(c, process.NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	s := &search.Searcher{Env: e, User: user, Out: c.App.Writer, Wait: c.Bool("wait"), WaitTimeout: c.Duration("wait-timeout")}
	if interactive {
		return s.Interactive(c.Context, c.App.Reader, c.App.ErrWriter)
	}
	return s.Search(c.Context, prompts)
}

func recsCommand() *cli.Command {
	return &cli.Command{
		Name:  "recs",
		Usage: "show a user's current recommendations (newest first)",
		Description: "Reads the user's latest Recommendation from the recommendations topic (committed records only).\n" +
			"--follow then prints each update as it arrives, until Ctrl-C; --json prints the record as JSON, with\n" +
			"each recommendation's age_seconds since the search that made it\n" +
			"(one object per line with --follow; null when the user has none).\n\n" +
			"Examples:\n  shopstream recs --user alice\n  shopstream recs --user alice --follow --json",
		Flags: withFlags(
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, EnvVars: []string{"SHOPSTREAM_USER"}, Usage: "whose recommendations"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing each update until Ctrl-C"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		),
		Action: func(c *cli.Context) error {
			user, err := search.CheckUser(c.String("user"))
			if err != nil {
				return err
			}
			return withEnv(process.NeedKafka, func(c *cli.Context, e *process.Env) error {
				return search.ShowRecs(c.Context, e, user, c.Bool("follow"), c.Bool("json"), c.App.Writer)
			})(c)
		},
	}
}
