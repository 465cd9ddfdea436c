package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/testtool"
)

// runApp runs the binary's entry point with args and returns what a user
// would see: the exit code, standard output and standard error.
func runApp(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"shopstream"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBadInputExitsTwoAndSaysWhy(t *testing.T) {
	for i, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"bootstrap", "--no-such-flag"}, "no-such-flag"},
		{[]string{"no-such-command"}, `no command "no-such-command"`},
		{[]string{"bootstrap", "--partitions", "0"}, "--partitions 0: want 1 to 10000"},
		{[]string{"bootstrap", "--replication-factor", "-1"}, "--replication-factor -1"},
		{[]string{"bootstrap", "--partitions", "x"}, "partitions"},
		{[]string{"config", "--kafka-brokers", ""}, "--kafka-brokers (KAFKA_BROKERS) is empty"},
		{[]string{"config", "--kafka-brokers", "nohostport"}, "want host:port"},
		{[]string{"config", "--schema-registry-url", "ftp://x"}, "want an http:// or https:// URL"},
		{[]string{"config", "--product-topic", "same", "--filtered-topic", "same"}, "both name topic"},
		{[]string{"config", "--dial-timeout", "soon"}, "--dial-timeout"},
	} {
		code, _, stderr := runApp(t, context.Background(), c.args...)
		if code != exitUsage {
			t.Errorf("#%d %v: exit code %d, want %d (stderr %q)", i, c.args, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("#%d %v: stderr %q does not say %q", i, c.args, stderr, c.want)
		}
	}
}

func TestUnreachableBrokerIsAClearErrorNotAHang(t *testing.T) {
	// A broker that accepts connections and never answers: the worst case,
	// where only a deadline ends the wait.
	for _, addr := range []string{"127.0.0.1:1" /* refused */, testtool.SilentListener(t)} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		// The default dial timeout (10s) bounds it; a smaller one keeps the test short.
		code, _, stderr := runApp(t, ctx, "worker", "--kafka-brokers", addr, "--dial-timeout", "3s", "--metrics-addr", "")
		cancel()
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s: took %s to give up, want under 10s", addr, took)
		}
		if code == 0 {
			t.Fatalf("%s: exit code 0 for an unreachable broker", addr)
		}
		for _, want := range []string{"cannot reach Kafka at " + addr, "KAFKA_BROKERS"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: stderr %q does not say %q", addr, stderr, want)
			}
		}
	}
}

func TestConfigShowsSettingsWithSecretsMasked(t *testing.T) {
	t.Setenv("PRODUCT_TOPIC", "from_env")
	code, out, stderr := runApp(t, context.Background(), "config",
		"--database-dsn", "postgres://shop:s3cret@db:5432/shop",
		"--schema-registry-url", "http://reg:pw0rd@registry:8081")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"PRODUCT_TOPIC", "from_env", "KAFKA_BROKERS", "127.0.0.1:9092", "postgres://shop:*****@db:5432/shop", "http://reg:*****@registry:8081"} {
		if !strings.Contains(out, want) {
			t.Errorf("config output does not show %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cret", "pw0rd"} {
		if strings.Contains(out, secret) {
			t.Errorf("config output leaks %q:\n%s", secret, out)
		}
	}
}

func TestHelpTeaches(t *testing.T) {
	code, out, _ := runApp(t, context.Background(), "bootstrap", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--only", "--force", "KAFKA_BROKERS", "Examples:"} {
		if !strings.Contains(out, want) {
			t.Errorf("bootstrap --help does not mention %q", want)
		}
	}
}
