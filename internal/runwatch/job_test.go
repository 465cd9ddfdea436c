package runwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/api/serviceerror"
)

// The words both one-at-a-time jobs share: where to follow a detached run,
// and a missing run as exit code 1 that says what to do, named by the job.
func TestJobSaysWhatToDoNext(t *testing.T) {
	j := Job[int, int]{Name: "backfill", Command: "shopstream filter backfill", ID: "shopstream-backfill",
		None: "no backfill has run yet: start one with `shopstream filter backfill`"}
	var out bytes.Buffer
	if err := j.Follow(context.Background(), nil, nil, "http://ui", &out, false, true); err != nil {
		t.Fatalf("Follow detached = %v", err)
	}
	if want := "backfill: detached; follow with `shopstream filter backfill status`, stop with `shopstream filter backfill cancel`\n"; out.String() != want {
		t.Errorf("detached, printed %q, want %q", out.String(), want)
	}
	for i, c := range []struct {
		in   error
		want string
		code int
	}{
		{fmt.Errorf("describe: %w", serviceerror.NewNotFound("workflow not found")), "backfill: no backfill has run yet: start one with `shopstream filter backfill`", 1},
		{errors.New("connection refused"), "backfill: connection refused", 0},
		{nil, "", 0},
	} {
		err := j.err(c.in)
		if c.in == nil {
			if err != nil {
				t.Errorf("#%d: err(nil) = %v", i, err)
			}
			continue
		}
		if err == nil || err.Error() != c.want {
			t.Errorf("#%d: err = %v, want %q", i, err, c.want)
		}
		var ec interface{ ExitCode() int }
		if got := errors.As(err, &ec); got != (c.code != 0) || got && ec.ExitCode() != c.code {
			t.Errorf("#%d: exit code carried %v, want %d", i, got, c.code)
		}
	}
}
