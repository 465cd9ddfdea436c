package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// lanes runs units of work as activities: the units of one lane in order
// (they share a Kafka transactional id, and a later one may depend on an
// earlier one having committed), at most conc lanes at once. Backfill and
// ReplayDeadLetters use it, with a lane per Kafka partition.
type lanes[U, R any] struct {
	activity string
	units    [][]U
	// next is each lane's next unit, carried across continue-as-new.
	next []int
	conc int
	// running is how many units run now, for the progress queries.
	running int
}

// run starts units until every lane is done, ctx ends, a unit fails, or
// limit units have started in this call; onDone sees each finished unit's
// result. It returns once every started unit has ended, with the units
// that finished (their markers can go: they never run again) as range ids,
// partition telling each unit's partition, and the first failure.
func (l *lanes[U, R]) run(ctx, actx workflow.Context, limit int, partition func(U) int32, onDone func(lane int, u U, r R)) ([]BackfillRangeID, error) {
	info := workflow.GetInfo(ctx)
	sel := workflow.NewSelector(ctx)
	busy := make([]bool, len(l.units))
	started := 0
	var finished []BackfillRangeID
	var failed error
	for {
		for lane := 0; failed == nil && ctx.Err() == nil && lane < len(l.units) && l.running < l.conc &&
			started < limit && !info.GetContinueAsNewSuggested(); lane++ {
			if busy[lane] || l.next[lane] >= len(l.units[lane]) {
				continue
			}
			lane, u := lane, l.units[lane][l.next[lane]]
			busy[lane] = true
			l.running++
			started++
			sel.AddFuture(workflow.ExecuteActivity(actx, l.activity, u), func(f workflow.Future) {
				l.running--
				busy[lane] = false
				var r R
				if err := f.Get(ctx, &r); err != nil {
					if failed == nil {
						failed = fmt.Errorf("range %d of partition %d: %w", l.next[lane], partition(u), err)
					}
					return
				}
				finished = append(finished, BackfillRangeID{Partition: partition(u), Range: l.next[lane]})
				l.next[lane]++
				onDone(lane, u, r)
			})
		}
		if l.running == 0 {
			return finished, failed
		}
		sel.Select(ctx)
	}
}

// runKey names the units of one run of a workflow with a fixed id in their
// markers and transactional ids: the workflow id alone would name the units
// of every backfill (or replay) alike, and a marker a failed cleanup left
// behind would make a later run's unit look committed. A run waits for
// every unit it started before it continues as new, so no unit outlives
// its run.
func runKey(info *workflow.Info) string {
	return info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID
}

// done says whether every lane has finished all its units.
func (l *lanes[U, R]) done() bool {
	for lane := range l.units {
		if l.next[lane] < len(l.units[lane]) {
			return false
		}
	}
	return true
}
