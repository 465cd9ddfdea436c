package workflows

import (
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// Each history in testdata/ was recorded from a real run on the Temporal dev
// server. Replaying it against today's code fails when a change would break
// workflows with runs in flight (non-determinism), here rather than on the
// workers. A history is recorded again by its cli test with
// SHOPSTREAM_RECORD_HISTORY=$PWD/workflows/testdata, or by the command named.
func TestReplayRecordedHistories(t *testing.T) {
	for _, c := range []struct {
		file     string
		workflow any
		recorder string
	}{
		{"bootstrap.json", Bootstrap, "temporal workflow show -w " + BootstrapWorkflowID + " --output json"},
		// A finished run of 2 batches, and a run canceled mid-batch.
		{"emulate_shop.json", EmulateShop, "go test ./cli -run TestEmulateOnEmbeddedStack"},
		{"emulate_shop_canceled.json", EmulateShop, "go test ./cli -run TestEmulateCancel"},
		// A run that made three changes and continued as new, and the run
		// after it.
		{"stream_filter_continued.json", StreamFilter, "go test ./cli -run TestFilterEndToEnd"},
		{"stream_filter_running.json", StreamFilter, "go test ./cli -run TestFilterEndToEnd"},
		// A backfill whose worker was killed mid-range (and that a second
		// request attached to), and a dead-letter replay killed likewise.
		{"backfill.json", Backfill, "go test ./cli -run TestBackfillEndToEnd"},
		{"dlq_replay.json", ReplayDeadLetters, "go test ./cli -run TestReplayEndToEnd"},
	} {
		t.Run(c.file, func(t *testing.T) {
			file := filepath.Join("testdata", c.file)
			if _, err := os.Stat(file); err != nil {
				t.Fatalf("%v (record it: %s)", err, c.recorder)
			}
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(c.workflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatal(err)
			}
		})
	}
}
