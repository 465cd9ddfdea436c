package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
)

// noExit keeps urfave/cli from calling os.Exit on an exit-coded error, so
// run returns the code as main would exit with it.
func noExit(t *testing.T) {
	exiter, w := cli.OsExiter, cli.ErrWriter
	cli.OsExiter, cli.ErrWriter = func(int) {}, io.Discard
	t.Cleanup(func() { cli.OsExiter, cli.ErrWriter = exiter, w })
}

func TestSinkBadInputExitsWithTwo(t *testing.T) {
	noExit(t)
	dir := t.TempDir()
	for i, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sink", "--data-dir", dir}, "DATABASE_DSN"},
		{[]string{"sink", "--database-dsn", "postgres://x@127.0.0.1/db", "--batch-size", "0"}, "--batch-size"},
		{[]string{"sink", "--database-dsn", "postgres://x@127.0.0.1/db", "--group", ""}, "--group"},
		{[]string{"sink", "--database-dsn", "postgres://x@127.0.0.1/db", "--log-level", "loud"}, "--log-level"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"shopstream"}, c.args...), strings.NewReader(""), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("#%d %v: exit %d, stderr %q; want exit 2 naming %s", i, c.args, code, errOut.String(), c.want)
		}
	}
}

// sinkRig is kfake, a registry and a database with a few products in Kafka.
func sinkRig(t *testing.T) (kc *kafkatest.Cluster, dsn string, keys []string) {
	t.Helper()
	ctx := context.Background()
	kc = kafkatest.Start(t)
	// A cluster of the test's own: package main has no TestMain to stop a
	// shared one.
	dsn = pgtest.Cluster(t).DSN
	topics := records.DefaultTopics()
	cl := kc.Client()
	for _, tp := range []string{topics.Products, topics.Filtered, topics.CompleteProducts, topics.Find, topics.Recommendations, topics.DLQ} {
		kc.CreateTopic(2, nil, tp)
	}
	serde := kc.Serde
	for i := 0; i < 50; i++ {
		p := records.Product{ProductID: "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)), MallID: "m", Name: "n",
			Price: records.Price{Amount: "2.50", Currency: "EUR"}, CreatedAt: time.UnixMilli(1), UpdatedAt: time.UnixMilli(2)}
		v, err := serde.Encode(ctx, nil, topics.Products, &p)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Products, Key: []byte(p.Key()), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, p.Key())
	}
	return kc, dsn, keys
}

func countProducts(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n); err != nil {
		return -1 // not migrated yet
	}
	return n
}

var metricsLine = regexp.MustCompile(`/metrics on http://([0-9.:]+)/metrics`)

// `shopstream sink` writes the topics into PostgreSQL, serves /metrics and
// stops cleanly when its context ends (what SIGTERM does in main).
func TestSinkCommandWritesServesMetricsAndStops(t *testing.T) {
	kc, dsn, keys := sinkRig(t)
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"shopstream", "sink", "--kafka-brokers", strings.Join(kc.Brokers, ","),
			"--schema-registry-url", kc.RegistryURL, "--database-dsn", dsn, "--metrics-addr", "127.0.0.1:0", "--data-dir", t.TempDir()},
			strings.NewReader(""), &out, &errOut)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for countProducts(t, dsn) != len(keys) {
		if time.Now().After(deadline) {
			t.Fatalf("products = %d, want %d\nstdout: %s\nstderr: %s", countProducts(t, dsn), len(keys), out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := metricsLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the sink did not say where /metrics is: %s", out.String())
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `shopstream_sink_rows_written_total{op="upsert",table="products"} 50`) ||
		!strings.Contains(string(body), "shopstream_sink_lag_records") || !strings.Contains(string(body), "shopstream_sink_batch_seconds_bucket") {
		t.Errorf("/metrics lacks the sink's rows written, lag or batch latency:\n%s", grepLines(string(body), "shopstream_sink"))
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after a stop, want 0; stderr: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sink did not stop within 10s of its context ending")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The built binary stops on SIGTERM within a few seconds and exits 0.
func TestSinkBinaryStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	kc, dsn, keys := sinkRig(t)
	bin := filepath.Join(t.TempDir(), "shopstream")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "sink", "--metrics-addr", "127.0.0.1:0")
	cmd.Dir = t.TempDir() // no .env there
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(kc.Brokers, ","), "SCHEMA_REGISTRY_URL="+kc.RegistryURL, "DATABASE_DSN="+dsn)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for countProducts(t, dsn) != len(keys) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("products = %d, want %d; output:\n%s", countProducts(t, dsn), len(keys), out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; output:\n%s", err, out.String())
		}
		t.Logf("stopped %s after SIGTERM", time.Since(t0).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10s after SIGTERM; output:\n%s", out.String())
	}
}
