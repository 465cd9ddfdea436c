// Package emulation is the client's side of the EmulateShop workflow:
// starting a run (or a Temporal Schedule of runs), showing its progress and
// summary, and the status, cancel and schedule commands around it.
package emulation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/bootstrap"
	"github.com/shopstream/shopstream/internal/exitcode"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/workflows"
)

// Request is one validated `shopstream emulate`.
type Request struct {
	Input workflows.EmulateShopInput
	// ID is the workflow's (or the schedule's) id.
	ID string
	// Detach returns once the workflow started.
	Detach bool
	// Every, when set, creates a Temporal Schedule of runs instead of one.
	Every time.Duration
}

// Check says which flag of the request is out of range and what it wants
// (exit code 2), before anything connects or starts.
func (r Request) Check() error {
	in := r.Input
	switch {
	case in.BatchSize < 0:
		return exitcode.Usagef("emulate: --batch-size %d: want a positive number, or 0 for the default", in.BatchSize)
	case in.Shops < 1 || in.Shops > workflows.MaxEmulateShops:
		return exitcode.Usagef("emulate: --shops %d: want 1 to %d", in.Shops, workflows.MaxEmulateShops)
	case in.Rate < 0 || math.IsNaN(in.Rate) || math.IsInf(in.Rate, 0):
		return exitcode.Usagef("emulate: --rate %g: want 0 (no limit) or a positive number of products a second", in.Rate)
	case in.Concurrency < 1 || in.Concurrency > workflows.MaxEmulateConcurrency:
		return exitcode.Usagef("emulate: --concurrency %d: want 1 to %d", in.Concurrency, workflows.MaxEmulateConcurrency)
	case in.HeartbeatTimeout < 0:
		return exitcode.Usagef("emulate: --heartbeat-timeout %s: want a positive duration", in.HeartbeatTimeout)
	}
	if err := shopgen.CheckImageBaseURL(in.ImageBaseURL); err != nil {
		return exitcode.Usagef("emulate: --image-base-url (IMAGE_BASE_URL): %v", err)
	}
	return nil
}

// NewID is a fresh workflow id (or schedule id), unique to the second and a
// random suffix.
func NewID(schedule bool, now time.Time) string {
	kind := ""
	if schedule {
		kind = "schedule-"
	}
	return workflows.EmulateWorkflowIDPrefix + kind + now.UTC().Format("20060102-150405") + "-" + randid.Hex(2)
}

// ParseCount reads 100000, 100_000, 100k, 1M, 2.5M or 1e6.
func ParseCount(s string) (int64, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k") || strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, s[:len(s)-1]
	}
	var v float64
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		v = float64(n)
	} else if f, ferr := strconv.ParseFloat(s, 64); ferr == nil {
		v = f
	} else {
		return 0, errors.New("not a number: want e.g. 100000, 100k or 1M")
	}
	v *= mult
	if v != math.Trunc(v) || v > 1e15 {
		return 0, errors.New("want a whole number of products up to 1e15")
	}
	if v < 1 {
		return 0, errors.New("want at least 1")
	}
	return int64(v), nil
}

// Start starts the emulation (or creates its schedule) and, unless r says
// to detach, shows its progress on w until it ends (a bar when tty), then
// its summary.
func Start(ctx context.Context, e *process.Env, r Request, w io.Writer, tty bool) error {
	// A missing topic would have every batch retry until someone creates
	// it; say so now, before anything starts.
	details, err := e.Admin.ListTopics(ctx, r.Input.Topic)
	if err != nil {
		return fmt.Errorf("emulate: describe topic %s: %w", r.Input.Topic, err)
	}
	if d, ok := details[r.Input.Topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("emulate: topic %s does not exist: run `shopstream bootstrap` first (`shopstream dev` does it on start)", r.Input.Topic)
	}
	cfg := e.Config
	if r.Every > 0 {
		return createSchedule(ctx, e, r, w)
	}
	run, err := e.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       r.ID,
		TaskQueue:                cfg.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, workflows.EmulateShop, r.Input)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return exitcode.Usagef("emulate: workflow id %s is taken: choose another --id", r.ID)
		}
		return fmt.Errorf("emulate: start the workflow: %w", err)
	}
	fmt.Fprintf(w, "emulate: started workflow %s: %d products into %s\n", run.GetID(), r.Input.Count, r.Input.Topic)
	fmt.Fprintf(w, "emulate: Web UI %s\n", cfg.WorkflowURL(run.GetID(), ""))
	bootstrap.WarnIfNoWorker(ctx, e.Temporal, cfg, w, "emulate")
	if r.Detach {
		fmt.Fprintf(w, "emulate: detached; follow with `shopstream emulate status %s`, stop with `shopstream emulate cancel %s`\n", run.GetID(), run.GetID())
		return nil
	}
	return watch(ctx, e.Temporal, cfg, run, w, tty)
}

func createSchedule(ctx context.Context, e *process.Env, r Request, w io.Writer) error {
	cfg := e.Config
	_, err := e.Temporal.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   r.ID,
		Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: r.Every}}},
		Action: &client.ScheduleWorkflowAction{
			ID:        r.ID + "-run",
			Workflow:  workflows.EmulateShop,
			Args:      []any{r.Input},
			TaskQueue: cfg.TaskQueue,
		},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Memo:    map[string]any{"count": r.Input.Count, "every": r.Every.String(), "seed": r.Input.Seed, "shops": r.Input.Shops},
	})
	if err != nil {
		if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return exitcode.Usagef("emulate: schedule id %s is taken: choose another --id", r.ID)
		}
		return fmt.Errorf("emulate: create schedule %s: %w", r.ID, err)
	}
	fmt.Fprintf(w, "emulate: schedule %s runs %d products every %s (a run still going when the next is due skips it)\n", r.ID, r.Input.Count, r.Every)
	fmt.Fprintf(w, "emulate: Web UI %s/namespaces/%s/schedules/%s\n", cfg.TemporalUIURL, cfg.TemporalNamespace, r.ID)
	fmt.Fprintf(w, "emulate: list with `shopstream emulate schedules`, delete with `shopstream emulate unschedule %s`\n", r.ID)
	return nil
}

// Status shows an emulation's progress, or its summary once done.
func Status(ctx context.Context, e *process.Env, id string, w io.Writer) error {
	desc, err := e.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return notFoundAsUsage(err, id)
	}
	status := desc.GetWorkflowExecutionInfo().GetStatus()
	fmt.Fprintf(w, "emulate: workflow %s is %s\n", id, strings.ToLower(strings.TrimPrefix(status.String(), "WORKFLOW_EXECUTION_STATUS_")))
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		var res workflows.EmulateShopResult
		if err := e.Temporal.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
			return fmt.Errorf("emulate status: read the result of %s: %w", id, err)
		}
		printSummary(w, e.Config, id, res)
		return nil
	}
	if p, err := QueryProgress(ctx, e.Temporal, id); err == nil {
		fmt.Fprintln(w, progressLine(p, 0, 0))
	} else {
		fmt.Fprintf(w, "emulate: no progress (%v)\n", err)
	}
	fmt.Fprintf(w, "emulate: Web UI %s\n", e.Config.WorkflowURL(id, ""))
	return nil
}

// Cancel cancels a running emulation and waits up to wait for it to stop:
// batches already committed stay, the running ones abort.
func Cancel(ctx context.Context, e *process.Env, id string, wait time.Duration, w io.Writer) error {
	if err := e.Temporal.CancelWorkflow(ctx, id, ""); err != nil {
		return notFoundAsUsage(err, id)
	}
	fmt.Fprintf(w, "emulate: cancel requested for %s; waiting for its running batches to abort\n", id)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := e.Temporal.GetWorkflow(wctx, id, "").Get(wctx, nil)
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		fmt.Fprintf(w, "emulate: %s had already finished\n", id)
	case errors.As(err, &canceled):
		fmt.Fprintf(w, "emulate: %s canceled\n", id)
	case wctx.Err() != nil:
		return fmt.Errorf("emulate cancel: %s did not stop within %s: it stops once its workers report the batches aborted (see %s)", id, wait, e.Config.WorkflowURL(id, ""))
	default:
		fmt.Fprintf(w, "emulate: %s ended: %v\n", id, err)
	}
	if p, err := QueryProgress(ctx, e.Temporal, id); err == nil {
		fmt.Fprintf(w, "emulate: %d of %d products committed (whole batches only; none of an aborted batch)\n", p.Committed, p.Count)
	}
	return nil
}

// Schedules lists the emulation schedules that `emulate --every` created.
func Schedules(ctx context.Context, e *process.Env, w io.Writer) error {
	it, err := e.Temporal.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return fmt.Errorf("emulate schedules: list schedules: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tEVERY\tCOUNT\tSEED\tNEXT RUN\tRUNS SHOWN\tPAUSED")
	n := 0
	for it.HasNext() {
		s, err := it.Next()
		if err != nil {
			return fmt.Errorf("emulate schedules: list schedules: %w", err)
		}
		if !strings.HasPrefix(s.ID, workflows.EmulateWorkflowIDPrefix) {
			continue
		}
		n++
		var count int64
		var seed uint64
		every := "?"
		memo := s.Memo.GetFields()
		dc := converter.GetDefaultDataConverter()
		_ = dc.FromPayload(memo["count"], &count)
		_ = dc.FromPayload(memo["seed"], &seed)
		_ = dc.FromPayload(memo["every"], &every)
		next := "-"
		if len(s.NextActionTimes) > 0 {
			next = s.NextActionTimes[0].Local().Format(time.DateTime)
		}
		seedText := "per run"
		if seed != 0 {
			seedText = strconv.FormatUint(seed, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%v\n", s.ID, every, count, seedText, next, len(s.RecentActions), s.Paused)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(w, "emulate: no emulation schedules; create one with `shopstream emulate --count N --every 1m`")
	}
	return nil
}

// Unschedule deletes an emulation schedule; runs already started go on.
func Unschedule(ctx context.Context, e *process.Env, id string, w io.Writer) error {
	if err := e.Temporal.ScheduleClient().GetHandle(ctx, id).Delete(ctx); err != nil {
		return notFoundAsUsage(err, id)
	}
	fmt.Fprintf(w, "emulate: schedule %s deleted\n", id)
	return nil
}

func notFoundAsUsage(err error, id string) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return exitcode.Usagef("emulate: no workflow or schedule %s (ids start with %s; `shopstream emulate schedules` lists schedules)", id, workflows.EmulateWorkflowIDPrefix)
	}
	return fmt.Errorf("emulate: %s: %w", id, err)
}
