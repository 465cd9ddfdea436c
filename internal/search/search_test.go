package search

import (
	"errors"
	"strings"
	"testing"

	"github.com/shopstream/shopstream/internal/exitcode"
)

// Prompts read from a pipe are all checked before any is sent: one bad line
// refuses them all, as bad input, naming each bad line.
func TestReadPromptsChecksEveryLineFirst(t *testing.T) {
	got, err := ReadPrompts(strings.NewReader("iPhone 15\r\nGalaxy S24\n"))
	if err != nil || len(got) != 2 || got[0] != "iPhone 15" || got[1] != "Galaxy S24" {
		t.Fatalf("ReadPrompts = %q, %v; want the two prompts", got, err)
	}
	for i, c := range []struct {
		in   string
		want []string
	}{
		{"iPhone 15\n \t\nPixel\n" + strings.Repeat("x", 1025) + "\n", []string{"line 2: the prompt is empty", "line 4: the prompt is 1025 bytes", "nothing was sent"}},
		{"", []string{"no prompt given"}},
	} {
		_, err := ReadPrompts(strings.NewReader(c.in))
		var ec interface{ ExitCode() int }
		if !errors.As(err, &ec) || ec.ExitCode() != exitcode.Usage {
			t.Errorf("#%d: ReadPrompts error %v, want bad input (exit %d)", i, err, exitcode.Usage)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("#%d: %q does not say %q", i, err, w)
			}
		}
	}
}
