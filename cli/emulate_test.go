package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/emulation"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/testtool"
	"github.com/shopstream/shopstream/workflows"
)

// childWorkerEnv makes the test binary run `shopstream worker` instead of
// the tests, so a test can kill a real worker process mid-run.
const childWorkerEnv = "SHOPSTREAM_TEST_CHILD_WORKER"

func TestMain(m *testing.M) {
	// urfave/cli exits the process for an exit-coded error; here run()
	// turns it into the exit code instead, as the tests want.
	cli.OsExiter = func(int) {}
	if os.Getenv(childWorkerEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, []string{"shopstream", "worker"}, os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	code := m.Run()
	sharedStack.close()
	os.Exit(code)
}

// sharedStack is one embedded stack (Kafka, registry, Temporal) for the
// package's tests; each test isolates itself with its own topic and task
// queue.
var sharedStack stackOnce

type stackOnce struct {
	once  sync.Once
	stack *environment.Stack
	err   error
}

func (s *stackOnce) get(t testing.TB) *environment.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the embedded stack")
	}
	s.once.Do(func() {
		if _, err := environment.FindTemporalCLI(""); err != nil {
			s.err = err
			return
		}
		s.stack, s.err = environment.Start(context.Background(), environment.Options{
			StartKafka: true, StartRegistry: true, StartTemporal: true,
		})
	})
	if s.err != nil {
		t.Fatalf("embedded stack: %v (export TEMPORAL_CLI=/path/to/temporal)", s.err)
	}
	return s.stack
}

func (s *stackOnce) close() {
	if s.stack != nil {
		s.stack.Close()
	}
}

// testEnv is what one test runs against: the stack's addresses, its own
// product topic and task queue.
type testEnv struct {
	t         *testing.T
	stack     *environment.Stack
	brokers   []string
	topic     string
	taskQueue string
	suffix    string
}

// id is a workflow id unique to this run of the test.
func (te *testEnv) id(name string) string {
	return workflows.EmulateWorkflowIDPrefix + name + "-" + te.suffix
}

func newTestEnv(t *testing.T, brokers []string) *testEnv {
	t.Helper()
	stack := sharedStack.get(t)
	if brokers == nil {
		brokers = stack.KafkaBrokers
	}
	// Unique per run, so -count=N can share the stack.
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	te := &testEnv{t: t, stack: stack, brokers: brokers, topic: "products_" + name, taskQueue: "tq-" + name, suffix: name[len(name)-6:]}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), 3, 1, nil, te.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", te.topic, err)
	}
	return te
}

// env lists the settings as environment variables, the way a user (or a
// child worker process) passes them.
func (te *testEnv) env() []string {
	return []string{
		"KAFKA_BROKERS=" + strings.Join(te.brokers, ","),
		"SCHEMA_REGISTRY_URL=" + te.stack.RegistryURL,
		"TEMPORAL_ADDRESS=" + te.stack.TemporalAddress,
		"TEMPORAL_UI_URL=" + te.stack.TemporalUIURL,
		"TEMPORAL_TASK_QUEUE=" + te.taskQueue,
		"PRODUCT_TOPIC=" + te.topic,
		"METRICS_ADDR=",
	}
}

func (te *testEnv) flags() []string {
	return []string{
		"--kafka-brokers", strings.Join(te.brokers, ","),
		"--schema-registry-url", te.stack.RegistryURL,
		"--temporal-address", te.stack.TemporalAddress,
		"--temporal-ui-url", te.stack.TemporalUIURL,
		"--task-queue", te.taskQueue,
		"--product-topic", te.topic,
	}
}

func (te *testEnv) config() *config.Config {
	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = te.brokers, te.stack.RegistryURL
	cfg.TemporalAddress, cfg.TemporalUIURL = te.stack.TemporalAddress, te.stack.TemporalUIURL
	cfg.TaskQueue, cfg.Topics.Products = te.taskQueue, te.topic
	return cfg
}

// shopstream runs the CLI in process and returns its exit code and output.
func (te *testEnv) shopstream(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	sub := args[:1]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		sub = args[:2] // emulate status ID: flags go after the subcommand
		args = args[2:]
	} else {
		args = args[1:]
	}
	full := append(append(append([]string{"shopstream"}, sub...), te.flags()...), args...)
	code := run(ctx, full, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// startWorker runs a worker in process until the test ends; it returns the
// env whose metrics registry the worker's activities use.
func (te *testEnv) startWorker() *process.Env {
	te.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger, _ := telemetry.NewLogger(&bytes.Buffer{}, "warn")
	e, err := process.Connect(ctx, te.config(), logger, telemetry.NewRegistry(), process.NeedKafka|process.NeedTemporal)
	if err != nil {
		te.t.Fatal(err)
	}
	w, err := e.Worker(5 * time.Second)
	if err != nil {
		te.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	te.t.Cleanup(func() {
		cancel()
		<-done
		e.Close()
	})
	return e
}

// startChildWorker runs `shopstream worker` as a separate process.
func (te *testEnv) startChildWorker() *exec.Cmd {
	te.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childWorkerEnv+"=1"), te.env()...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		te.t.Fatal(err)
	}
	te.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if te.t.Failed() {
			te.t.Logf("child worker %d output:\n%s", cmd.Process.Pid, log.String())
		}
	})
	return cmd
}

func (te *testEnv) temporal() client.Client {
	te.t.Helper()
	c, err := client.Dial(client.Options{HostPort: te.stack.TemporalAddress, Logger: quietSDKLogger{}})
	if err != nil {
		te.t.Fatal(err)
	}
	te.t.Cleanup(c.Close)
	return c
}

// readCommitted reads the topic as a read_committed consumer and returns
// how many records it holds and how often each key occurs; every value must
// decode as a Product with plausible fields.
func (te *testEnv) readCommitted(want int) (total int, keys map[string]int) {
	te.t.Helper()
	cfg := te.config()
	serde, err := clients.NewSerde(cfg.SchemaRegistryURL)
	if err != nil {
		te.t.Fatal(err)
	}
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: te.brokers})
	if err != nil {
		te.t.Fatal(err)
	}
	keys = map[string]int{}
	total = kafkatest.ReadCommitted(te.t, k, te.topic, want, func(r *kgo.Record) {
		keys[string(r.Key)]++
		var p records.Product
		if err := serde.Decode(context.Background(), r.Value, &p); err != nil {
			te.t.Fatalf("%s[%d]@%d does not decode as Product: %v", r.Topic, r.Partition, r.Offset, err)
		}
		price, err := strconv.ParseFloat(p.Price.Amount, 64)
		if p.Name == "" || err != nil || price <= 0 || p.Key() != string(r.Key) || len(p.Images) == 0 {
			te.t.Fatalf("%s[%d]@%d is not a plausible product: %+v", r.Topic, r.Partition, r.Offset, p)
		}
	})
	return total, keys
}

// startMidRun starts emulation id of 20 batches of 1000 products at 5000/s,
// detached, with extra flags, and waits until some batches are committed
// and others run: the moment to break something.
func (te *testEnv) startMidRun(id string, extra ...string) (client.Client, workflows.EmulateProgress) {
	te.t.Helper()
	ctx := context.Background()
	args := append([]string{"emulate", "--count", "20000", "--batch-size", "1000", "--rate", "5000", "--id", id, "--detach"}, extra...)
	if code, out, errOut := te.shopstream(ctx, args...); code != 0 {
		te.t.Fatalf("emulate exited %d\n%s\n%s", code, out, errOut)
	}
	tc := te.temporal()
	var now workflows.EmulateProgress
	waitFor(te.t, 30*time.Second, "some batches committed, others running", func() bool {
		p, err := emulation.QueryProgress(ctx, tc, id)
		now = p
		return err == nil && p.Committed >= 4000 && p.Running > 0
	})
	return tc, now
}

// assertFinished waits up to within for emulation id to finish, and checks
// that it says it committed n products and the topic holds exactly those.
func (te *testEnv) assertFinished(tc client.Client, id string, n int, within time.Duration) {
	te.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var res workflows.EmulateShopResult
	if err := tc.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		te.t.Fatal(err)
	}
	if res.Committed != int64(n) {
		te.t.Fatalf("workflow says %d committed, want %d", res.Committed, n)
	}
	te.assertExactly(n)
}

func (te *testEnv) assertExactly(n int) {
	te.t.Helper()
	total, keys := te.readCommitted(n)
	if total != n || len(keys) != n {
		dups := 0
		for _, c := range keys {
			if c > 1 {
				dups++
			}
		}
		te.t.Fatalf("topic %s holds %d committed records with %d distinct keys (%d keys more than once), want exactly %d of each", te.topic, total, len(keys), dups, n)
	}
}

func TestEmulateOnEmbeddedStack(t *testing.T) {
	te := newTestEnv(t, nil)
	w := te.startWorker()
	ctx := context.Background()
	id := te.id("it-10000")
	code, out, errOut := te.shopstream(ctx, "emulate", "--count", "10_000", "--id", id, "--seed", "7")
	if code != 0 {
		t.Fatalf("emulate exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"started workflow " + id,
		"done: 10000 products committed in",
		"products/s",
		"partition 0", "partition 2",
		"Web UI",
		te.stack.TemporalUIURL + "/namespaces/default/workflows/" + id,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	te.assertExactly(10_000)

	// The summary's end offsets add up to the records plus one commit
	// marker per batch and partition.
	var res workflows.EmulateShopResult
	if err := te.temporal().GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Committed != 10_000 || res.Batches != 2 || res.Seed != 7 || len(res.Partitions) != 3 {
		t.Fatalf("result %+v", res)
	}
	if got := testtool.MetricValue(t, w.Metrics, "shopstream_emulate_records_produced_total"); got != 10_000 {
		t.Errorf("worker metric shopstream_emulate_records_produced_total = %v, want 10000", got)
	}

	code, out, _ = te.shopstream(ctx, "emulate", "status", id)
	if code != 0 || !strings.Contains(out, "is completed") || !strings.Contains(out, "done: 10000 products committed") {
		t.Errorf("emulate status exited %d:\n%s", code, out)
	}
	recordHistory(t, te, id, "emulate_shop.json")
}

func TestEmulateContinuesAsNew(t *testing.T) {
	te := newTestEnv(t, nil)
	te.startWorker()
	id := te.id("it-can")
	// 600 batches: the workflow continues as new after 500, and the command
	// follows the chain to the end.
	code, out, errOut := te.shopstream(context.Background(), "emulate", "--count", "1200", "--batch-size", "2", "--concurrency", "8", "--id", id)
	if code != 0 {
		t.Fatalf("emulate exited %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "done: 1200 products committed") || !strings.Contains(out, "(600 batches in 2 run(s)") {
		t.Fatalf("summary does not show 1200 products over two runs:\n%s", out)
	}
	te.assertExactly(1200)
}

func TestEmulateSurvivesAKilledWorker(t *testing.T) {
	te := newTestEnv(t, nil)
	first := te.startChildWorker()
	id := te.id("it-killed")
	// 20 batches of 1000, four at a time, each taking about 0.8 s: the
	// kill lands while batches are mid-transaction.
	tc, before := te.startMidRun(id, "--concurrency", "4", "--heartbeat-timeout", "2s")
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = first.Process.Wait()
	t.Logf("worker killed with %d of 20000 committed and %d batches running", before.Committed, before.Running)
	te.startChildWorker()
	te.assertFinished(tc, id, 20_000, 90*time.Second)
}

func TestEmulateSurvivesABrokerOutage(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	startKafka := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir))
		if err != nil {
			t.Fatalf("start Kafka on port %d: %v", port, err)
		}
		return c
	}
	kafka := startKafka()
	te := newTestEnv(t, kafka.ListenAddrs())
	te.startWorker()
	id := te.id("it-outage")
	tc, before := te.startMidRun(id, "--heartbeat-timeout", "5s")
	// The broker goes away with transactions open, and comes back with
	// what it had stored.
	kafka.Close()
	t.Logf("broker stopped with %d of 20000 committed and %d batches running", before.Committed, before.Running)
	time.Sleep(3 * time.Second)
	kafka = startKafka()
	defer kafka.Close()
	te.assertFinished(tc, id, 20_000, 2*time.Minute)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestEmulateCancel(t *testing.T) {
	te := newTestEnv(t, nil)
	te.startWorker()
	ctx := context.Background()
	id := te.id("it-cancel")
	code, out, errOut := te.shopstream(ctx, "emulate", "--count", "1M", "--batch-size", "1000", "--rate", "2000", "--id", id, "--detach")
	if code != 0 {
		t.Fatalf("emulate exited %d\n%s\n%s", code, out, errOut)
	}
	tc := te.temporal()
	waitFor(t, 30*time.Second, "a batch committed", func() bool {
		p, err := emulation.QueryProgress(ctx, tc, id)
		return err == nil && p.Committed >= 1000
	})
	code, out, errOut = te.shopstream(ctx, "emulate", "cancel", id)
	if code != 0 || !strings.Contains(out, id+" canceled") {
		t.Fatalf("emulate cancel exited %d\n%s\n%s", code, out, errOut)
	}
	var committed int64
	if _, err := fmt.Sscanf(out[strings.LastIndex(out, "emulate: ")+len("emulate: "):], "%d of 1000000 products committed", &committed); err != nil {
		t.Fatalf("cancel output does not say what was committed: %v\n%s", err, out)
	}
	if committed < 1000 || committed%1000 != 0 {
		t.Fatalf("%d committed: want whole batches of 1000", committed)
	}
	// Nothing of the batches that were running when the cancel came is
	// visible: the topic holds exactly the whole batches.
	te.assertExactly(int(committed))
	recordHistory(t, te, id, "emulate_shop_canceled.json")
}

func TestEmulateRejectsBadInput(t *testing.T) {
	// Nothing listens on these addresses: a command that tried to connect
	// would say it cannot reach them, and exit 1.
	for i, args := range [][]string{
		{"emulate", "--count", "0"},
		{"emulate", "--count", "-5"},
		{"emulate", "--count", "many"},
		{"emulate"},
		{"emulate", "--count", "10", "--rate", "-1"},
		{"emulate", "--count", "10", "--batch-size", "-1"},
		{"emulate", "--count", "10", "--shops", "0"},
		{"emulate", "--count", "10", "--every", "1ms"},
		{"emulate", "--count", "10", "--image-base-url", "not a url"},
		{"emulate", "--count", "100k", "--batch-size", "100000", "--rate", "1"},
		{"emulate", "status"},
		{"emulate", "cancel", "a", "b"},
	} {
		var out, errOut bytes.Buffer
		full := append([]string{"shopstream"}, args...)
		full = append(full, "--kafka-brokers", "127.0.0.1:1", "--temporal-address", "127.0.0.1:1", "--dial-timeout", "200ms")
		code := run(context.Background(), full, strings.NewReader(""), &out, &errOut)
		if code != 2 || strings.Contains(errOut.String(), "cannot reach") || strings.Contains(out.String(), "started") {
			t.Errorf("#%d %v: exit %d, want 2 with nothing started\nstdout: %s\nstderr: %s", i, args, code, out.String(), errOut.String())
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("no %s within %s", what, d)
}

// recordHistory saves the run's history for the workflows package's replay
// test when SHOPSTREAM_RECORD_HISTORY names a directory
// (SHOPSTREAM_RECORD_HISTORY=$PWD/workflows/testdata).
func recordHistory(t testing.TB, te *testEnv, id, name string) {
	if dir := os.Getenv("SHOPSTREAM_RECORD_HISTORY"); dir != "" {
		writeHistory(t, te.stack.TemporalAddress, id, "", filepath.Join(dir, name))
	}
}

// writeHistory records a workflow's history as `temporal workflow show`
// prints it, for the replay tests in workflows/testdata (an empty runID: the
// latest run).
func writeHistory(t testing.TB, address, workflowID, runID, path string) {
	t.Helper()
	cliPath, err := environment.FindTemporalCLI("")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"workflow", "show", "-w", workflowID, "--output", "json", "--address", address}
	if runID != "" {
		args = append(args, "-r", runID)
	}
	out, err := exec.Command(cliPath, args...).Output()
	if err != nil {
		t.Fatalf("temporal workflow show: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("history of %s written to %s", workflowID, path)
}

type quietSDKLogger struct{}

func (quietSDKLogger) Debug(string, ...any) {}
func (quietSDKLogger) Info(string, ...any)  {}
func (quietSDKLogger) Warn(string, ...any)  {}
func (quietSDKLogger) Error(string, ...any) {}
