// Package runwatch is the client side of a long Temporal workflow run that
// a command starts and an operator follows: a progress bar (plain lines
// when the output is not a terminal) fed by the run's progress query, its
// status, and its cancellation. `shopstream filter backfill` and `shopstream
// dlq replay` use it.
package runwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// Progress is one sample of a run's progress.
type Progress struct {
	Done, Total int64
	// Unit names what Done and Total count ("records", "letters").
	Unit string
	// Detail is what else to say (the phase, counts).
	Detail string
}

// Options say which run to watch and how.
type Options struct {
	Client client.Client
	// Query is the run's progress query; Decode turns its answer into a
	// Progress.
	Query  string
	Decode func(converter.EncodedValue) (Progress, error)
	Out    io.Writer
	// TTY draws a bar that redraws itself; otherwise a line every Every.
	TTY bool
	// Every is how often a plain line is printed (5s).
	Every time.Duration
}

// Decoding builds an Options.Decode that reads the query's answer as a P
// and says it with sample.
func Decoding[P any](sample func(P) Progress) func(converter.EncodedValue) (Progress, error) {
	return func(v converter.EncodedValue) (Progress, error) {
		var p P
		if err := v.Get(&p); err != nil {
			return Progress{}, err
		}
		return sample(p), nil
	}
}

// QueryAs asks the run with workflow id id for its progress, as a P.
func QueryAs[P any](ctx context.Context, c client.Client, id, query string) (P, error) {
	var p P
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(ctx, id, "", query)
	if err != nil {
		return p, fmt.Errorf("query the progress of %s: %w", id, err)
	}
	return p, v.Get(&p)
}

// ErrDetached says the watch stopped (Ctrl-C) while the run goes on.
var ErrDetached = errors.New("stopped watching; the workflow goes on")

// Follow shows the run's progress until it ends and then returns what
// run.Get returns, with the result decoded into result.
func Follow(ctx context.Context, o Options, run client.WorkflowRun, result any) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, result) }()
	interval := o.Every
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if o.TTY {
		interval = 250 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var meter RateMeter
	drawn := false
	for {
		select {
		case err := <-done:
			if drawn {
				fmt.Fprint(o.Out, "\r\x1b[2K")
			}
			if ctx.Err() != nil {
				return ErrDetached
			}
			return err
		case now := <-tick.C:
			p, err := Query(ctx, o, run.GetID())
			if err != nil {
				continue // no worker has picked the run up yet
			}
			rate := meter.Add(now, p.Done)
			if o.TTY {
				fmt.Fprintf(o.Out, "\r\x1b[2K%s", Bar(p, rate))
				drawn = true
			} else {
				fmt.Fprintln(o.Out, Line(p, rate))
			}
		}
	}
}

// Query asks the run with workflow id id for its progress.
func Query(ctx context.Context, o Options, id string) (Progress, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := o.Client.QueryWorkflow(ctx, id, "", o.Query)
	if err != nil {
		return Progress{}, fmt.Errorf("query the progress of %s: %w", id, err)
	}
	return o.Decode(v)
}

// Line is one plain progress line.
func Line(p Progress, rate float64) string {
	s := fmt.Sprintf("%d/%d %s (%.1f%%)", p.Done, p.Total, p.Unit, percent(p))
	if rate > 0 {
		s += fmt.Sprintf(", %.0f/s, ETA %s", rate, eta(p, rate))
	}
	if p.Detail != "" {
		s += "; " + p.Detail
	}
	return s
}

// Bar is the progress bar that a terminal redraws.
func Bar(p Progress, rate float64) string {
	const width = 30
	fill := min(int(percent(p)/100*width), width)
	s := fmt.Sprintf("%s %5.1f%%  %d/%d", strings.Repeat("█", fill)+strings.Repeat("░", width-fill), percent(p), p.Done, p.Total)
	if rate > 0 {
		s += fmt.Sprintf("  %.0f/s  ETA %s", rate, eta(p, rate))
	}
	if p.Detail != "" {
		s += "  " + p.Detail
	}
	return s
}

func percent(p Progress) float64 {
	if p.Total <= 0 {
		return 0
	}
	return 100 * float64(p.Done) / float64(p.Total)
}

func eta(p Progress, rate float64) time.Duration {
	return time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second)).Round(time.Second)
}

// RateMeter turns (time, done) samples into a rate over the last ten
// seconds, so a stall shows soon and one burst does not spike.
type RateMeter struct {
	samples []sample
}

type sample struct {
	at time.Time
	n  int64
}

// Add records that n were done at at and returns the rate per second.
func (m *RateMeter) Add(at time.Time, n int64) float64 {
	m.samples = append(m.samples, sample{at, n})
	for len(m.samples) > 2 && at.Sub(m.samples[0].at) > 10*time.Second {
		m.samples = m.samples[1:]
	}
	first := m.samples[0]
	if d := at.Sub(first.at).Seconds(); d > 0 {
		return float64(n-first.n) / d
	}
	return 0
}

// Status is a run's state: running, completed, failed, canceled, ….
func Status(ctx context.Context, c client.Client, id string) (enumspb.WorkflowExecutionStatus, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return 0, err
	}
	return desc.GetWorkflowExecutionInfo().GetStatus(), nil
}

// Show prints what the run with workflow id id is doing: its status word,
// then its progress (query, shown by progress) while it runs, its result
// (shown by summary) once it completed, or how it ended otherwise. url is
// its Web UI link.
func Show[P, R any](ctx context.Context, c client.Client, id, query, url string, w io.Writer, progress func(io.Writer, P), summary func(io.Writer, R)) error {
	status, err := Status(ctx, c, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s is %s\n", id, StatusWord(status))
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		var p P
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if v, err := c.QueryWorkflow(qctx, id, "", query); err != nil || v.Get(&p) != nil {
			fmt.Fprintf(w, "  no progress yet (is a worker running? `shopstream dev` or `shopstream worker`)\n")
		} else {
			progress(w, p)
		}
		if d := PendingDetail(ctx, c, id); d != "" {
			fmt.Fprintf(w, "  now: %s\n", d)
		}
		fmt.Fprintf(w, "  Web UI %s\n", url)
		return nil
	}
	var r R
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &r); err != nil {
		fmt.Fprintf(w, "  %v\n  Web UI %s\n", err, url)
		return nil
	}
	summary(w, r)
	return nil
}

// StatusWord is a status as a lowercase word.
func StatusWord(s enumspb.WorkflowExecutionStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "WORKFLOW_EXECUTION_STATUS_"))
}

// PendingDetail is the newest heartbeat detail of the run's pending
// activity, if it heartbeats a string (what it waits for); "" otherwise.
func PendingDetail(ctx context.Context, c client.Client, id string) string {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return ""
	}
	for _, a := range desc.GetPendingActivities() {
		var s string
		if d := a.GetHeartbeatDetails(); d != nil && converter.GetDefaultDataConverter().FromPayloads(d, &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// Cancel asks the run to stop and waits up to wait for it to end. It says
// how the run ended: "canceled", "finished" (before the cancel reached it),
// or its error.
func Cancel(ctx context.Context, c client.Client, id string, wait time.Duration) (string, error) {
	if err := c.CancelWorkflow(ctx, id, ""); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := c.GetWorkflow(wctx, id, "").Get(wctx, nil)
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		return "finished", nil
	case errors.As(err, &canceled):
		return "canceled", nil
	case wctx.Err() != nil:
		return "", fmt.Errorf("%s did not stop within %s: it stops once its workers report the running activities stopped", id, wait)
	}
	return "ended: " + err.Error(), nil
}

// IsNotFound says whether err is Temporal's "no such workflow".
func IsNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
