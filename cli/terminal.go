package main

import (
	"os"

	"golang.org/x/term"
)

// isTerminal says whether a command's reader or writer is a terminal: a
// person typing prompts, or a screen that can redraw a progress bar. A pipe,
// a file or /dev/null is not (/dev/null is a character device too, so the
// file mode alone cannot tell); TERM=dumb cannot redraw.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && os.Getenv("TERM") != "dumb" && term.IsTerminal(int(f.Fd()))
}
