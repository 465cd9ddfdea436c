package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Sleep waits its time, and a context that ends cuts it short with the
// context's error.
func TestSleepWaitsOrStopsWithItsContext(t *testing.T) {
	t0 := time.Now()
	if err := Sleep(context.Background(), 20*time.Millisecond); err != nil || time.Since(t0) < 20*time.Millisecond {
		t.Errorf("Sleep(20ms) = %v after %s, want nil after 20ms", err, time.Since(t0))
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	t0 = time.Now()
	if err := Sleep(ctx, time.Minute); !errors.Is(err, context.Canceled) || time.Since(t0) > 10*time.Second {
		t.Errorf("Sleep(1m) with its context cancelled = %v after %s, want context.Canceled at once", err, time.Since(t0))
	}
}
