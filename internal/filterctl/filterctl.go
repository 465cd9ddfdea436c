// Package filterctl is the operator's side of the streamer's filter: a
// change sent to the StreamFilter workflow that owns it (starting the
// workflow if needed), waiting until every live streamer instance applied
// it, and the desired filter shown against what each instance applies.
package filterctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/health"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// Change is one filter change: a signal to the StreamFilter workflow.
type Change struct {
	// Signal is workflows.SignalSetFilter or workflows.SignalClearFilter.
	Signal string
	// Payload builds the signal from who makes the change, the request's
	// id and when it is made.
	Payload func(by, requestID string, at time.Time) any
	// By is who makes the change, as the workflow history records it;
	// DefaultBy() when empty.
	By string
	// Wait returns only once every live streamer instance applied the
	// change, or Timeout passed.
	Wait    bool
	Timeout time.Duration
}

// DefaultBy is user@host.
func DefaultBy() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// Send signals the StreamFilter workflow (starting it if needed) and, when
// ch says so, waits until every live instance applied the change. With
// Wait, e must have a connected Kafka client.
func Send(ctx context.Context, e *process.Env, ch Change, out io.Writer) error {
	by := ch.By
	if by == "" {
		by = DefaultBy()
	}
	id := randid.Hex(8)
	start := time.Now()
	run, err := e.Temporal.SignalWithStartWorkflow(ctx, workflows.StreamFilterWorkflowID, ch.Signal, ch.Payload(by, id, start),
		client.StartWorkflowOptions{ID: workflows.StreamFilterWorkflowID, TaskQueue: e.Config.TaskQueue},
		workflows.StreamFilter, workflows.StreamFilterInput{})
	if err != nil {
		return fmt.Errorf("signal the StreamFilter workflow: %w", err)
	}
	fmt.Fprintf(out, "filter: %s sent (request %s) to workflow %s\n", ch.Signal, id, run.GetID())
	fmt.Fprintf(out, "Web UI: %s\n", e.Config.WorkflowURL(run.GetID(), ""))
	if !ch.Wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, ch.Timeout)
	defer cancel()
	return waitApplied(wctx, e, id, start, out)
}

// waitApplied waits until the workflow made request id a version and
// published it, then until every live streamer instance applied it.
func waitApplied(ctx context.Context, e *process.Env, id string, start time.Time, out io.Writer) error {
	var change workflows.FilterChange
	var published bool
	for !published {
		st, err := Query(ctx, e)
		if err == nil {
			var ok bool
			if change, ok = st.Change(id); ok {
				if change.Rejected != "" {
					return fmt.Errorf("the StreamFilter workflow rejected the change: %s", change.Rejected)
				}
				published = st.PublishedVersion >= change.Version
			}
		}
		if !published && clock.Sleep(ctx, 20*time.Millisecond) != nil {
			return fmt.Errorf("the change was not published within --timeout (is a worker running? `shopstream dev` or `shopstream worker`): %v", errOr(err, ctx.Err()))
		}
	}
	fmt.Fprintf(out, "filter: %s published\n", streamer.Describe(change.Version, change.Substring, change.CaseSensitive))
	for {
		reps, err := health.ReadApplied(ctx, e.Kafka, e.Config.Topics.FilterApplied)
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
		if clock.Sleep(ctx, 20*time.Millisecond) != nil {
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

// ErrNoWorkflow says nobody ever set a filter: no StreamFilter workflow
// exists.
var ErrNoWorkflow = errors.New("no StreamFilter workflow")

// Query asks the StreamFilter workflow for the desired filter, the version
// it published and its recent changes.
func Query(ctx context.Context, e *process.Env) (workflows.StreamFilterStatus, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := e.Temporal.QueryWorkflow(qctx, workflows.StreamFilterWorkflowID, "", workflows.QueryFilter)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return workflows.StreamFilterStatus{}, ErrNoWorkflow
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

// Instances reads every streamer instance's applied-filter report and
// compares it with the desired filter.
func Instances(ctx context.Context, e *process.Env, desired workflows.FilterState, now time.Time) (health.Filter, error) {
	reps, err := health.ReadApplied(ctx, e.Kafka, e.Config.Topics.FilterApplied)
	if err != nil {
		return health.Filter{}, err
	}
	return health.CheckFilter(desired.Version, desired.SetAt, reps, now), nil
}

// Show prints the desired filter, the version each live streamer instance
// applies and the recent changes; as JSON when asJSON. It gives up after
// 15 s.
func Show(ctx context.Context, e *process.Env, asJSON bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := Query(ctx, e)
	noWorkflow := errors.Is(err, ErrNoWorkflow)
	if err != nil && !noWorkflow {
		return fmt.Errorf("%w (is a worker running? `shopstream dev` or `shopstream worker`)", err)
	}
	now := time.Now()
	f, err := Instances(ctx, e, st.Desired, now)
	if err != nil {
		return err
	}
	views := f.Instances
	if asJSON {
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
