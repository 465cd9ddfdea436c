package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// BackfillWorkflowID is fixed: one backfill runs at a time. A second
// request while one runs attaches to it (the CLI starts with the conflict
// policy "use existing") instead of doubling the work; the running one's
// RequestID tells the second that it attached.
const BackfillWorkflowID = "shopstream-backfill"

// QueryBackfillProgress answers with a BackfillProgress.
const QueryBackfillProgress = "backfill-progress"

// Activity names implemented by activities.Backfill.
const (
	ActivityBackfillPrepare = "BackfillPrepare"
	ActivityBackfillRange   = "BackfillRange"
	ActivityBackfillCleanup = "BackfillCleanup"
)

// ErrTypeFilterChanged marks a backfill whose filter was replaced while it
// ran: what it would still write belongs to a filter no longer in force.
const ErrTypeFilterChanged = "FilterChanged"

// Defaults and bounds of BackfillInput.
const (
	// DefaultBackfillRangeRecords is the most offsets one range activity
	// (one Kafka transaction) re-reads. A range reads on to the partition's
	// end to find newer records, so fewer, larger ranges read less.
	DefaultBackfillRangeRecords = 250_000
	DefaultBackfillConcurrency  = 4
	MaxBackfillConcurrency      = 64
	// MaxBackfillRangesPerRun bounds one run's history; the workflow
	// continues as new after that many ranges.
	MaxBackfillRangesPerRun = 500
)

// Phases of a backfill or a replay, as their progress queries say them.
const (
	PhasePreparing  = "preparing"
	PhaseRunning    = "running"
	PhaseCleaningUp = "cleaning up"
	PhaseDone       = "done"
	PhaseStopped    = "stopped"
)

// BackfillInput is what `shopstream filter backfill` asks for.
type BackfillInput struct {
	// From and To bound the products' record timestamps, [From, To): a
	// zero From is the topic's start (its whole retention), a zero To the
	// moment the backfill's plan is made.
	From, To time.Time
	// RangeRecords caps the offsets of one range (0: the default).
	RangeRecords int64
	// Concurrency is how many partitions are backfilled at once (0: the
	// default).
	Concurrency int
	// RequestID identifies the request that started the run; By says who.
	RequestID string
	By        string
	// HeartbeatTimeout is how soon a range whose worker died is retried
	// elsewhere (0: 10s).
	HeartbeatTimeout time.Duration

	// Resume is set by the workflow itself when it continues as new.
	Resume *BackfillResume
}

// BackfillResume carries a run's progress into the next run of the chain.
type BackfillResume struct {
	Plan      BackfillPlan
	Next      []int // each partition's next range
	Counts    BackfillCounts
	Recovered int
	StartedAt time.Time
	Runs      int
}

// BackfillPrepareInput asks for the plan.
type BackfillPrepareInput struct {
	From, To time.Time
}

// BackfillPlan is what a backfill re-reads and with which filter.
type BackfillPlan struct {
	Filter     FilterState
	Source     string
	Target     string
	Partitions []BackfillPartition
	// Waited is how long the plan waited for the streamer.
	Waited time.Duration
}

// BackfillPartition is one source partition's offsets to re-read: [Start, End).
type BackfillPartition struct {
	Partition  int32
	Start, End int64
}

// BackfillRangeInput asks one activity to backfill source offsets
// [Start, End) of one partition with one filter version.
type BackfillRangeInput struct {
	// WorkflowID names the run in the range's marker and transactional
	// id: the workflow id and the run id.
	WorkflowID string
	// BackfillID goes into the header of every record written.
	BackfillID string
	Partition  int32
	Range      int
	Start, End int64
	Filter     FilterState
}

// BackfillCounts say what became of the records read.
type BackfillCounts struct {
	// Read is how many records were read.
	Read int64 `json:"read"`
	// Forwarded: written to the filtered topic.
	Forwarded int64 `json:"forwarded"`
	// Superseded: a newer record of the same product came later.
	Superseded int64 `json:"superseded"`
	// Present: the filtered topic already held this very record.
	Present int64 `json:"present"`
	// Dropped: the name does not contain the substring.
	Dropped int64 `json:"dropped"`
	// Deleted: the product's newest record is a tombstone, which the
	// streamer passes whatever the filter.
	Deleted int64 `json:"deleted"`
	// Unreadable: not a product (the streamer dead-lettered it).
	Unreadable int64 `json:"unreadable"`
}

// Add adds o to c.
func (c *BackfillCounts) Add(o BackfillCounts) {
	c.Read += o.Read
	c.Forwarded += o.Forwarded
	c.Superseded += o.Superseded
	c.Present += o.Present
	c.Dropped += o.Dropped
	c.Deleted += o.Deleted
	c.Unreadable += o.Unreadable
}

// BackfillRangeResult says what one range committed.
type BackfillRangeResult struct {
	Partition int32
	Range     int
	Counts    BackfillCounts
	// AlreadyCommitted is set when an earlier attempt had committed the
	// range but did not live to report it; nothing was written again.
	AlreadyCommitted bool
}

// BackfillCleanupInput names the ranges whose commit markers can go.
type BackfillCleanupInput struct {
	WorkflowID string
	Ranges     []BackfillRangeID
}

// BackfillRangeID names one range.
type BackfillRangeID struct {
	Partition int32
	Range     int
}

// BackfillCleanupResult says how many markers were removed.
type BackfillCleanupResult struct {
	Deleted int
}

// BackfillProgress is what the progress query answers.
type BackfillProgress struct {
	Phase     string
	RequestID string
	By        string
	From, To  time.Time
	// Filter, Source and Target are known once the plan is made.
	Filter     FilterState
	Source     string
	Target     string
	Partitions int
	// Offsets is how many offsets the plan re-reads; Done how many of them
	// the finished ranges covered.
	Offsets    int64
	Done       int64
	Ranges     int
	RangesDone int
	Running    int
	Counts     BackfillCounts
	Recovered  int
	StartedAt  time.Time
	Runs       int
}

// BackfillResult is the finished backfill.
type BackfillResult struct {
	RequestID  string
	Filter     FilterState
	Source     string
	Target     string
	From, To   time.Time
	Partitions []BackfillPartition
	Ranges     int
	Counts     BackfillCounts
	Recovered  int
	StartedAt  time.Time
	FinishedAt time.Time
	Runs       int
}

// Validate checks the input before anything runs.
func (in BackfillInput) Validate() error {
	switch {
	case !in.From.IsZero() && !in.To.IsZero() && !in.From.Before(in.To):
		return fmt.Errorf("from %s is not before to %s", in.From.Format(time.RFC3339), in.To.Format(time.RFC3339))
	case in.RangeRecords < 0:
		return fmt.Errorf("range size %d: want a positive number of records, or 0 for the default", in.RangeRecords)
	case in.Concurrency < 0 || in.Concurrency > MaxBackfillConcurrency:
		return fmt.Errorf("concurrency %d: want 1 to %d", in.Concurrency, MaxBackfillConcurrency)
	case in.HeartbeatTimeout < 0:
		return fmt.Errorf("heartbeat timeout %s: want a positive duration", in.HeartbeatTimeout)
	}
	return nil
}

// ranges splits the plan into each partition's ranges.
func (p BackfillPlan) ranges(workflowID, backfillID string, size int64) [][]BackfillRangeInput {
	out := make([][]BackfillRangeInput, 0, len(p.Partitions))
	for _, part := range p.Partitions {
		var lane []BackfillRangeInput
		for start, i := part.Start, 0; start < part.End; start, i = start+size, i+1 {
			lane = append(lane, BackfillRangeInput{
				WorkflowID: workflowID, BackfillID: backfillID, Partition: part.Partition, Range: i,
				Start: start, End: min(start+size, part.End), Filter: p.Filter,
			})
		}
		out = append(out, lane)
	}
	return out
}

// Backfill re-applies the current filter to the product topic's history:
// it plans (waiting until the live streamer applies the filter and passed
// the plan's end), then backfills each partition's ranges in order, at most
// Concurrency partitions at once, each range one activity and one Kafka
// transaction with a marker, so a retried or resumed range writes nothing
// twice. Cancel it and the ranges written stay; run it again and it writes
// only what is still missing.
func Backfill(ctx workflow.Context, in BackfillInput) (BackfillResult, error) {
	if err := in.Validate(); err != nil {
		return BackfillResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	info := workflow.GetInfo(ctx)
	logger := workflow.GetLogger(ctx)
	st := BackfillResume{}
	if in.Resume != nil {
		st = *in.Resume
	}
	if st.StartedAt.IsZero() {
		st.StartedAt = workflow.Now(ctx)
	}
	st.Runs++
	size := in.RangeRecords
	if size == 0 {
		size = DefaultBackfillRangeRecords
	}
	conc := in.Concurrency
	if conc == 0 {
		conc = DefaultBackfillConcurrency
	}
	phase := PhasePreparing
	if in.Resume != nil {
		phase = PhaseRunning
	}
	l := &lanes[BackfillRangeInput, BackfillRangeResult]{activity: ActivityBackfillRange, conc: conc}
	if err := workflow.SetQueryHandler(ctx, QueryBackfillProgress, func() (BackfillProgress, error) {
		p := BackfillProgress{
			Phase: phase, RequestID: in.RequestID, By: in.By, From: in.From, To: in.To,
			Filter: st.Plan.Filter, Source: st.Plan.Source, Target: st.Plan.Target, Partitions: len(st.Plan.Partitions),
			Running: l.running, Counts: st.Counts, Recovered: st.Recovered, StartedAt: st.StartedAt, Runs: st.Runs,
		}
		for i, lane := range l.units {
			p.Ranges += len(lane)
			for j, u := range lane {
				p.Offsets += u.End - u.Start
				if j < l.next[i] {
					p.RangesDone++
					p.Done += u.End - u.Start
				}
			}
		}
		return p, nil
	}); err != nil {
		return BackfillResult{}, err
	}

	heartbeat := in.HeartbeatTimeout
	if heartbeat == 0 {
		heartbeat = 10 * time.Second
	}
	retry := &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        30 * time.Second,
		NonRetryableErrorTypes: []string{ErrTypeInvalidInput, ErrTypeFilterChanged},
	}
	if in.Resume == nil {
		// The plan waits for the streamer: as long as it takes, while it
		// heartbeats.
		pctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 24 * time.Hour, HeartbeatTimeout: heartbeat, WaitForCancellation: true, RetryPolicy: retry,
		})
		if err := workflow.ExecuteActivity(pctx, ActivityBackfillPrepare, BackfillPrepareInput{From: in.From, To: in.To}).Get(ctx, &st.Plan); err != nil {
			phase = PhaseStopped
			if ctx.Err() != nil {
				return BackfillResult{}, ctx.Err()
			}
			return BackfillResult{}, fmt.Errorf("plan the backfill: %w", err)
		}
		st.Next = make([]int, len(st.Plan.Partitions))
		logger.Info("backfill planned", "filter_version", st.Plan.Filter.Version, "partitions", len(st.Plan.Partitions), "waited", st.Plan.Waited)
	}
	l.units = st.Plan.ranges(runKey(info), in.RequestID, size)
	l.next = st.Next
	phase = PhaseRunning

	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute, HeartbeatTimeout: heartbeat, WaitForCancellation: true, RetryPolicy: retry,
	})
	finished, failed := l.run(ctx, actx, MaxBackfillRangesPerRun, func(u BackfillRangeInput) int32 { return u.Partition }, func(_ int, _ BackfillRangeInput, r BackfillRangeResult) {
		st.Counts.Add(r.Counts)
		if r.AlreadyCommitted {
			st.Recovered++
		}
	})
	st.Next = l.next
	phase = PhaseCleaningUp
	cleanupMarkers(ctx, ActivityBackfillCleanup, BackfillCleanupInput{WorkflowID: runKey(info), Ranges: finished}, len(finished))

	switch {
	case ctx.Err() != nil:
		phase = PhaseStopped
		logger.Info("backfill canceled", "forwarded", st.Counts.Forwarded)
		return BackfillResult{}, ctx.Err()
	case failed != nil:
		phase = PhaseStopped
		var app *temporal.ApplicationError
		if errors.As(failed, &app) && app.Type() == ErrTypeFilterChanged {
			return BackfillResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the filter changed while backfilling v%d (%s); run the backfill again to apply the new one", st.Plan.Filter.Version, app.Message()),
				ErrTypeFilterChanged, nil)
		}
		return BackfillResult{}, failed
	case !l.done():
		logger.Info("backfill continues as new", "forwarded", st.Counts.Forwarded)
		in.Resume = &st
		return BackfillResult{}, workflow.NewContinueAsNewError(ctx, Backfill, in)
	}
	phase = PhaseDone
	ranges := 0
	for _, lane := range l.units {
		ranges += len(lane)
	}
	return BackfillResult{
		RequestID: in.RequestID, Filter: st.Plan.Filter, Source: st.Plan.Source, Target: st.Plan.Target,
		From: in.From, To: in.To, Partitions: st.Plan.Partitions, Ranges: ranges, Counts: st.Counts,
		Recovered: st.Recovered, StartedAt: st.StartedAt, FinishedAt: workflow.Now(ctx), Runs: st.Runs,
	}, nil
}

// cleanupMarkers runs a cleanup activity for n finished units: once the
// workflow has recorded a unit as done it is never retried, so its marker
// has served. A failure only leaves markers behind, so it is logged, not
// returned; a canceled workflow still cleans up.
func cleanupMarkers(ctx workflow.Context, activity string, in any, n int) {
	if n == 0 {
		return
	}
	if ctx.Err() != nil {
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	if err := workflow.ExecuteActivity(ctx, activity, in).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("commit markers left behind", "activity", activity, "units", n, "err", err)
	}
}
