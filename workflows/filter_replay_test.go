package workflows

import (
	"testing"

	"go.temporal.io/sdk/worker"
)

// The histories were recorded from a real run on the Temporal dev server by
// cli's TestFilterEndToEnd (SHOPSTREAM_RECORD_HISTORY=workflows/testdata): a
// run that made three changes and continued as new, and the run after it.
// Replaying them fails when a change to StreamFilter would break a running
// filter workflow.
func TestReplayStreamFilterHistories(t *testing.T) {
	for _, file := range []string{"testdata/stream_filter_continued.json", "testdata/stream_filter_running.json"} {
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(StreamFilter)
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
