package temporalclient_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/clients/temporalclient"
	"github.com/shopstream/shopstream/internal/testtool"
)

func TestDialOfANonAnsweringFrontendSaysWhatToDo(t *testing.T) {
	// Something that accepts connections and never speaks gRPC.
	silent := testtool.SilentListener(t)
	start := time.Now()
	_, err := temporalclient.Dial(context.Background(), temporalclient.Options{HostPort: silent, DialTimeout: 500 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s to give up, want about the 500ms dial timeout", took)
	}
	for _, want := range []string{"cannot reach Temporal at " + silent + " (namespace default) within 500ms", "shopstream dev", "TEMPORAL_ADDRESS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
