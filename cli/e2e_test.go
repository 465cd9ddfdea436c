package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/status"
)

// startStack runs the embedded stack on free ports, with the real Temporal
// dev server, and returns the flags that point commands at it.
func startStack(t testing.TB) (*environment.Stack, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stack, err := environment.Start(ctx, environment.Options{StartKafka: true, StartRegistry: true, StartTemporal: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	flags := []string{
		"--kafka-brokers", strings.Join(stack.KafkaBrokers, ","),
		"--schema-registry-url", stack.RegistryURL,
		"--temporal-address", stack.TemporalAddress,
		"--temporal-ui-url", stack.TemporalUIURL,
		"--metrics-addr", "127.0.0.1:0",
		"--data-dir", devDataDir(t),
	}
	return stack, flags
}

// startDev runs `shopstream dev` against the stack until the test ends and
// waits for its ready line.
func startDev(t testing.TB, flags []string) (output func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"shopstream", "dev"}, flags...), strings.NewReader(""), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		start := time.Now()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("dev exited %d after Ctrl-C:\n%s\n%s", code, out.String(), errOut.String())
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("dev took %s to stop, want under 10s", took)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("dev did not stop within 15s of Ctrl-C")
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "shopstream dev: ready") {
		select {
		case code := <-done:
			done <- code // for the cleanup, which waits for the exit
			t.Fatalf("dev exited %d before it was ready:\n%s\n%s", code, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev not ready after 2 minutes:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out.String
}

func TestBootstrapEndToEnd(t *testing.T) {
	stack, flags := startStack(t)
	devOut := startDev(t, flags)
	// dev bootstraps the fresh stack once it is up.
	for _, want := range []string{"shop_products", "created", "shopstream_filter-value", "skipped: KAFKA_CONNECT_URL not set", "/namespaces/default/workflows/shopstream-bootstrap/", "the environment was changed"} {
		if !strings.Contains(devOut(), want) {
			t.Errorf("dev's first bootstrap output does not show %q:\n%s", want, devOut())
		}
	}

	ctx := context.Background()
	code, out, stderr := runApp(t, ctx, append([]string{"bootstrap"}, flags...)...)
	if code != 0 {
		t.Fatalf("second bootstrap exited %d: %s\n%s", code, stderr, out)
	}
	if !strings.Contains(out, "nothing changed") || strings.Contains(out, " created ") {
		t.Fatalf("second bootstrap changed something:\n%s", out)
	}

	// A changed partition count is drift: reported, not applied.
	code, out, stderr = runApp(t, ctx, append([]string{"bootstrap", "--only", "topics", "--partitions", "9"}, flags...)...)
	if code != 0 {
		t.Fatalf("bootstrap --only topics exited %d: %s\n%s", code, stderr, out)
	}
	if !strings.Contains(out, "drift") || !strings.Contains(out, "has 6 partitions, want 9") || strings.Contains(out, "schemas") {
		t.Fatalf("want drift on topics only:\n%s", out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, "shop_products")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["shop_products"].Partitions); n != 6 {
		t.Fatalf("drift without --force changed shop_products to %d partitions", n)
	}

	// status: healthy (once dev's streamer has reported its filter), every
	// topic, the bootstrap run with its link.
	var rep status.Report
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, out, stderr = runApp(t, ctx, append([]string{"status", "--json", "--interval", "200ms"}, flags...)...)
		rep = status.Report{}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status --json: %v\n%s\n%s", err, out, stderr)
		}
		if code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("status exited %d on a healthy stack: %s\n%s", code, stderr, out)
	}
	if f, ok := rep.Sections["filter"].(map[string]any); !ok || len(f["instances"].([]any)) == 0 {
		t.Errorf("status shows no filter versions of dev's streamer: %v", rep.Sections["filter"])
	}
	if _, ok := rep.Sections["sink"]; !ok && strings.Contains(devOut(), "PostgreSQL") && !strings.Contains(devOut(), "without the sink") {
		t.Errorf("dev runs a sink but status shows no sink section: %v", rep.Sections)
	}
	if !rep.Healthy || len(rep.Topics) != 8 {
		t.Fatalf("status: healthy %v, %d topics, problems %v", rep.Healthy, len(rep.Topics), rep.Problems)
	}
	if len(rep.Runs) == 0 || rep.Runs[0].Workflow != "Bootstrap" || rep.Runs[0].Status != "Completed" || !strings.Contains(rep.Runs[0].URL, "/workflows/shopstream-bootstrap/") {
		t.Fatalf("status does not show the completed bootstrap run: %+v", rep.Runs)
	}

	// A group that has lag and no members is unhealthy: exit 1, and it says why.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := kadmCommit(ctx, cl, "stalled-group", "shop_products"); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runApp(t, ctx, append([]string{"status", "--interval", "200ms"}, flags...)...)
	if code != 1 || !strings.Contains(out, "group stalled-group has lag 1 and no members") {
		t.Fatalf("status with a stalled group: exit %d\n%s", code, out)
	}
	// A member that lags and commits nothing is stuck; one that commits as
	// it goes is healthy however its lag moves.
	// Committed before the member joins: the coordinator refuses an admin
	// commit to a group with live members.
	if err := kadmCommit(ctx, cl, "stuck-group", "shop_products"); err != nil {
		t.Fatal(err)
	}
	stuck, err := kgo.NewClient(kgo.SeedBrokers(stack.KafkaBrokers...), kgo.ConsumerGroup("stuck-group"),
		kgo.ConsumeTopics("shop_products"), kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Key: []byte(fmt.Sprint(i)), Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	stuck.PollFetches(pctx) // joins the group, reads, commits nothing
	pcancel()
	code, out, _ = runApp(t, ctx, append([]string{"status", "--interval", "300ms"}, flags...)...)
	if code != 1 || !strings.Contains(out, "group stuck-group is stuck: lag") {
		t.Fatalf("status with a stuck member: exit %d\n%s", code, out)
	}
	checkDrainedLagAgrees(t, flags, devOut())
}

// checkDrainedLagAgrees emulates products through dev's exactly-once
// consumers (the streamer and the image collector), waits until status
// says they drained, and checks that the lag gauge on dev's /metrics, which
// an autoscaler reads, says the same: 0, although the transaction markers
// after their committed offsets make the raw offset lag positive.
func checkDrainedLagAgrees(t *testing.T, flags []string, devOut string) {
	t.Helper()
	ctx := context.Background()
	m := regexp.MustCompile(`Metrics\s+http://(\S+)/metrics`).FindStringSubmatch(devOut)
	if m == nil {
		t.Fatalf("dev does not say where its /metrics is:\n%s", devOut)
	}
	if code, out, stderr := runApp(t, ctx, append([]string{"emulate", "--count", "600", "--batch-size", "100"}, flags...)...); code != 0 {
		t.Fatalf("emulate exited %d: %s\n%s", code, stderr, out)
	}
	exactlyOnce := []string{"shopstream-streamer", "shopstream-collector"}
	if strings.Contains(devOut, "PostgreSQL is not installed") {
		exactlyOnce = exactlyOnce[:1] // the collector needs PostgreSQL
	}
	var lag map[string]status.Group
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		_, out, stderr := runApp(t, ctx, append([]string{"status", "--json", "--interval", "100ms"}, flags...)...)
		var rep status.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status --json: %v\n%s\n%s", err, out, stderr)
		}
		lag = map[string]status.Group{}
		drained := true
		for _, g := range rep.Groups {
			lag[g.Group] = g
		}
		for _, name := range exactlyOnce {
			g, ok := lag[name]
			drained = drained && ok && g.Lag == 0 && g.Topics["shop_products"] == 0
		}
		if drained {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exactly-once groups did not drain within a minute: %+v", rep.Groups)
		}
	}
	if g := lag["shopstream-streamer"]; g.Markers == 0 {
		t.Errorf("status counts no transaction markers after the streamer's committed offsets (%+v): the check proves nothing", g)
	}
	gauge := scrapeLag(t, "http://"+m[1]+"/metrics")
	for _, name := range exactlyOnce {
		got, ok := gauge[name]
		if !ok || got != lag[name].Lag {
			t.Errorf("group %s: shopstream_kafka_consumer_lag_records sums to %v (present %v), status --json says lag %d (markers %d)", name, got, ok, lag[name].Lag, lag[name].Markers)
		}
	}
}

// scrapeLag reads shopstream_kafka_consumer_lag_records from a /metrics
// page and adds it up per group.
func scrapeLag(t *testing.T, url string) map[string]int64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^shopstream_kafka_consumer_lag_records\{([^}]*)\} (\S+)$`)
	group := regexp.MustCompile(`group="([^"]*)"`)
	out := map[string]int64{}
	for _, m := range line.FindAllStringSubmatch(string(body), -1) {
		g := group.FindStringSubmatch(m[1])
		v, err := strconv.ParseFloat(m[2], 64)
		if g == nil || err != nil {
			t.Fatalf("cannot read %q", m[0])
		}
		out[g[1]] += int64(v)
	}
	return out
}

// kadmCommit commits offset 0 of every partition of topic for group, as a
// consumer that stopped before reading anything would have.
func kadmCommit(ctx context.Context, cl *kgo.Client, group, topic string) error {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	var offsets kadm.Offsets
	ends.Each(func(o kadm.ListedOffset) {
		offsets.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: 0, LeaderEpoch: -1})
	})
	resp, err := adm.CommitOffsets(ctx, group, offsets)
	if err != nil {
		return err
	}
	return resp.Error()
}
