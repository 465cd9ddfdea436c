package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/urfave/cli/v2"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// shopstream runs the binary's entry point as a user would and returns the
// exit code, standard output and standard error.
func shopstream(ctx context.Context, args ...string) (int, string, string) {
	// urfave/cli would os.Exit on an exit-coded error; run() reports it.
	cli.OsExiter = func(int) {}
	cli.ErrWriter = io.Discard
	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"shopstream"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// filterStack is the embedded stack with `shopstream dev` running against
// it: the worker, the streamer, and the bootstrapped topics.
type filterStack struct {
	stack *environment.Stack
	flags []string
	kafka *clients.Kafka
	cl    *kgo.Client
	serde *records.Serde
	// devOut is what dev printed so far.
	devOut func() string
}

func startFilterStack(t testing.TB) *filterStack {
	t.Helper()
	stack, flags := startStack(t)
	f := &filterStack{stack: stack, flags: flags}
	var err error
	if f.kafka, err = clients.NewKafka(clients.KafkaOptions{Brokers: stack.KafkaBrokers}); err != nil {
		t.Fatal(err)
	}
	if f.cl, err = f.kafka.NewClient(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.cl.Close)
	reg, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := records.ParseSchemas()
	if err != nil {
		t.Fatal(err)
	}
	f.serde = records.NewSerde(schemas, reg)
	f.devOut = startDev(t, flags)
	return f
}

func (f *filterStack) cmd(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	code, out, errOut := shopstream(context.Background(), append(args, f.flags...)...)
	if code != wantCode {
		t.Fatalf("shopstream %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out, errOut)
	}
	return out + errOut
}

var e2eNames = []string{"Galaxy Phone", "Laptop Pro", "smartphone case", "TV 55", "Tv stand", "Телефон"}

// produce writes n products (names cycling through e2eNames) and returns
// their keys by name.
func (f *filterStack) produce(t *testing.T, tag string, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	names := map[string]string{}
	for i := range n {
		now := time.Now()
		p := records.Product{ProductID: fmt.Sprintf("%s-%d", tag, i), MallID: "m1", Name: e2eNames[i%len(e2eNames)],
			Price: records.Price{Amount: "1", Currency: "EUR"}, CreatedAt: now, UpdatedAt: now}
		v, err := f.serde.Encode(ctx, nil, "shop_products", &p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.cl.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Key: []byte(p.Key()), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		names[p.Key()] = p.Name
	}
	return names
}

// filtered returns the filtered topic's records whose key is in keys, once
// want of them are there.
func (f *filterStack) filtered(t *testing.T, keys map[string]string, want int) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []*kgo.Record
		err := topicread.Read(context.Background(), f.kafka, "analytic_products_filtered", topicread.Options{},
			func(r *kgo.Record) error {
				if _, ok := keys[string(r.Key)]; ok {
					got = append(got, r)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				t.Fatalf("%d of the products in the filtered topic, want %d", len(got), want)
			}
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestFilterEndToEnd(t *testing.T) {
	f := startFilterStack(t)
	ctx := context.Background()
	tc, err := client.Dial(client.Options{HostPort: f.stack.TemporalAddress})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	// Started ahead of the CLI with a small run size, so this test sees a
	// continue-as-new happen between two CLI changes.
	first, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.StreamFilterWorkflowID, TaskQueue: "shopstream"},
		workflows.StreamFilter, workflows.StreamFilterInput{MaxChangesPerRun: 3})
	if err != nil {
		t.Fatal(err)
	}

	// dev's streamer starts once the bootstrap has created its topics.
	out := f.cmd(t, 0, "filter", "get")
	for deadline := time.Now().Add(30 * time.Second); strings.Contains(out, "none reporting"); out = f.cmd(t, 0, "filter", "get") {
		if time.Now().After(deadline) {
			t.Fatalf("no streamer instance reports after 30s:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "desired:   v0: everything passes") || !strings.Contains(out, "applied") {
		t.Fatalf("filter get before any change:\n%s", out)
	}

	out = f.cmd(t, 0, "filter", "set", "phone", "--wait", "--by", "ana")
	if !strings.Contains(out, `v1: name contains "phone" (case-insensitive) published`) || !strings.Contains(out, "applied by 1 live instance") {
		t.Fatalf("filter set --wait:\n%s", out)
	}
	keys := f.produce(t, "a", 12)
	for _, r := range f.filtered(t, keys, 4) { // Galaxy Phone and smartphone case, twice each
		v, _ := streamer.FilterVersion(r.Headers)
		if name := keys[string(r.Key)]; v != 1 || !strings.Contains(strings.ToLower(name), "phone") {
			t.Errorf("%q passed under v%d", name, v)
		}
	}

	f.cmd(t, 0, "filter", "set", "TV", "--case-sensitive", "--wait", "--by", "cy")
	f.cmd(t, 0, "filter", "clear", "--by", "ana", "--wait") // the third change: the run continues as new
	out = f.cmd(t, 0, "filter", "set", "Laptop", "--wait", "--by", "bo")
	if !strings.Contains(out, "v4: name contains \"Laptop\"") {
		t.Fatalf("the first change after continue-as-new:\n%s", out)
	}
	var got struct {
		Desired   workflows.FilterState
		Published int64 `json:"published_version"`
		Instances []struct {
			Version int64
			Live    bool
			State   string
		}
		Recent []workflows.FilterChange
	}
	if err := json.Unmarshal([]byte(f.cmd(t, 0, "filter", "get", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.Desired.Version != 4 || got.Desired.Substring != "Laptop" || got.Desired.SetBy != "bo" || got.Published != 4 || len(got.Recent) != 4 {
		t.Fatalf("filter get --json: %+v", got)
	}
	if len(got.Instances) != 1 || got.Instances[0].Version != 4 || !got.Instances[0].Live || got.Instances[0].State != "applied" {
		t.Fatalf("instances: desired = applied expected: %+v", got.Instances)
	}

	// A second instance, as its own command: it shares the partitions,
	// reports itself, and counts for --wait.
	sctx, stopSecond := context.WithCancel(ctx)
	var secondOut syncBuffer
	secondDone := make(chan int, 1)
	go func() {
		secondDone <- run(sctx, append([]string{"shopstream", "streamer", "--instance-id", "second"}, f.flags...), strings.NewReader(""), &secondOut, io.Discard)
	}()
	metricsURL := ""
	for deadline := time.Now().Add(30 * time.Second); metricsURL == ""; {
		if _, rest, ok := strings.Cut(secondOut.String(), "/metrics on "); ok {
			metricsURL = strings.TrimSpace(rest)
		} else if time.Now().After(deadline) {
			t.Fatalf("shopstream streamer did not start:\n%s", secondOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(f.cmd(t, 0, "filter", "get"), "second"); {
		if time.Now().After(deadline) {
			t.Fatal("the second instance does not report itself")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out = f.cmd(t, 0, "filter", "clear", "--wait", "--by", "bo")
	if !strings.Contains(out, "applied by 2 live instance(s)") {
		t.Fatalf("filter clear --wait with two instances:\n%s", out)
	}
	keys = f.produce(t, "b", 12)
	for _, r := range f.filtered(t, keys, 12) {
		if v, _ := streamer.FilterVersion(r.Headers); v != 5 {
			t.Errorf("%s passed under v%d after the clear (v5)", r.Key, v)
		}
	}

	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"shopstream_streamer_records_in_total", "shopstream_streamer_transactions_committed_total",
		"shopstream_streamer_product_freshness_seconds_bucket", `shopstream_streamer_filter_applied_version 5`, "shopstream_streamer_kafka_produce_bytes_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the second instance's /metrics lacks %s", want)
		}
	}
	stopSecond()
	select {
	case code := <-secondDone:
		if code != 0 {
			t.Errorf("shopstream streamer exited %d on SIGTERM:\n%s", code, secondOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shopstream streamer did not stop within 10s")
	}
	if out := f.cmd(t, 0, "filter", "get"); strings.Contains(out, "second") {
		t.Errorf("a stopped instance is still listed:\n%s", out)
	}

	// Bad input: exit 2, nothing sent.
	for _, args := range [][]string{
		{"filter", "set"},
		{"filter", "set", ""},
		{"filter", "set", strings.Repeat("x", workflows.MaxFilterSubstringRunes+1)},
		{"filter", "set", "a", "b"},
		{"dlq", "list", "--limit", "-1"},
	} {
		f.cmd(t, 2, args...)
	}

	if err := f.cl.ProduceSync(ctx, &kgo.Record{Topic: "shop_products", Key: []byte("junk"), Value: []byte(`{"name":"phone"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for out = f.cmd(t, 0, "dlq", "list"); !strings.Contains(out, "not-framed"); out = f.cmd(t, 0, "dlq", "list") {
		if time.Now().After(deadline) {
			t.Fatalf("dlq list does not show the junk record:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, `"junk"`) || !strings.Contains(out, "shop_products/") {
		t.Fatalf("dlq list:\n%s", out)
	}

	// The first run's history holds every change it made, as the Web UI shows it.
	desc, err := tc.DescribeWorkflowExecution(ctx, workflows.StreamFilterWorkflowID, first.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	if s := desc.GetWorkflowExecutionInfo().GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
		t.Fatalf("the first run is %s, want continued-as-new", s)
	}
	signals := 0
	it := tc.GetWorkflowHistory(ctx, workflows.StreamFilterWorkflowID, first.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			signals++
		}
	}
	if signals != 3 {
		t.Errorf("the first run's history has %d signals, want 3", signals)
	}

	if dir := os.Getenv("SHOPSTREAM_RECORD_HISTORY"); dir != "" {
		cur, err := tc.DescribeWorkflowExecution(ctx, workflows.StreamFilterWorkflowID, "")
		if err != nil {
			t.Fatal(err)
		}
		writeHistory(t, f.stack.TemporalAddress, workflows.StreamFilterWorkflowID, first.GetRunID(), filepath.Join(dir, "stream_filter_continued.json"))
		writeHistory(t, f.stack.TemporalAddress, workflows.StreamFilterWorkflowID, cur.GetWorkflowExecutionInfo().GetExecution().GetRunId(), filepath.Join(dir, "stream_filter_running.json"))
	}
}

// recordHistory writes a run's history as `temporal workflow show --output
// json` prints it, for workflows' replay test.
