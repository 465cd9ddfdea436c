package runwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/exitcode"
)

// Job is a workflow that runs one at a time under a fixed id (a backfill, a
// dead-letter replay) as its commands see it: follow the run a command
// started, show the running or the last run, cancel it. Both jobs say the
// same things in the same words, so the words live here once.
type Job[P, R any] struct {
	// Name starts every line printed and every error ("backfill").
	Name string
	// Command is the command that starts a run ("shopstream filter
	// backfill"); its status and cancel subcommands are named after it.
	Command string
	// ID is the fixed workflow id; Query its progress query.
	ID, Query string
	// None says that no run exists yet and what to do.
	None string
	// Watch says how Follow draws the run's progress.
	Watch func(c client.Client, out io.Writer, tty bool) Options
	// Progress writes a running run's progress; Summary a finished run's
	// result, with its Web UI link.
	Progress func(io.Writer, P)
	Summary  func(w io.Writer, r R, url string)
}

// Follow shows run's progress until it ends, then its summary; with detach
// it returns at once. Ctrl-C stops the watch, not the run: the error then
// carries exit code 130.
func (j Job[P, R]) Follow(ctx context.Context, c client.Client, run client.WorkflowRun, url string, w io.Writer, tty, detach bool) error {
	if detach {
		fmt.Fprintf(w, "%s: detached; follow with `%s status`, stop with `%s cancel`\n", j.Name, j.Command, j.Command)
		return nil
	}
	var res R
	err := Follow(ctx, j.Watch(c, w, tty), run, &res)
	switch {
	case errors.Is(err, ErrDetached):
		fmt.Fprintf(w, "%s: stopped watching; it goes on: `%s status`, `%s cancel`\n", j.Name, j.Command, j.Command)
		return exitcode.New(130, "")
	case err != nil:
		return fmt.Errorf("%s: %w (see %s)", j.Name, err, url)
	}
	j.Summary(w, res, url)
	return nil
}

// Show prints the running run's progress, or the last run's summary.
func (j Job[P, R]) Show(ctx context.Context, c client.Client, url string, w io.Writer) error {
	return j.err(Show(ctx, c, j.ID, j.Query, url, w, j.Progress, func(w io.Writer, r R) { j.Summary(w, r, url) }))
}

// Cancel stops the running run, waiting up to wait for it to end.
func (j Job[P, R]) Cancel(ctx context.Context, c client.Client, wait time.Duration, w io.Writer) error {
	how, err := Cancel(ctx, c, j.ID, wait)
	if err != nil {
		return j.err(err)
	}
	fmt.Fprintf(w, "%s: %s %s; the ranges it committed stay\n", j.Name, j.ID, how)
	return nil
}

func (j Job[P, R]) err(err error) error {
	if IsNotFound(err) {
		return exitcode.New(1, j.Name+": "+j.None)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", j.Name, err)
	}
	return nil
}
