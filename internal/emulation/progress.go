package emulation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/exitcode"
	"github.com/shopstream/shopstream/internal/runwatch"
	"github.com/shopstream/shopstream/workflows"
)

// Progress refresh: a bar redraws often, plain lines (CI logs) rarely.
const (
	barInterval  = 250 * time.Millisecond
	lineInterval = 5 * time.Second
)

// QueryProgress asks the emulation workflow id how far it is.
func QueryProgress(ctx context.Context, tc client.Client, id string) (workflows.EmulateProgress, error) {
	var p workflows.EmulateProgress
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := tc.QueryWorkflow(ctx, id, "", workflows.QueryEmulateProgress)
	if err != nil {
		return p, fmt.Errorf("query progress of %s: %w", id, err)
	}
	return p, v.Get(&p)
}

// watch shows the run's progress until it ends, then its summary.
func watch(ctx context.Context, tc client.Client, cfg *config.Config, run client.WorkflowRun, w io.Writer, tty bool) error {
	id := run.GetID()
	var res workflows.EmulateShopResult
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, &res) }()
	interval := lineInterval
	if tty {
		interval = barInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var meter runwatch.RateMeter
	drawn := false
	for {
		select {
		case err := <-done:
			if drawn {
				fmt.Fprint(w, "\r\x1b[2K")
			}
			if ctx.Err() != nil {
				fmt.Fprintf(w, "emulate: stopped watching; the workflow goes on: `shopstream emulate status %s`, `shopstream emulate cancel %s`\n", id, id)
				return exitcode.New(130, "")
			}
			var canceled *temporal.CanceledError
			if errors.As(err, &canceled) {
				p, _ := QueryProgress(context.WithoutCancel(ctx), tc, id)
				return fmt.Errorf("emulate: workflow %s was canceled after %d of %d products were committed", id, p.Committed, p.Count)
			}
			if err != nil {
				return fmt.Errorf("emulate: workflow %s failed: %w (see %s)", id, err, cfg.WorkflowURL(id, ""))
			}
			printSummary(w, cfg, id, res)
			return nil
		case now := <-tick.C:
			p, err := QueryProgress(ctx, tc, id)
			if err != nil {
				continue // no worker has picked the workflow up yet
			}
			rate := meter.Add(now, p.Committed)
			var eta time.Duration
			if rate > 0 {
				eta = time.Duration(float64(p.Count-p.Committed) / rate * float64(time.Second))
			}
			if tty {
				fmt.Fprintf(w, "\r\x1b[2K%s", progressBar(p, rate, eta))
				drawn = true
			} else {
				fmt.Fprintln(w, progressLine(p, rate, eta))
			}
		}
	}
}

func progressLine(p workflows.EmulateProgress, rate float64, eta time.Duration) string {
	s := fmt.Sprintf("emulate: %d/%d products committed (%.1f%%), %d/%d batches, %d running",
		p.Committed, p.Count, percent(p), p.BatchesDone, p.Batches, p.Running)
	if rate > 0 {
		s += fmt.Sprintf(", %.0f/s, ETA %s", rate, eta.Round(time.Second))
	}
	return s
}

func progressBar(p workflows.EmulateProgress, rate float64, eta time.Duration) string {
	const width = 30
	fill := int(percent(p) / 100 * width)
	bar := strings.Repeat("█", fill) + strings.Repeat("░", width-fill)
	s := fmt.Sprintf("%s %5.1f%%  %d/%d", bar, percent(p), p.Committed, p.Count)
	if rate > 0 {
		s += fmt.Sprintf("  %.0f/s  ETA %s", rate, eta.Round(time.Second))
	}
	return s
}

func percent(p workflows.EmulateProgress) float64 {
	if p.Count == 0 {
		return 0
	}
	return 100 * float64(p.Committed) / float64(p.Count)
}

func printSummary(w io.Writer, cfg *config.Config, id string, res workflows.EmulateShopResult) {
	d := res.FinishedAt.Sub(res.StartedAt)
	rate := 0.0
	if d > 0 {
		rate = float64(res.Committed) / d.Seconds()
	}
	fmt.Fprintf(w, "emulate: done: %d products committed in %s, %.0f products/s\n", res.Committed, d.Round(time.Millisecond), rate)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  workflow\t%s\t(%d batches in %d run(s); %d found already committed on retry)\n", id, res.Batches, res.Runs, res.Recovered)
	fmt.Fprintf(tw, "  topic\t%s\t(seed %d)\n", res.Topic, res.Seed)
	parts := make([]int32, 0, len(res.Partitions))
	for p := range res.Partitions {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		fmt.Fprintf(tw, "  partition %d\tend offset %d\t\n", p, res.Partitions[p])
	}
	fmt.Fprintf(tw, "  Web UI\t%s\t\n", cfg.WorkflowURL(id, ""))
	tw.Flush()
}
