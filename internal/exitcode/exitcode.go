// Package exitcode gives an error the exit code `shopstream` ends with, so
// that the packages a command calls can say "bad input" or "unhealthy"
// without knowing the command-line library: main turns any error with an
// ExitCode method into that code (urfave/cli's ExitCoder is the same
// method).
package exitcode

import "fmt"

// Usage is the exit code for bad flags and bad input: nothing was done.
const Usage = 2

// Error is an error with the exit code the process ends with.
type Error struct {
	msg  string
	code int
}

// New returns an error that ends the process with code; an empty msg prints
// nothing more (the command has said what there was to say).
func New(code int, msg string) error { return &Error{msg: msg, code: code} }

// Usagef reports bad input (exit code 2): the message says what is wrong and
// what to do.
func Usagef(format string, a ...any) error {
	return &Error{msg: fmt.Sprintf(format, a...), code: Usage}
}

func (e *Error) Error() string { return e.msg }

// ExitCode is the code the process ends with.
func (e *Error) ExitCode() int { return e.code }
