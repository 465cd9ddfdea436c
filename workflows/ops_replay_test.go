package workflows

import (
	"os"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestOperationsReplay replays histories recorded from real runs on the
// Temporal dev server: a backfill whose worker was killed mid-range (and
// that a second request attached to), and a dead-letter replay whose worker
// was killed likewise. A change that makes Backfill or ReplayDeadLetters
// non-deterministic fails here rather than on workers with runs in flight.
// Re-record them with SHOPSTREAM_RECORD_HISTORY=$PWD/workflows/testdata
// go test ./cli -run 'TestBackfillEndToEnd|TestReplayEndToEnd'.
func TestOperationsReplay(t *testing.T) {
	for _, c := range []struct {
		file     string
		workflow any
	}{
		{"testdata/backfill.json", Backfill},
		{"testdata/dlq_replay.json", ReplayDeadLetters},
	} {
		if _, err := os.Stat(c.file); err != nil {
			t.Errorf("%s: %v (record it as the comment above says)", c.file, err)
			continue
		}
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(c.workflow)
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, c.file); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
	}
}
