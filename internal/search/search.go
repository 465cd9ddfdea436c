// Package search sends users' search prompts and reads the
// recommendations they produce: the prompts checked before any is sent,
// sent one per record keyed by the user, the recommendations read from the
// user's partition (to the last stable offset, then followed), and what
// each search recommended printed once the recommender answered it.
package search

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/exitcode"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/streamer/recommender"
)

// CheckPrompt says what is wrong with a prompt, or nothing.
func CheckPrompt(q string) error {
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

// CheckUser returns the trimmed user who searches, or says what is wrong
// with it (exit code 2).
func CheckUser(user string) (string, error) {
	user = strings.TrimSpace(user)
	switch {
	case user == "":
		return "", exitcode.Usagef("--user is empty: say who is searching, e.g. --user alice (or set SHOPSTREAM_USER)")
	case !utf8.ValidString(user):
		return "", exitcode.Usagef("--user is not valid UTF-8")
	case len(user) > recommender.MaxUserIDBytes:
		// The join dead-letters longer ids: refuse them before they are sent.
		return "", exitcode.Usagef("--user is %d bytes; at most %d", len(user), recommender.MaxUserIDBytes)
	}
	return user, nil
}

// ReadPrompts reads every line and checks each; one bad line refuses all,
// and nothing is sent.
func ReadPrompts(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var prompts, problems []string
	line := 0
	for sc.Scan() {
		line++
		q := strings.TrimRight(sc.Text(), "\r")
		if err := CheckPrompt(q); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		prompts = append(prompts, q)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, exitcode.Usagef("line %d is longer than 1 MiB; a prompt is at most %d bytes: nothing was sent", line+1, recommender.MaxQueryBytes)
		}
		return nil, fmt.Errorf("read prompts from standard input: %w", err)
	}
	if len(problems) > 0 {
		return nil, exitcode.Usagef("%s\nnothing was sent", strings.Join(problems, "\n"))
	}
	if len(prompts) == 0 {
		return nil, exitcode.Usagef("no prompt given: pass one as an argument, e.g. shopstream search --user alice \"iPhone 15\", or one per line on standard input")
	}
	return prompts, nil
}

// Searcher sends one user's prompts.
type Searcher struct {
	// Env must have a connected Kafka client.
	Env  *process.Env
	User string
	Out  io.Writer
	// Wait prints what each prompt recommended, waiting up to WaitTimeout.
	Wait        bool
	WaitTimeout time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Search sends the prompts and, with Wait, prints what each produced.
func (s *Searcher) Search(ctx context.Context, prompts []string) error {
	var w *recsWatcher
	if s.Wait {
		var err error
		// Look at the end of the user's recommendations before sending,
		// so that nothing the searches produce is missed.
		if w, err = newRecsWatcher(ctx, s.Env, s.User); err != nil {
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
	return w.waitFor(ctx, sent, s.WaitTimeout, s.Out)
}

// Interactive reads prompts from a person at a terminal, one per line, and
// searches each as it is typed; a bad line is refused and the next one read.
func (s *Searcher) Interactive(ctx context.Context, in io.Reader, errw io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	bad := 0
	fmt.Fprintf(errw, "searching as %s: one prompt per line, Ctrl-D to end\n", s.User)
	for {
		fmt.Fprint(errw, "search> ")
		if !sc.Scan() {
			break
		}
		q := strings.TrimRight(sc.Text(), "\r")
		if err := CheckPrompt(q); err != nil {
			fmt.Fprintf(errw, "not sent: %v\n", err)
			bad++
			continue
		}
		if err := s.Search(ctx, []string{q}); err != nil {
			return err
		}
	}
	fmt.Fprintln(errw)
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read prompts from standard input: %w", err)
	}
	if bad > 0 {
		return exitcode.New(exitcode.Usage, fmt.Sprintf("%d prompt(s) were not sent", bad))
	}
	return nil
}

// send produces one SearchPrompt and says where it went.
func (s *Searcher) send(ctx context.Context, q string) (*records.SearchPrompt, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	p := &records.SearchPrompt{
		SearchID: "s-" + randid.Hex(8), UserID: s.User, Query: q,
		// The record keeps milliseconds; --wait compares with it.
		SearchedAt: now().UTC().Truncate(time.Millisecond),
	}
	topic := s.Env.Config.Topics.Find
	v, err := s.Env.Serde.Encode(ctx, nil, topic, p)
	if err != nil {
		return nil, fmt.Errorf("encode the search prompt: %w", err)
	}
	r := &kgo.Record{Topic: topic, Key: []byte(s.User), Value: v}
	if err := s.Env.Client.ProduceSync(ctx, r).FirstErr(); err != nil {
		return nil, fmt.Errorf("send the search prompt to topic %s: %w", topic, err)
	}
	fmt.Fprintf(s.Out, "search %s: %s searched %q (topic %s, partition %d, offset %d)\n", p.SearchID, s.User, q, topic, r.Partition, r.Offset)
	return p, nil
}
