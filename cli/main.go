// Command shopstream is the one binary of the shopstream pipeline: the
// embedded dev stack, the Temporal worker, the streamer and every operator
// command. `shopstream --help` lists them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the app and turns its error into an exit code: 2 for bad input,
// 1 for everything else.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if err := config.LoadDotEnv(".env", os.Setenv, os.LookupEnv); err != nil {
		fmt.Fprintf(stderr, "shopstream: %v\n", err)
		return 2
	}
	err := newApp(stdin, stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "shopstream: %s\n", msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "shopstream: %v\n", err)
	return 1
}
