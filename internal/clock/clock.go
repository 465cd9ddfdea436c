// Package clock waits the way every loop in shopstream must: for a while,
// or until its context ends, whichever comes first, so that a retry backoff
// never holds up a stop.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends; then it returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
