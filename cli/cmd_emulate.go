package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/urfave/cli/v2"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/shopgen"
	"github.com/shopstream/shopstream/workflows"
)

func emulateCommand() *cli.Command {
	return &cli.Command{
		Name:  "emulate",
		Usage: "publish exactly N products from emulated shops (the EmulateShop Temporal workflow)",
		Description: "Splits N into batches; each batch is an activity that produces its products in one Kafka transaction,\n" +
			"so a consumer reading committed records sees every product once, even when a worker or the broker\n" +
			"dies mid-run. Products are a function of the seed and their index: a retried batch repeats itself.\n" +
			"Shows a progress bar (plain lines when not on a terminal) and ends with a summary.\n\n" +
			"Examples:\n" +
			"  shopstream emulate --count 100000\n" +
			"  shopstream emulate --count 1M --shops 50 --seed 42\n" +
			"  shopstream emulate --count 10k --rate 500 --detach\n" +
			"  shopstream emulate --count 1000 --every 1m      # a Temporal Schedule\n" +
			"  shopstream emulate status shopstream-emulate-20260101-120000-ab12\n" +
			"  shopstream emulate cancel shopstream-emulate-20260101-120000-ab12",
		Flags: withFlags(
			&cli.StringFlag{Name: "count", Aliases: []string{"n"}, Usage: "how many products to publish: 100000, 100_000, 100k, 1M or 1e6 (required)"},
			&cli.Int64Flag{Name: "batch-size", Usage: "products per batch (one activity, one Kafka transaction); 0 picks count/100 within [5000, 50000]"},
			&cli.IntFlag{Name: "shops", Value: workflows.DefaultEmulateShops, Usage: "how many malls the products are spread over"},
			&cli.Uint64Flag{Name: "seed", Usage: "makes the products reproducible across runs; 0 derives it from the workflow id"},
			&cli.Float64Flag{Name: "rate", Usage: "at most this many products a second over the whole run; 0 is as fast as Kafka takes them"},
			&cli.IntFlag{Name: "concurrency", Value: workflows.DefaultEmulateConcurrency, Usage: "batches running at once"},
			&cli.StringFlag{Name: "image-base-url", EnvVars: []string{"IMAGE_BASE_URL"}, Value: shopgen.DefaultImageBaseURL, Usage: "products' image URLs start here (the image collector serves /images/{name}.png)"},
			&cli.StringFlag{Name: "id", Usage: "workflow (or schedule) id; default " + workflows.EmulateWorkflowIDPrefix + "<time>-<random>"},
			&cli.BoolFlag{Name: "detach", Usage: "print the workflow id and return without waiting"},
			&cli.DurationFlag{Name: "every", Usage: "create a Temporal Schedule that runs this emulation at this interval (at least 1s) instead of one run"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Hidden: true, Usage: "how soon a batch whose worker died is retried elsewhere, and a cancel reaches a running batch (default 10s)"},
		),
		Action: runEmulate,
		Subcommands: []*cli.Command{
			{
				Name: "status", Usage: "show an emulation's progress, or its summary once done", ArgsUsage: "WORKFLOW_ID",
				Flags:  withFlags(),
				Action: func(c *cli.Context) error { return emulateStatus(c) },
			},
			{
				Name: "cancel", Usage: "cancel a running emulation; batches already committed stay, the running ones abort", ArgsUsage: "WORKFLOW_ID",
				Flags:  withFlags(&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for the workflow to stop"}),
				Action: func(c *cli.Context) error { return emulateCancel(c) },
			},
			{
				Name: "schedules", Usage: "list the emulation schedules that `emulate --every` created",
				Flags:  withFlags(),
				Action: func(c *cli.Context) error { return emulateSchedules(c) },
			},
			{
				Name: "unschedule", Usage: "delete an emulation schedule (runs already started go on)", ArgsUsage: "SCHEDULE_ID",
				Flags:  withFlags(),
				Action: func(c *cli.Context) error { return emulateUnschedule(c) },
			},
		},
	}
}

// emulateRequest is the validated command line.
type emulateRequest struct {
	in     workflows.EmulateShopInput
	id     string
	detach bool
	every  time.Duration
}

// readEmulateFlags checks every flag before anything connects or starts.
func readEmulateFlags(c *cli.Context) (emulateRequest, error) {
	var r emulateRequest
	if c.NArg() > 0 {
		return r, usageErr("emulate: unexpected argument %q (subcommands: status, cancel, schedules, unschedule)", c.Args().First())
	}
	if !c.IsSet("count") {
		return r, usageErr("emulate: --count is required, e.g. --count 100000")
	}
	count, err := parseCount(c.String("count"))
	if err != nil {
		return r, usageErr("emulate: --count %q: %v", c.String("count"), err)
	}
	r.in = workflows.EmulateShopInput{
		Count:            count,
		BatchSize:        c.Int64("batch-size"),
		Shops:            c.Int("shops"),
		Seed:             c.Uint64("seed"),
		Rate:             c.Float64("rate"),
		Concurrency:      c.Int("concurrency"),
		ImageBaseURL:     c.String("image-base-url"),
		HeartbeatTimeout: c.Duration("heartbeat-timeout"),
	}
	switch {
	case r.in.BatchSize < 0:
		return r, usageErr("emulate: --batch-size %d: want a positive number, or 0 for the default", r.in.BatchSize)
	case r.in.Shops < 1 || r.in.Shops > workflows.MaxEmulateShops:
		return r, usageErr("emulate: --shops %d: want 1 to %d", r.in.Shops, workflows.MaxEmulateShops)
	case r.in.Rate < 0 || math.IsNaN(r.in.Rate) || math.IsInf(r.in.Rate, 0):
		return r, usageErr("emulate: --rate %g: want 0 (no limit) or a positive number of products a second", r.in.Rate)
	case r.in.Concurrency < 1 || r.in.Concurrency > workflows.MaxEmulateConcurrency:
		return r, usageErr("emulate: --concurrency %d: want 1 to %d", r.in.Concurrency, workflows.MaxEmulateConcurrency)
	case r.in.HeartbeatTimeout < 0:
		return r, usageErr("emulate: --heartbeat-timeout %s: want a positive duration", r.in.HeartbeatTimeout)
	}
	if err := shopgen.CheckImageBaseURL(r.in.ImageBaseURL); err != nil {
		return r, usageErr("emulate: --image-base-url (IMAGE_BASE_URL): %v", err)
	}
	r.every, r.detach, r.id = c.Duration("every"), c.Bool("detach"), c.String("id")
	if c.IsSet("every") && r.every < time.Second {
		return r, usageErr("emulate: --every %s: want an interval of at least 1s, e.g. --every 1m", r.every)
	}
	if r.id == "" {
		kind := ""
		if r.every > 0 {
			kind = "schedule-"
		}
		r.id = workflows.EmulateWorkflowIDPrefix + kind + time.Now().UTC().Format("20060102-150405") + "-" + randomHex(2)
	}
	return r, nil
}

// parseCount reads 100000, 100_000, 100k, 1M, 2.5M or 1e6.
func parseCount(s string) (int64, error) {
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

func runEmulate(c *cli.Context) error {
	r, err := readEmulateFlags(c)
	if err != nil {
		return err
	}
	cfg, err := readConfig(c)
	if err != nil {
		return err
	}
	r.in.Topic = cfg.Topics.Products
	if err := r.in.Validate(); err != nil {
		return usageErr("emulate: %v", err)
	}
	e, err := connect(c, true, true)
	if err != nil {
		return err
	}
	defer e.close()
	// A missing topic would have every batch retry until someone creates
	// it; say so now, before anything starts.
	details, err := e.admin.ListTopics(c.Context, r.in.Topic)
	if err != nil {
		return fmt.Errorf("emulate: describe topic %s: %w", r.in.Topic, err)
	}
	if d, ok := details[r.in.Topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("emulate: topic %s does not exist: run `shopstream bootstrap` first (`shopstream dev` does it on start)", r.in.Topic)
	}
	w := c.App.Writer
	if r.every > 0 {
		return createEmulateSchedule(c.Context, e.temporal, e.cfg, r, w)
	}
	run, err := e.temporal.ExecuteWorkflow(c.Context, client.StartWorkflowOptions{
		ID:                       r.id,
		TaskQueue:                e.cfg.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, workflows.EmulateShop, r.in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return usageErr("emulate: workflow id %s is taken: choose another --id", r.id)
		}
		return fmt.Errorf("emulate: start the workflow: %w", err)
	}
	fmt.Fprintf(w, "emulate: started workflow %s: %d products into %s\n", run.GetID(), r.in.Count, r.in.Topic)
	fmt.Fprintf(w, "emulate: Web UI %s\n", e.cfg.WorkflowURL(run.GetID(), ""))
	warnNoEmulateWorker(c.Context, e.temporal, e.cfg, w)
	if r.detach {
		fmt.Fprintf(w, "emulate: detached; follow with `shopstream emulate status %s`, stop with `shopstream emulate cancel %s`\n", run.GetID(), run.GetID())
		return nil
	}
	return watchEmulation(c.Context, e.temporal, e.cfg, run, w, isTerminal(w))
}

func createEmulateSchedule(ctx context.Context, tc client.Client, cfg *config.Config, r emulateRequest, w io.Writer) error {
	_, err := tc.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   r.id,
		Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: r.every}}},
		Action: &client.ScheduleWorkflowAction{
			ID:        r.id + "-run",
			Workflow:  workflows.EmulateShop,
			Args:      []any{r.in},
			TaskQueue: cfg.TaskQueue,
		},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Memo:    map[string]any{"count": r.in.Count, "every": r.every.String(), "seed": r.in.Seed, "shops": r.in.Shops},
	})
	if err != nil {
		if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return usageErr("emulate: schedule id %s is taken: choose another --id", r.id)
		}
		return fmt.Errorf("emulate: create schedule %s: %w", r.id, err)
	}
	fmt.Fprintf(w, "emulate: schedule %s runs %d products every %s (a run still going when the next is due skips it)\n", r.id, r.in.Count, r.every)
	fmt.Fprintf(w, "emulate: Web UI %s/namespaces/%s/schedules/%s\n", cfg.TemporalUIURL, cfg.TemporalNamespace, r.id)
	fmt.Fprintf(w, "emulate: list with `shopstream emulate schedules`, delete with `shopstream emulate unschedule %s`\n", r.id)
	return nil
}

func oneID(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 || c.Args().First() == "" {
		return "", usageErr("emulate %s: want exactly one %s, e.g. `shopstream emulate %s %sexample`", c.Command.Name, what, c.Command.Name, workflows.EmulateWorkflowIDPrefix)
	}
	return c.Args().First(), nil
}

func emulateStatus(c *cli.Context) error {
	id, err := oneID(c, "workflow id")
	if err != nil {
		return err
	}
	e, err := connect(c, false, true)
	if err != nil {
		return err
	}
	defer e.close()
	w := c.App.Writer
	desc, err := e.temporal.DescribeWorkflowExecution(c.Context, id, "")
	if err != nil {
		return notFoundAsUsage(err, id)
	}
	info := desc.GetWorkflowExecutionInfo()
	status := info.GetStatus()
	fmt.Fprintf(w, "emulate: workflow %s is %s\n", id, strings.ToLower(strings.TrimPrefix(status.String(), "WORKFLOW_EXECUTION_STATUS_")))
	if status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		var res workflows.EmulateShopResult
		if err := e.temporal.GetWorkflow(c.Context, id, "").Get(c.Context, &res); err != nil {
			return fmt.Errorf("emulate status: read the result of %s: %w", id, err)
		}
		printEmulateSummary(w, e.cfg, id, res)
		return nil
	}
	if p, err := queryProgress(c.Context, e.temporal, id); err == nil {
		fmt.Fprintln(w, progressLine(p, 0, 0))
	} else {
		fmt.Fprintf(w, "emulate: no progress (%v)\n", err)
	}
	fmt.Fprintf(w, "emulate: Web UI %s\n", e.cfg.WorkflowURL(id, ""))
	return nil
}

func emulateCancel(c *cli.Context) error {
	id, err := oneID(c, "workflow id")
	if err != nil {
		return err
	}
	e, err := connect(c, false, true)
	if err != nil {
		return err
	}
	defer e.close()
	w := c.App.Writer
	if err := e.temporal.CancelWorkflow(c.Context, id, ""); err != nil {
		return notFoundAsUsage(err, id)
	}
	fmt.Fprintf(w, "emulate: cancel requested for %s; waiting for its running batches to abort\n", id)
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("wait"))
	defer cancel()
	err = e.temporal.GetWorkflow(ctx, id, "").Get(ctx, nil)
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		fmt.Fprintf(w, "emulate: %s had already finished\n", id)
	case errors.As(err, &canceled):
		fmt.Fprintf(w, "emulate: %s canceled\n", id)
	case ctx.Err() != nil:
		return fmt.Errorf("emulate cancel: %s did not stop within %s: it stops once its workers report the batches aborted (see %s)", id, c.Duration("wait"), e.cfg.WorkflowURL(id, ""))
	default:
		fmt.Fprintf(w, "emulate: %s ended: %v\n", id, err)
	}
	if p, err := queryProgress(c.Context, e.temporal, id); err == nil {
		fmt.Fprintf(w, "emulate: %d of %d products committed (whole batches only; none of an aborted batch)\n", p.Committed, p.Count)
	}
	return nil
}

func emulateSchedules(c *cli.Context) error {
	e, err := connect(c, false, true)
	if err != nil {
		return err
	}
	defer e.close()
	it, err := e.temporal.ScheduleClient().List(c.Context, client.ScheduleListOptions{})
	if err != nil {
		return fmt.Errorf("emulate schedules: list schedules: %w", err)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
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
		fmt.Fprintln(c.App.Writer, "emulate: no emulation schedules; create one with `shopstream emulate --count N --every 1m`")
	}
	return nil
}

func emulateUnschedule(c *cli.Context) error {
	id, err := oneID(c, "schedule id")
	if err != nil {
		return err
	}
	e, err := connect(c, false, true)
	if err != nil {
		return err
	}
	defer e.close()
	if err := e.temporal.ScheduleClient().GetHandle(c.Context, id).Delete(c.Context); err != nil {
		return notFoundAsUsage(err, id)
	}
	fmt.Fprintf(c.App.Writer, "emulate: schedule %s deleted\n", id)
	return nil
}

func notFoundAsUsage(err error, id string) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return usageErr("emulate: no workflow or schedule %s (ids start with %s; `shopstream emulate schedules` lists schedules)", id, workflows.EmulateWorkflowIDPrefix)
	}
	return fmt.Errorf("emulate: %s: %w", id, err)
}

func warnNoEmulateWorker(ctx context.Context, tc client.Client, cfg *config.Config, w io.Writer) {
	resp, err := tc.DescribeTaskQueue(ctx, cfg.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err == nil && len(resp.GetPollers()) == 0 {
		fmt.Fprintf(w, "emulate: no worker polls task queue %q yet: the workflow waits for `shopstream dev` or `shopstream worker`\n", cfg.TaskQueue)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
