package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Bad flags are refused with exit code 2 before anything connects.
func TestCollectorAndAPIFlags(t *testing.T) {
	for i, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"collector", "--fetch-attempts", "0"}, "--fetch-attempts 0: want 1 to 20"},
		{[]string{"collector", "--fetch-timeout", "-1s"}, "--fetch-timeout"},
		{[]string{"collector", "--fetch-concurrency", "0"}, "--fetch-concurrency 0"},
		{[]string{"collector", "--max-image-bytes", "0"}, "--max-image-bytes 0"},
		{[]string{"collector", "--fetch-per-host", "17"}, "--fetch-per-host 17: want 1 to --fetch-concurrency (16)"},
		{[]string{"collector", "--fetch-connect-timeout", "0s"}, "--fetch-connect-timeout 0s"},
		{[]string{"collector", "--fetch-header-timeout", "-1s"}, "--fetch-header-timeout -1s"},
		{[]string{"collector", "--park-after", "-1s"}, "--park-after -1s: want 0 (never park)"},
		{[]string{"collector", "--collector-max-in-flight", "0"}, "--collector-max-in-flight 0"},
		{[]string{"recommender", "--max-users", "0"}, "--max-users 0"},
		{[]string{"streamer", "--recommender-max-users", "-5"}, "--recommender-max-users -5"},
		{[]string{"streamer", "--max-batch", "0"}, "--max-batch 0: want 1 to 1000000"},
		{[]string{"streamer", "--fetch-max-bytes", "100"}, "--fetch-max-bytes 100: want 1024 to 268435456 (default 786432)"},
		{[]string{"streamer", "--fetch-max-partition-bytes", "1048576"}, "--fetch-max-partition-bytes 1048576: want 1024 to --fetch-max-bytes (786432)"},
		{[]string{"streamer", "--group", " "}, "--group is empty"},
		{[]string{"api", "--api-addr", "nope"}, `--api-addr "nope": want host:port`},
		{[]string{"api", "--max-body-bytes", "0"}, "--max-body-bytes 0"},
		{[]string{"loadtest", "--rate", "0"}, "--rate"},
	} {
		var out, errOut bytes.Buffer
		app := newApp(strings.NewReader(""), &out, &errOut)
		app.ExitErrHandler = func(*cli.Context, error) {} // urfave would os.Exit
		err := app.RunContext(context.Background(), append([]string{"shopstream"}, tc.args...))
		var ec cli.ExitCoder
		if !errors.As(err, &ec) || ec.ExitCode() != exitUsage || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("#%d %v: %v; want exit 2 saying %q", i, tc.args, err, tc.says)
		}
	}
}
