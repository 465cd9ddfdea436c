package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/freshness"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// opsStack is `shopstream dev` on an embedded stack, with the address of
// dev's /metrics.
type opsStack struct {
	*filterStack
	metrics string
	tc      client.Client
}

func startOpsStack(t *testing.T) *opsStack {
	t.Helper()
	f := startFilterStack(t)
	m := regexp.MustCompile(`Metrics\s+(http://\S+/metrics)`).FindStringSubmatch(f.devOut())
	if m == nil {
		t.Fatalf("dev does not say where its /metrics are:\n%s", f.devOut())
	}
	o := &opsStack{filterStack: f, metrics: m[1]}
	var err error
	if o.tc, err = client.Dial(client.Options{HostPort: f.stack.TemporalAddress, Logger: quietSDKLogger{}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.tc.Close)
	// dev's streamer reports once the bootstrap has created its topics.
	for deadline := time.Now().Add(30 * time.Second); strings.Contains(o.cmd(t, 0, "filter", "get"), "none reporting"); {
		if time.Now().After(deadline) {
			t.Fatal("no streamer instance reports after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return o
}

// childWorker runs `shopstream worker` on taskQueue as a process of its own,
// so that the test can kill it as a machine dies.
func (o *opsStack) childWorker(t *testing.T, taskQueue string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childWorkerEnv+"=1",
		"KAFKA_BROKERS="+strings.Join(o.stack.KafkaBrokers, ","), "SCHEMA_REGISTRY_URL="+o.stack.RegistryURL,
		"TEMPORAL_ADDRESS="+o.stack.TemporalAddress, "TEMPORAL_TASK_QUEUE="+taskQueue, "METRICS_ADDR=")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("worker %d output:\n%s", cmd.Process.Pid, log.String())
		}
	})
	return cmd
}

// topic reads a topic as a read_committed consumer.
func (o *opsStack) topic(t *testing.T, name string) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	if err := topicread.Read(context.Background(), o.kafka, name, topicread.Options{}, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// phones are the keys of the product topic's products whose name contains
// "phone", each product's newest record deciding.
func (o *opsStack) phones(t *testing.T) map[string]bool {
	t.Helper()
	m := streamer.NewMatcher("phone", false)
	out := map[string]bool{}
	for _, r := range o.topic(t, "shop_products") {
		var p records.Product
		if err := o.serde.Decode(context.Background(), r.Value, &p); err != nil {
			continue
		}
		out[string(r.Key)] = m.Match([]byte(p.Name))
	}
	for k, phone := range out {
		if !phone {
			delete(out, k)
		}
	}
	return out
}

func (o *opsStack) waitBackfill(t *testing.T, timeout time.Duration) workflows.BackfillResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var res workflows.BackfillResult
	if err := o.tc.GetWorkflow(ctx, workflows.BackfillWorkflowID, "").Get(ctx, &res); err != nil {
		t.Fatalf("backfill: %v", err)
	}
	return res
}

// Products published under filter "laptop" reach the filtered topic after
// `filter set phone` and a backfill: every phone exactly once, although the
// worker running the backfill is killed mid-range and a second backfill is
// requested while the first runs.
func TestBackfillEndToEnd(t *testing.T) {
	o := startOpsStack(t)
	o.cmd(t, 0, "filter", "set", "laptop", "--wait")
	o.cmd(t, 0, "emulate", "--count", "120000", "--seed", "3")
	o.cmd(t, 0, "filter", "set", "phone", "--wait")

	// The backfill runs on a task queue of its own, served first by a
	// worker process that dies mid-range.
	const tq = "backfill-e2e"
	victim := o.childWorker(t, tq)
	out := o.cmd(t, 0, "filter", "backfill", "--detach", "--task-queue", tq, "--range-records", "10000", "--heartbeat-timeout", "2s", "--concurrency", "2")
	if !strings.Contains(out, "started workflow "+workflows.BackfillWorkflowID) || !strings.Contains(out, "detached") {
		t.Fatalf("filter backfill --detach:\n%s", out)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		p, err := queryBackfill(o.tc)
		if err == nil && p.RangesDone >= 1 && p.Running >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no range ran within 2 minutes: %+v, %v", p, err)
		}
	}
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	out = o.cmd(t, 0, "filter", "backfill", "--detach", "--task-queue", tq)
	if !strings.Contains(out, "one is running already") {
		t.Fatalf("a second request while one runs:\n%s", out)
	}
	o.childWorker(t, tq)
	res := o.waitBackfill(t, 3*time.Minute)
	recordOpsHistory(t, o, workflows.BackfillWorkflowID, "backfill.json")

	phones := o.phones(t)
	count := map[string]int{}
	backfilled := 0
	for _, r := range o.topic(t, "analytic_products_filtered") {
		count[string(r.Key)]++
		if streamer.Backfilled(r.Headers) {
			backfilled++
			if v, _ := streamer.FilterVersion(r.Headers); v != 2 {
				t.Errorf("%s backfilled with filter v%d, want v2", r.Key, v)
			}
		}
	}
	for k := range phones {
		if count[k] != 1 {
			t.Errorf("phone %s is %d times in the filtered topic, want once", k, count[k])
		}
	}
	// Phones the streamer had not read yet when the filter changed, it
	// forwarded with the new filter: the backfill found them there.
	if len(phones) < 1000 || int64(backfilled) != res.Counts.Forwarded || res.Counts.Forwarded+res.Counts.Present != int64(len(phones)) || res.Counts.Read != 120_000 {
		t.Errorf("%d phones, %d backfilled records, result %+v: want every phone backfilled or already there", len(phones), backfilled, res)
	}
	ranges := 0
	for _, p := range res.Partitions {
		ranges += int((p.End - p.Start + 9999) / 10000)
	}
	if res.Ranges != ranges || ranges < 12 {
		t.Errorf("%d ranges, want %d (ranges of 10000 over 6 partitions of about 20000)", res.Ranges, ranges)
	}
	out = o.cmd(t, 0, "filter", "backfill", "status")
	if !strings.Contains(out, "is completed") || !strings.Contains(out, fmt.Sprintf("done: %d products written", res.Counts.Forwarded)) {
		t.Errorf("filter backfill status:\n%s", out)
	}
	// A backfill of the same filter again finds nothing missing.
	out = o.cmd(t, 0, "filter", "set", "phone", "--backfill", "all")
	if !strings.Contains(out, "done: 0 products written") || !strings.Contains(out, fmt.Sprintf("%d already there", len(phones))) {
		t.Errorf("a second backfill:\n%s", out)
	}
}

func queryBackfill(tc client.Client) (workflows.BackfillProgress, error) {
	var p workflows.BackfillProgress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := tc.QueryWorkflow(ctx, workflows.BackfillWorkflowID, "", workflows.QueryBackfillProgress)
	if err == nil {
		err = v.Get(&p)
	}
	return p, err
}

// Records dead-lettered for a schema the registry does not know replay
// cleanly once it does: --dry-run lists them, the replay sends each back
// once although its worker is killed in the middle, the streamer forwards
// each once, and a second replay sends nothing.
func TestReplayEndToEnd(t *testing.T) {
	o := startOpsStack(t)
	ctx := context.Background()
	const n = 200
	// A shop publishes with a newer schema (a field more) before anyone
	// registered it: the id it will get is the registry's next.
	ours := o.serde.Schemas().Schema(records.KindProduct).String()
	newer := strings.TrimSuffix(ours, "]}") + `,{"name":"warehouse","type":"string","default":""}]}`
	if _, err := o.serde.SchemaID(ctx, "shop_products", records.KindProduct); err != nil {
		t.Fatal(err)
	}
	next := 0
	for id := 1; id < 100; id++ {
		if _, err := o.serde.Registry().SchemaByID(ctx, id); err != nil {
			next = id
			break
		}
	}
	keys := map[string]bool{}
	for i := range n {
		now := time.Now()
		p := records.Product{ProductID: fmt.Sprintf("late-%03d", i), MallID: "m1", Name: "Galaxy Phone",
			Price: records.Price{Amount: "1", Currency: "EUR"}, CreatedAt: now, UpdatedAt: now}
		body, err := o.serde.Encode(ctx, nil, "shop_products", &p)
		if err != nil {
			t.Fatal(err)
		}
		// The same body plus the new field (an empty string is one zero
		// byte), framed with the id the newer schema will get.
		v := append([]byte{0, byte(next >> 24), byte(next >> 16), byte(next >> 8), byte(next)}, body[5:]...)
		v = append(v, 0)
		k := p.Key()
		keys[k] = true
		if err := o.cl.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Key: []byte(k), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// The streamer, the sink and the collector all read the product topic:
	// each dead-letters every record.
	for deadline := time.Now().Add(60 * time.Second); len(o.topic(t, "shop_products_dlq")) < 3*n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters of the %d records, want 3 each", len(o.topic(t, "shop_products_dlq")), n)
		}
	}
	out := o.cmd(t, 0, "dlq", "replay", "--dry-run", "--reason", deadletter.ReasonUnknownSchemaID)
	if !strings.Contains(out, fmt.Sprintf("would send %d of %d dead letter(s) back", n, 3*n)) || !strings.Contains(out, "m1/late-007") ||
		!strings.Contains(out, fmt.Sprintf("%d same record as another letter", 2*n)) {
		t.Fatalf("dlq replay --dry-run:\n%s", out)
	}
	got, err := o.serde.Registry().CreateSchema(ctx, "shop_products_v2-value", sr.Schema{Schema: newer, Type: sr.TypeAvro})
	if err != nil || got.ID != next {
		t.Fatalf("register the newer schema: id %d, %v; want %d", got.ID, err, next)
	}

	const tq = "replay-e2e"
	victim := o.childWorker(t, tq)
	// A range per letter: the run lasts long enough to be killed in.
	out = o.cmd(t, 0, "dlq", "replay", "--detach", "--task-queue", tq, "--range-letters", "2", "--heartbeat-timeout", "2s")
	if !strings.Contains(out, "started workflow "+workflows.ReplayWorkflowID) {
		t.Fatalf("dlq replay --detach:\n%s", out)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		var p workflows.ReplayProgress
		v, err := o.tc.QueryWorkflow(ctx, workflows.ReplayWorkflowID, "", workflows.QueryReplayProgress)
		if err == nil && v.Get(&p) == nil && p.RangesDone >= 3 {
			if p.RangesDone == p.Ranges {
				t.Fatalf("the replay finished before its worker could be killed: %+v", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replay did not start within a minute")
		}
	}
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if out := o.cmd(t, 1, "dlq", "replay", "--detach", "--task-queue", tq); !strings.Contains(out, "replay is running") {
		t.Errorf("a second replay while one runs:\n%s", out)
	}
	o.childWorker(t, tq)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var res workflows.ReplayResult
	if err := o.tc.GetWorkflow(wctx, workflows.ReplayWorkflowID, "").Get(wctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Replayed != n {
		t.Errorf("replay result %+v, want %d sent back", res, n)
	}
	recordOpsHistory(t, o, workflows.ReplayWorkflowID, "dlq_replay.json")
	back := map[string]int{}
	for _, r := range o.topic(t, "shop_products") {
		if keys[string(r.Key)] {
			back[string(r.Key)]++
		}
	}
	for k := range keys {
		if back[k] != 2 { // the original and its replay
			t.Errorf("%s is %d times in shop_products, want the original and one replay", k, back[k])
		}
	}
	filtered := map[string]int{}
	for deadline := time.Now().Add(30 * time.Second); len(filtered) < n; time.Sleep(100 * time.Millisecond) {
		filtered = map[string]int{}
		for _, r := range o.topic(t, "analytic_products_filtered") {
			if keys[string(r.Key)] {
				filtered[string(r.Key)]++
			}
		}
		if time.Now().After(deadline) {
			break
		}
	}
	for k := range keys {
		if filtered[k] != 1 {
			t.Errorf("%s forwarded %d times, want once", k, filtered[k])
		}
	}
	time.Sleep(2 * time.Second) // a sink or collector that failed again would have said so by now
	if d := len(o.topic(t, "shop_products_dlq")); d != 3*n {
		t.Errorf("the dead-letter topic holds %d letters, want the %d first ones only", d, 3*n)
	}
	out = o.cmd(t, 0, "dlq", "replay")
	if !strings.Contains(out, "done: 0 dead letter(s) sent back") || !strings.Contains(out, fmt.Sprintf("%d replayed already", 3*n)) {
		t.Errorf("a second replay:\n%s", out)
	}
}

// After a known run the freshness histograms hold one observation per
// product per stage it reached, and one per search; status shows them.
func TestFreshnessAfterAKnownRun(t *testing.T) {
	o := startOpsStack(t)
	o.cmd(t, 0, "filter", "set", "phone", "--wait")
	keys := o.produce(t, "f", 60) // 20 of them phones (Galaxy Phone, smartphone case)
	o.filtered(t, keys, 20)
	for i := range 3 {
		// The query last: flags after it would be read as words of it.
		args := append(append([]string{"search", "--user", fmt.Sprintf("u%d", i), "--wait"}, o.flags...), "Galaxy Phone")
		if code, out, errOut := shopstream(context.Background(), args...); code != 0 {
			t.Fatalf("search: exit %d\n%s\n%s", code, out, errOut)
		}
	}
	want := map[string]uint64{"filtered": 20, "recommended": 20, "stored": 60, "complete": 60, "prompted": 3}
	var reports []freshness.Report
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var errs []error
		reports, errs = freshness.Scrape(context.Background(), http.DefaultClient, []string{o.metrics})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		done := true
		for _, r := range reports {
			done = done && r.Count >= want[r.Key]
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	for _, r := range reports {
		if r.Count != want[r.Key] || r.P99 <= 0 || r.P99 > 60 {
			t.Errorf("stage %s: %d observations, p99 %gs; want %d", r.Key, r.Count, r.P99, want[r.Key])
		}
	}
	// Exit 1 would only say that something else is unhealthy (a lag still
	// draining); the freshness section is there either way.
	_, out, _ := shopstream(context.Background(), append([]string{"status", "--metrics-url", o.metrics, "--json"}, o.flags...)...)
	var st struct {
		Sections struct {
			Freshness struct {
				Stages []freshness.Report `json:"stages"`
			} `json:"freshness"`
		} `json:"sections"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st.Sections.Freshness.Stages) != 5 || st.Sections.Freshness.Stages[0].Count != 20 {
		t.Errorf("status --json freshness: %+v", st.Sections.Freshness)
	}
	out = o.cmd(t, 0, "recs", "--user", "u0", "--json")
	var rec struct {
		Products []struct {
			AgeSeconds *float64 `json:"age_seconds"`
		} `json:"products"`
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil || len(rec.Products) == 0 || rec.Products[0].AgeSeconds == nil {
		t.Errorf("recs --json gives no ages: %v\n%s", err, out)
	}
}

// recordOpsHistory saves the run's history for the workflows package's
// replay test when SHOPSTREAM_RECORD_HISTORY names a directory.
func recordOpsHistory(t *testing.T, o *opsStack, id, name string) {
	if dir := os.Getenv("SHOPSTREAM_RECORD_HISTORY"); dir != "" {
		writeHistory(t, o.stack.TemporalAddress, id, "", filepath.Join(dir, name))
	}
}
