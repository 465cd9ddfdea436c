package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/streamer/recommender"
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

// checkUser returns the trimmed user or a usage error.
func checkUser(c *cli.Context) (string, error) {
	user := strings.TrimSpace(c.String("user"))
	switch {
	case user == "":
		return "", usageErr("--user is empty: say who is searching, e.g. --user alice (or set SHOPSTREAM_USER)")
	case !utf8.ValidString(user):
		return "", usageErr("--user is not valid UTF-8")
	case len(user) > 256:
		return "", usageErr("--user is %d bytes; at most 256", len(user))
	}
	return user, nil
}

// checkPrompt says what is wrong with a prompt, or nothing.
func checkPrompt(q string) error {
	switch {
	case !utf8.ValidString(q):
		return errors.New("the prompt is not valid UTF-8")
	case recommender.Normalize(q) == "":
		return errors.New("the prompt is empty: say what to search for, e.g. \"iPhone 15\"")
	case len(q) > recommender.MaxQueryBytes:
		return fmt.Errorf("the prompt is %d bytes; at most %d", len(q), recommender.MaxQueryBytes)
	}
	return nil
}

func runSearch(c *cli.Context) error {
	user, err := checkUser(c)
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
		if err := checkPrompt(q); err != nil {
			return usageErr("%v", err)
		}
		prompts = []string{q}
	} else if isTerminal(c.App.Reader) {
		interactive = true
	} else {
		// From a pipe or a file: check every line before sending any.
		if prompts, err = readPrompts(c.App.Reader); err != nil {
			return err
		}
	}

	e, err := connect(c, true, false)
	if err != nil {
		return err
	}
	defer e.close()
	s := &searcher{e: e, user: user, out: c.App.Writer, wait: c.Bool("wait"), waitTimeout: c.Duration("wait-timeout")}
	if interactive {
		return s.interactive(c.Context, c.App.Reader, c.App.ErrWriter)
	}
	return s.search(c.Context, prompts)
}

// readPrompts reads every line and checks each; one bad line refuses all.
func readPrompts(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var prompts, problems []string
	line := 0
	for sc.Scan() {
		line++
		q := strings.TrimRight(sc.Text(), "\r")
		if err := checkPrompt(q); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		prompts = append(prompts, q)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, usageErr("line %d is longer than 1 MiB; a prompt is at most %d bytes: nothing was sent", line+1, recommender.MaxQueryBytes)
		}
		return nil, fmt.Errorf("read prompts from standard input: %w", err)
	}
	if len(problems) > 0 {
		return nil, usageErr("%s\nnothing was sent", strings.Join(problems, "\n"))
	}
	if len(prompts) == 0 {
		return nil, usageErr("no prompt given: pass one as an argument, e.g. shopstream search --user alice \"iPhone 15\", or one per line on standard input")
	}
	return prompts, nil
}

type searcher struct {
	e           *env
	user        string
	out         io.Writer
	wait        bool
	waitTimeout time.Duration
	now         func() time.Time
}

// search sends the prompts and, with --wait, prints what each produced.
func (s *searcher) search(ctx context.Context, prompts []string) error {
	var w *recsWatcher
	if s.wait {
		var err error
		// Look at the end of the user's recommendations before sending,
		// so that nothing the searches produce is missed.
		if w, err = newRecsWatcher(ctx, s.e, s.user); err != nil {
			return err
		}
		defer w.close()
	}
	var sent []*records.SearchPrompt
	for _, q := range prompts {
		p, err := s.send(ctx, q)
		if err != nil {
			return err
		}
		sent = append(sent, p)
	}
	if w == nil {
		return nil
	}
	return w.waitFor(ctx, sent, s.waitTimeout, s.out)
}

func (s *searcher) interactive(ctx context.Context, in io.Reader, errw io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	bad := 0
	fmt.Fprintf(errw, "searching as %s: one prompt per line, Ctrl-D to end\n", s.user)
	for {
		fmt.Fprint(errw, "search> ")
		if !sc.Scan() {
			break
		}
		q := strings.TrimRight(sc.Text(), "\r")
		if err := checkPrompt(q); err != nil {
			fmt.Fprintf(errw, "not sent: %v\n", err)
			bad++
			continue
		}
		if err := s.search(ctx, []string{q}); err != nil {
			return err
		}
	}
	fmt.Fprintln(errw)
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read prompts from standard input: %w", err)
	}
	if bad > 0 {
		return cli.Exit(fmt.Sprintf("%d prompt(s) were not sent", bad), exitUsage)
	}
	return nil
}

// send produces one SearchPrompt and says where it went.
func (s *searcher) send(ctx context.Context, q string) (*records.SearchPrompt, error) {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	p := &records.SearchPrompt{
		SearchID: newSearchID(), UserID: s.user, Query: q,
		// The record keeps milliseconds; --wait compares with it.
		SearchedAt: now().UTC().Truncate(time.Millisecond),
	}
	topic := s.e.cfg.Topics.Find
	v, err := s.e.serde.Encode(ctx, nil, topic, p)
	if err != nil {
		return nil, fmt.Errorf("encode the search prompt: %w", err)
	}
	r := &kgo.Record{Topic: topic, Key: []byte(s.user), Value: v}
	if err := s.e.kafka.ProduceSync(ctx, r).FirstErr(); err != nil {
		return nil, fmt.Errorf("send the search prompt to topic %s: %w", topic, err)
	}
	fmt.Fprintf(s.out, "search %s: %s searched %q (topic %s, partition %d, offset %d)\n", p.SearchID, s.user, q, topic, r.Partition, r.Offset)
	return p, nil
}

func newSearchID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return "s-" + hex.EncodeToString(b[:])
}
