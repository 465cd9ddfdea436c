package dlqreplay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/runwatch"
	"github.com/shopstream/shopstream/workflows"
)

// Start starts the ReplayDeadLetters workflow on taskQueue. One replay runs
// at a time: while one runs, Start refuses and says which runs.
func Start(ctx context.Context, tc client.Client, taskQueue string, in workflows.ReplayInput) (client.WorkflowRun, error) {
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.ReplayWorkflowID, TaskQueue: taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// Without it the SDK hands back the running replay as if it were ours.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.ReplayDeadLetters, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		what := "another replay is running"
		if p, err := Progress(ctx, tc); err == nil {
			what = fmt.Sprintf("a replay is running (request %s by %s, started %s)", p.RequestID, p.By, p.StartedAt.Local().Format(time.DateTime))
		}
		return nil, fmt.Errorf("%s: follow it with `shopstream dlq replay status`, or stop it with `shopstream dlq replay cancel`", what)
	}
	if err != nil {
		return nil, fmt.Errorf("start the ReplayDeadLetters workflow: %w", err)
	}
	return run, nil
}

// Progress queries the running replay.
func Progress(ctx context.Context, tc client.Client) (workflows.ReplayProgress, error) {
	return runwatch.QueryAs[workflows.ReplayProgress](ctx, tc, workflows.ReplayWorkflowID, workflows.QueryReplayProgress)
}

// Watch says how runwatch follows a replay: letters sent back of those
// planned.
func Watch(tc client.Client, out io.Writer, tty bool) runwatch.Options {
	return runwatch.Options{Client: tc, Query: workflows.QueryReplayProgress, Out: out, TTY: tty,
		Decode: runwatch.Decoding(func(p workflows.ReplayProgress) runwatch.Progress {
			return runwatch.Progress{Done: p.Replayed, Total: int64(p.Letters), Unit: "letters",
				Detail: fmt.Sprintf("%s, %d of %d ranges done", p.Phase, p.RangesDone, p.Ranges)}
		})}
}

// Job is how `shopstream dlq replay` and its status and cancel subcommands
// follow, show and stop the replay.
func Job() runwatch.Job[workflows.ReplayProgress, workflows.ReplayResult] {
	return runwatch.Job[workflows.ReplayProgress, workflows.ReplayResult]{
		Name: "dlq replay", Command: "shopstream dlq replay",
		None: "no replay has run yet: `shopstream dlq replay --dry-run` shows what one would send back",
		ID:   workflows.ReplayWorkflowID, Query: workflows.QueryReplayProgress,
		Watch: Watch, Progress: PrintProgress, Summary: PrintSummary,
	}
}

// DryRun plans a replay of what s picks (at most limit) and writes what it
// would do, as a table or as JSON.
func DryRun(ctx context.Context, k *clients.Kafka, t records.Topics, s Selection, limit int, w io.Writer, asJSON bool) error {
	rp, err := New(Options{Kafka: k, DLQ: t.DLQ, Ledger: t.DLQReplayed, Changelogs: Changelogs(t)})
	if err != nil {
		return err
	}
	plan, err := rp.Plan(ctx, s, limit, workflows.DefaultReplayRangeLetters)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"letters": plan.Candidates, "verdicts": plan.Counts(), "max_replays": rp.MaxReplays()})
	}
	PrintPlan(w, plan, rp.MaxReplays())
	return nil
}

// PrintPlan writes what a replay would do with every letter the selection
// picks, then the totals.
func PrintPlan(w io.Writer, p Plan, maxReplays int) {
	if len(p.Candidates) == 0 {
		fmt.Fprintln(w, "dlq replay: no dead letter matches the selection")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tBY\tREASON\tBACK TO\tKEY\tREPLAYS\tVERDICT")
	for _, c := range p.Candidates {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Time.Local().Format("2006-01-02 15:04:05.000"), c.Component, c.Reason,
			c.SourceTopic+"/"+strconv.Itoa(int(c.SourcePartition))+"@"+strconv.FormatInt(c.SourceOffset, 10), c.Key, c.Replays, c.Verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "dlq replay: would send %d of %d dead letter(s) back (%s; replay limit %d)\n",
		p.Counts()[Replay], len(p.Candidates), Tally(p.Counts()), maxReplays)
}

// Tally writes verdict counts, most frequent first.
func Tally(counts map[string]int) string {
	verdicts := make([]string, 0, len(counts))
	for v := range counts {
		verdicts = append(verdicts, v)
	}
	slices.SortFunc(verdicts, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, v := range verdicts {
		parts = append(parts, fmt.Sprintf("%d %s", counts[v], v))
	}
	if len(parts) == 0 {
		return "none picked"
	}
	return strings.Join(parts, ", ")
}

// PrintSummary writes a finished replay.
func PrintSummary(w io.Writer, r workflows.ReplayResult, url string) {
	fmt.Fprintf(w, "dlq replay: done: %d dead letter(s) sent back in %s\n", r.Replayed, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	topics := make([]string, 0, len(r.ByTopic))
	for t := range r.ByTopic {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	for _, t := range topics {
		fmt.Fprintf(tw, "  to %s\t%d\n", t, r.ByTopic[t])
	}
	fmt.Fprintf(tw, "  picked\t%s (replay limit %d)\n", Tally(r.Verdicts), r.MaxReplays)
	fmt.Fprintf(tw, "  ranges\t%d (%d found already committed on retry)\n", r.Ranges, r.Recovered)
	fmt.Fprintf(tw, "  Web UI\t%s\n", url)
	tw.Flush()
}

// PrintProgress writes where a running replay is.
func PrintProgress(w io.Writer, p workflows.ReplayProgress) {
	fmt.Fprintf(w, "  phase\t%s, request %s by %s, started %s\n", p.Phase, p.RequestID, p.By, p.StartedAt.Local().Format(time.DateTime))
	fmt.Fprintf(w, "  sent back\t%d of %d letters, %d of %d ranges done\n", p.Replayed, p.Letters, p.RangesDone, p.Ranges)
	if len(p.Verdicts) > 0 {
		fmt.Fprintf(w, "  picked\t%s\n", Tally(p.Verdicts))
	}
}
