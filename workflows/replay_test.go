package workflows

import (
	"testing"

	"go.temporal.io/sdk/worker"
)

// Each history in testdata/ was recorded from a real run on the Temporal dev
// server (`temporal workflow show -w ID --output json`). Replaying it against
// today's code fails when a change would break running workflows
// (non-determinism).
func TestReplayRecordedHistories(t *testing.T) {
	for _, c := range []struct {
		file     string
		workflow any
	}{
		{"testdata/bootstrap.json", Bootstrap},
	} {
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(c.workflow)
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, c.file); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
	}
}
