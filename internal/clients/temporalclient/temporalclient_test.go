package temporalclient_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/clients/temporalclient"
)

func TestDialOfANonAnsweringFrontendSaysWhatToDo(t *testing.T) {
	// Something that accepts connections and never speaks gRPC.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = temporalclient.Dial(context.Background(), temporalclient.Options{HostPort: silent.Addr().String(), DialTimeout: 500 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s to give up, want about the 500ms dial timeout", took)
	}
	for _, want := range []string{"cannot reach Temporal at " + silent.Addr().String() + " (namespace default) within 500ms", "shopstream dev", "TEMPORAL_ADDRESS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
