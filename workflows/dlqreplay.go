package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ReplayWorkflowID is fixed: one replay runs at a time, and a second
// request while one runs is refused (the CLI starts with the conflict
// policy "fail"): two replays with different selections would race for
// the same letters. The ledger makes a later run skip what an earlier one
// sent back.
const ReplayWorkflowID = "shopstream-dlq-replay"

// QueryReplayProgress answers with a ReplayProgress.
const QueryReplayProgress = "replay-progress"

// Activity names implemented by activities.Replay.
const (
	ActivityReplayPlan    = "ReplayPlan"
	ActivityReplayRange   = "ReplayRange"
	ActivityReplayCleanup = "ReplayCleanup"
)

// Defaults and bounds of ReplayInput.
const (
	// DefaultReplayRangeLetters is the most letters one range activity
	// (one Kafka transaction) sends back.
	DefaultReplayRangeLetters = 10_000
	MaxReplaysPerRun          = 500
)

// ReplaySelection picks dead letters; an empty field picks every letter.
type ReplaySelection struct {
	Reasons    []string
	Components []string
	Since      time.Time
	Keys       []string
}

// ReplayInput is what `shopstream dlq replay` asks for.
type ReplayInput struct {
	Selection ReplaySelection
	// Limit > 0 sends back at most that many, the oldest first.
	Limit int
	// RangeLetters caps the letters of one range (0: the default).
	RangeLetters int
	RequestID    string
	By           string
	// HeartbeatTimeout is how soon a range whose worker died is retried
	// elsewhere (0: 10s).
	HeartbeatTimeout time.Duration

	// Resume is set by the workflow itself when it continues as new.
	Resume *ReplayResume
}

// ReplayResume carries a run's progress into the next run of the chain.
type ReplayResume struct {
	Plan      ReplayPlan
	Next      []int
	Replayed  int64
	ByTopic   map[string]int64
	Recovered int
	StartedAt time.Time
	Runs      int
}

// ReplayPlanInput asks for the plan of a selection.
type ReplayPlanInput struct {
	Selection    ReplaySelection
	Limit        int
	RangeLetters int
}

// ReplayPlan is what a replay sends back: ranges of the dead-letter topic,
// and what became of every picked letter (replay, replayed already, at the
// replay limit, superseded, over --limit).
type ReplayPlan struct {
	DLQ        string
	MaxReplays int
	Ranges     []ReplayRange
	Verdicts   map[string]int
}

// ReplayRange is one dead-letter partition's offsets [Start, End) holding
// Letters letters to send back.
type ReplayRange struct {
	Partition  int32
	Start, End int64
	Letters    int
}

// ReplayRangeInput asks one activity to send back the letters of one range.
type ReplayRangeInput struct {
	// WorkflowID names the run in the range's marker and transactional
	// id: the workflow id and the run id.
	WorkflowID string
	Selection  ReplaySelection
	Range      ReplayRange
	// Index is the range's place among its partition's ranges.
	Index int
}

// ReplayRangeResult says what one range committed.
type ReplayRangeResult struct {
	Replayed int64
	// ByTopic counts the letters sent back to each source topic.
	ByTopic map[string]int64
	// AlreadyCommitted is set when an earlier attempt had committed the
	// range but did not live to report it; nothing was sent again.
	AlreadyCommitted bool
}

// ReplayCleanupInput names the ranges whose commit markers can go.
type ReplayCleanupInput struct {
	WorkflowID string
	Ranges     []BackfillRangeID
}

// ReplayCleanupResult says how many markers were removed.
type ReplayCleanupResult struct {
	Deleted int
}

// ReplayProgress is what the progress query answers.
type ReplayProgress struct {
	Phase      string
	RequestID  string
	By         string
	Selection  ReplaySelection
	Limit      int
	Letters    int
	Replayed   int64
	ByTopic    map[string]int64
	Verdicts   map[string]int
	Ranges     int
	RangesDone int
	Running    int
	Recovered  int
	StartedAt  time.Time
}

// ReplayResult is the finished replay.
type ReplayResult struct {
	RequestID  string
	DLQ        string
	MaxReplays int
	Replayed   int64
	ByTopic    map[string]int64
	Verdicts   map[string]int
	Ranges     int
	Recovered  int
	StartedAt  time.Time
	FinishedAt time.Time
	Runs       int
}

// Validate checks the input before anything runs.
func (in ReplayInput) Validate() error {
	switch {
	case in.Limit < 0:
		return fmt.Errorf("limit %d: want 0 (no limit) or more", in.Limit)
	case in.RangeLetters < 0:
		return fmt.Errorf("range size %d: want a positive number of letters, or 0 for the default", in.RangeLetters)
	case in.HeartbeatTimeout < 0:
		return fmt.Errorf("heartbeat timeout %s: want a positive duration", in.HeartbeatTimeout)
	}
	return nil
}

// ReplayDeadLetters sends the dead letters a selection picks back to their
// source topics: it plans (which letters, in which ranges of the dead-letter
// topic), then sends each partition's ranges back in order, one activity
// and one Kafka transaction each, which also writes the letters' ledger
// entries and a marker, so a retried or resumed range sends nothing twice
// and a later replay skips what this one sent.
func ReplayDeadLetters(ctx workflow.Context, in ReplayInput) (ReplayResult, error) {
	if err := in.Validate(); err != nil {
		return ReplayResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	info := workflow.GetInfo(ctx)
	st := ReplayResume{}
	if in.Resume != nil {
		st = *in.Resume
	}
	if st.StartedAt.IsZero() {
		st.StartedAt = workflow.Now(ctx)
	}
	if st.ByTopic == nil {
		st.ByTopic = map[string]int64{}
	}
	st.Runs++
	phase := PhasePreparing
	l := &lanes[ReplayRangeInput, ReplayRangeResult]{activity: ActivityReplayRange, conc: 4}
	if err := workflow.SetQueryHandler(ctx, QueryReplayProgress, func() (ReplayProgress, error) {
		p := ReplayProgress{Phase: phase, RequestID: in.RequestID, By: in.By, Selection: in.Selection, Limit: in.Limit,
			Replayed: st.Replayed, ByTopic: st.ByTopic, Verdicts: st.Plan.Verdicts, Running: l.running, Recovered: st.Recovered, StartedAt: st.StartedAt}
		for i, lane := range l.units {
			p.Ranges += len(lane)
			for j, u := range lane {
				p.Letters += u.Range.Letters
				if j < l.next[i] {
					p.RangesDone++
				}
			}
		}
		return p, nil
	}); err != nil {
		return ReplayResult{}, err
	}
	heartbeat := in.HeartbeatTimeout
	if heartbeat == 0 {
		heartbeat = 10 * time.Second
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute, HeartbeatTimeout: heartbeat, WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeInvalidInput},
		},
	})
	if in.Resume == nil {
		pin := ReplayPlanInput{Selection: in.Selection, Limit: in.Limit, RangeLetters: in.RangeLetters}
		if err := workflow.ExecuteActivity(actx, ActivityReplayPlan, pin).Get(ctx, &st.Plan); err != nil {
			if ctx.Err() != nil {
				return ReplayResult{}, ctx.Err()
			}
			return ReplayResult{}, fmt.Errorf("plan the replay: %w", err)
		}
		st.Next = nil
	}
	// One lane per dead-letter partition, its ranges in order.
	lane := map[int32]int{}
	for _, r := range st.Plan.Ranges {
		i, ok := lane[r.Partition]
		if !ok {
			i = len(l.units)
			lane[r.Partition] = i
			l.units = append(l.units, nil)
		}
		l.units[i] = append(l.units[i], ReplayRangeInput{WorkflowID: runKey(info), Selection: in.Selection, Range: r, Index: len(l.units[i])})
	}
	if st.Next == nil {
		st.Next = make([]int, len(l.units))
	}
	l.next = st.Next
	phase = PhaseRunning
	finished, failed := l.run(ctx, actx, MaxReplaysPerRun, func(u ReplayRangeInput) int32 { return u.Range.Partition }, func(_ int, _ ReplayRangeInput, r ReplayRangeResult) {
		st.Replayed += r.Replayed
		for t, n := range r.ByTopic {
			st.ByTopic[t] += n
		}
		if r.AlreadyCommitted {
			st.Recovered++
		}
	})
	st.Next = l.next
	phase = PhaseCleaningUp
	cleanupMarkers(ctx, ActivityReplayCleanup, ReplayCleanupInput{WorkflowID: runKey(info), Ranges: finished}, len(finished))
	switch {
	case ctx.Err() != nil:
		phase = PhaseStopped
		return ReplayResult{}, ctx.Err()
	case failed != nil:
		phase = PhaseStopped
		return ReplayResult{}, failed
	case !l.done():
		in.Resume = &st
		return ReplayResult{}, workflow.NewContinueAsNewError(ctx, ReplayDeadLetters, in)
	}
	phase = PhaseDone
	return ReplayResult{
		RequestID: in.RequestID, DLQ: st.Plan.DLQ, MaxReplays: st.Plan.MaxReplays, Replayed: st.Replayed, ByTopic: st.ByTopic,
		Verdicts: st.Plan.Verdicts, Ranges: len(st.Plan.Ranges), Recovered: st.Recovered, StartedAt: st.StartedAt,
		FinishedAt: workflow.Now(ctx), Runs: st.Runs,
	}, nil
}
