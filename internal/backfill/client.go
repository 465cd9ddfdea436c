package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/runwatch"
	"github.com/shopstream/shopstream/workflows"
)

// Started is a backfill request's run: one it started, or the one already
// running that it attached to.
type Started struct {
	Run      client.WorkflowRun
	Attached bool
	// Running is the attached run's progress (zero when started).
	Running workflows.BackfillProgress
}

// Start starts the Backfill workflow on taskQueue, or attaches to the one
// that runs: one backfill at a time, so a second request does not double
// the work.
func Start(ctx context.Context, tc client.Client, taskQueue string, in workflows.BackfillInput) (Started, error) {
	id := workflows.BackfillWorkflowID
	if st, err := runwatch.Status(ctx, tc, id); err == nil && st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		p, _ := Progress(ctx, tc)
		return Started{Run: tc.GetWorkflow(ctx, id, ""), Attached: true, Running: p}, nil
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: taskQueue,
		// Two requests at the same moment: the second gets the first's run.
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflows.Backfill, in)
	if err != nil {
		return Started{}, fmt.Errorf("start the Backfill workflow: %w", err)
	}
	// The run may be another request's, started a moment before ours.
	for range 10 {
		p, err := Progress(ctx, tc)
		if err == nil {
			if p.RequestID != in.RequestID {
				return Started{Run: run, Attached: true, Running: p}, nil
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return Started{Run: run}, nil
}

// Progress queries the running backfill.
func Progress(ctx context.Context, tc client.Client) (workflows.BackfillProgress, error) {
	return runwatch.QueryAs[workflows.BackfillProgress](ctx, tc, workflows.BackfillWorkflowID, workflows.QueryBackfillProgress)
}

// Watch says how runwatch follows a backfill: offsets re-read of those
// planned, and what became of them.
func Watch(tc client.Client, out io.Writer, tty bool) runwatch.Options {
	return runwatch.Options{Client: tc, Query: workflows.QueryBackfillProgress, Out: out, TTY: tty,
		Decode: runwatch.Decoding(func(p workflows.BackfillProgress) runwatch.Progress {
			detail := p.Phase
			if p.Phase == workflows.PhaseRunning {
				detail = fmt.Sprintf("%d forwarded, %d ranges of %d done", p.Counts.Forwarded, p.RangesDone, p.Ranges)
			}
			return runwatch.Progress{Done: p.Done, Total: p.Offsets, Unit: "records", Detail: detail}
		})}
}

// Job is how `shopstream filter backfill` and its status and cancel
// subcommands follow, show and stop the backfill.
func Job() runwatch.Job[workflows.BackfillProgress, workflows.BackfillResult] {
	return runwatch.Job[workflows.BackfillProgress, workflows.BackfillResult]{
		Name: "backfill", Command: "shopstream filter backfill", None: ErrNone.Error(),
		ID: workflows.BackfillWorkflowID, Query: workflows.QueryBackfillProgress,
		Watch: Watch, Progress: PrintProgress, Summary: PrintSummary,
	}
}

// Describe says what a backfill covers, in one line.
func Describe(from, to time.Time, filter workflows.FilterState) string {
	span := "the whole retention"
	switch {
	case !from.IsZero() && !to.IsZero():
		span = "records from " + from.Local().Format(time.DateTime) + " to " + to.Local().Format(time.DateTime)
	case !from.IsZero():
		span = "records since " + from.Local().Format(time.DateTime)
	case !to.IsZero():
		span = "records before " + to.Local().Format(time.DateTime)
	}
	if filter.Version == 0 && filter.Substring == "" {
		return span + " with the filter in force"
	}
	return fmt.Sprintf("%s with filter v%d %q", span, filter.Version, filter.Substring)
}

// PrintProgress writes where a backfill is.
func PrintProgress(w io.Writer, p workflows.BackfillProgress) {
	fmt.Fprintf(w, "  phase\t%s\n", p.Phase)
	fmt.Fprintf(w, "  covers\t%s\n", Describe(p.From, p.To, p.Filter))
	if p.By != "" {
		fmt.Fprintf(w, "  requested\tby %s, request %s, started %s\n", p.By, p.RequestID, p.StartedAt.Local().Format(time.DateTime))
	}
	if p.Ranges > 0 {
		fmt.Fprintf(w, "  done\t%d of %d records, %d of %d ranges over %d partitions, %d running\n", p.Done, p.Offsets, p.RangesDone, p.Ranges, p.Partitions, p.Running)
		printCounts(w, p.Counts)
	}
}

// PrintSummary writes a finished backfill.
func PrintSummary(w io.Writer, r workflows.BackfillResult, url string) {
	d := r.FinishedAt.Sub(r.StartedAt)
	rate := 0.0
	if d > 0 {
		rate = float64(r.Counts.Read) / d.Seconds()
	}
	fmt.Fprintf(w, "backfill: done: %d products written to %s in %s (%d records read, %.0f records/s)\n", r.Counts.Forwarded, r.Target, d.Round(time.Millisecond), r.Counts.Read, rate)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  covered\t%s of %s\n", Describe(r.From, r.To, r.Filter), r.Source)
	printCounts(tw, r.Counts)
	fmt.Fprintf(tw, "  ranges\t%d over %d partitions (%d found already committed on retry, %d run(s))\n", r.Ranges, len(r.Partitions), r.Recovered, r.Runs)
	fmt.Fprintf(tw, "  Web UI\t%s\n", url)
	tw.Flush()
}

func printCounts(w io.Writer, c workflows.BackfillCounts) {
	fmt.Fprintf(w, "  written\t%d (the newest record of a matching product the filtered topic lacked)\n", c.Forwarded)
	var skipped []string
	for _, s := range []struct {
		n    int64
		what string
	}{
		{c.Present, "already there"}, {c.Superseded, "superseded by a newer record"}, {c.Dropped, "not matching"},
		{c.Deleted, "deleted"}, {c.Unreadable, "not a product (dead-lettered)"},
	} {
		if s.n > 0 {
			skipped = append(skipped, fmt.Sprintf("%d %s", s.n, s.what))
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "  skipped\t%s\n", strings.Join(skipped, ", "))
	}
}

// ErrNone says that no backfill ever ran.
var ErrNone = errors.New("no backfill has run yet: start one with `shopstream filter backfill`")
