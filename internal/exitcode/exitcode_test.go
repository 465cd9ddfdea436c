package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

// A wrapped usage error still carries its code, as main reads it.
func TestUsageErrorKeepsItsCodeWhenWrapped(t *testing.T) {
	err := fmt.Errorf("emulate: %w", Usagef("--count %q: want a number", "x"))
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != Usage {
		t.Fatalf("errors.As(%v) found no exit code %d", err, Usage)
	}
	if err.Error() != `emulate: --count "x": want a number` {
		t.Errorf("message %q", err)
	}
	if got := New(130, "").Error(); got != "" {
		t.Errorf("New(130, \"\") says %q, want nothing", got)
	}
}
