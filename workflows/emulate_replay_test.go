package workflows

import (
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestEmulateShopReplay replays histories recorded from real runs on the
// Temporal dev server (a finished run of 2 batches, and a run canceled
// mid-batch), so a change that makes EmulateShop non-deterministic fails
// here rather than on workers with runs in flight. Re-record them with
// SHOPSTREAM_RECORD_HISTORY=$PWD/workflows/testdata go test ./cli -run 'TestEmulateOnEmbeddedStack|TestEmulateCancel'.
func TestEmulateShopReplay(t *testing.T) {
	for _, file := range []string{"testdata/emulate_shop.json", "testdata/emulate_shop_canceled.json"} {
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(EmulateShop)
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
