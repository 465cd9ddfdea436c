package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/streamer/recommender"
)

// searchStack is an embedded Kafka and registry with the default topics.
type searchStack struct {
	ctx   context.Context
	kc    *kafkatest.Cluster
	args  []string // connection flags
	topic records.Topics
	admin *kadm.Client
	serde *records.Serde
	kafka *kgo.Client
}

func newSearchStack(t *testing.T) *searchStack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kc := kafkatest.Start(t)
	s := &searchStack{ctx: ctx, kc: kc, topic: records.DefaultTopics(), serde: kc.Serde,
		args: []string{"--kafka-brokers", strings.Join(kc.Brokers, ","), "--schema-registry-url", kc.RegistryURL}}
	s.kafka = kc.Client()
	s.admin = kadm.NewClient(s.kafka)
	compact := "compact"
	for _, name := range []string{s.topic.Filtered, s.topic.Find, s.topic.Recommendations, s.topic.DLQ} {
		var cfg map[string]*string
		if name == s.topic.Filtered || name == s.topic.Recommendations {
			cfg = map[string]*string{"cleanup.policy": &compact}
		}
		if _, err := s.admin.CreateTopic(ctx, 3, 1, cfg, name); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// runAppIn runs shopstream as main does and returns the exit code and output.
func runAppIn(ctx context.Context, stdin string, args ...string) (int, string, string) {
	var out syncBuffer
	code, errOut := runAppTo(ctx, stdin, &out, args...)
	return code, out.String(), errOut
}

// runAppTo is runApp writing standard output to out as it goes.
func runAppTo(ctx context.Context, stdin string, out *syncBuffer, args ...string) (int, string) {
	var errb syncBuffer
	app := newApp(strings.NewReader(stdin), out, &errb)
	app.ExitErrHandler = func(*cli.Context, error) {} // main's run maps errors to exit codes
	err := app.RunContext(ctx, append([]string{"shopstream"}, args...))
	code := 0
	if err != nil {
		code = 1
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		errb.WriteString(err.Error())
	}
	return code, errb.String()
}

func (s *searchStack) run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	return runAppIn(ctx, stdin, s.withConn(args)...)
}

// withConn puts the connection flags after the command name: urfave stops
// reading flags at the first argument.
func (s *searchStack) withConn(args []string) []string {
	return append(append([]string{args[0]}, s.args...), args[1:]...)
}

func (s *searchStack) promptsWritten(t *testing.T) int64 {
	t.Helper()
	ends, err := s.admin.ListEndOffsets(s.ctx, s.topic.Find)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func TestSearchRefusesBadInput(t *testing.T) {
	s := newSearchStack(t)
	long := strings.Repeat("x", 1025)
	for i, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"search", "iPhone 15"}, "--user is empty"},
		{"", []string{"search", "--user", "  ", "iPhone 15"}, "--user is empty"},
		{"", []string{"search", "--user", strings.Repeat("u", 257), "iPhone 15"}, "--user is 257 bytes; at most 256"},
		{"", []string{"search", "--user", "alice", "   "}, "the prompt is empty"},
		{"", []string{"search", "--user", "alice", long}, "the prompt is 1025 bytes; at most 1024"},
		{"", []string{"search", "--user", "alice"}, "no prompt given"},
		{"iPhone 15\n\t\nPixel 8\n", []string{"search", "--user", "alice"}, "line 2: the prompt is empty"},
		{"iPhone 15\n" + long + "\n", []string{"search", "--user", "alice"}, "line 2: the prompt is 1025 bytes"},
		{"", []string{"recs"}, "--user is empty"},
	} {
		code, _, stderr := s.run(t, c.stdin, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("#%d: %v exited %d with %q; want exit %d saying %q", i, c.args, code, stderr, exitUsage, c.want)
		}
	}
	if n := s.promptsWritten(t); n != 0 {
		t.Errorf("bad input produced %d prompts, want none", n)
	}
}

// The user's path: filtered products in Kafka, a recommender running,
// `search --wait` shows what matched, `recs` shows the list.
func TestSearchThenRecs(t *testing.T) {
	s := newSearchStack(t)
	for _, p := range []records.Product{
		{MallID: "m1", ProductID: "p1", Name: "iPhone 15", Price: records.Price{Amount: "999.00", Currency: "USD"}},
		{MallID: "m1", ProductID: "p2", Name: "Galaxy S24", Price: records.Price{Amount: "899.00", Currency: "USD"}},
		{MallID: "m2", ProductID: "p3", Name: "Pixel 8", Price: records.Price{Amount: "699.00", Currency: "EUR"}},
	} {
		v, err := s.serde.Encode(s.ctx, nil, s.topic.Filtered, &p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.kafka.ProduceSync(s.ctx, &kgo.Record{Topic: s.topic.Filtered, Key: []byte(p.Key()), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rctx, stop := context.WithCancel(s.ctx)
	done := make(chan error, 1)
	go func() {
		rec, err := recommender.New(recommender.Options{Deps: component.Deps{Kafka: s.kc.Kafka, Topics: s.topic, Serde: s.serde}, InstanceID: "cli-test"})
		if err != nil {
			done <- err
			return
		}
		done <- rec.Run(rctx)
	}()
	t.Cleanup(func() { stop(); <-done })

	expect := func(code int, out, errOut string, want ...string) {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	code, out, errOut := s.run(t, "", "recs", "--user", "alice")
	expect(code, out, errOut, "alice has no recommendations yet")

	code, out, errOut = s.run(t, "", "search", "--user", "alice", "--wait", "IPHONE  15")
	expect(code, out, errOut, `alice searched "IPHONE  15"`, `1 product(s) recommended to alice for "IPHONE  15"`, "m1/p1", "999.00 USD")

	// A name that no filtered product has: nothing new, the last query moves.
	code, out, errOut = s.run(t, "", "search", "--user", "alice", "--wait", "Nokia 3310")
	expect(code, out, errOut, `no filtered product is named "Nokia 3310"`)

	code, out, errOut = s.run(t, "", "recs", "--user", "alice")
	expect(code, out, errOut, `alice: 1 recommended product(s); last search "Nokia 3310"`, "iPhone 15", "m1/p1")

	// Prompts from standard input, one per line.
	code, out, errOut = s.run(t, "Galaxy S24\npixel 8\n", "search", "--user", "bob", "--wait")
	expect(code, out, errOut, `recommended to bob for "Galaxy S24"`, `recommended to bob for "pixel 8"`, "m2/p3")

	code, out, errOut = s.run(t, "", "recs", "--user", "bob", "--json")
	expect(code, out, errOut)
	var rec records.Recommendation
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("recs --json printed %q: %v", out, err)
	}
	if rec.UserID != "bob" || rec.LastQuery != "pixel 8" || len(rec.Products) != 2 || rec.Products[0].ProductID != "p3" || rec.Products[1].ProductID != "p2" {
		t.Errorf("recs --json = %+v, want bob's Pixel 8 then Galaxy S24", rec)
	}

	// --follow prints the current list, then each update, until cancelled.
	fctx, fcancel := context.WithCancel(s.ctx)
	var fout syncBuffer
	fdone := make(chan int, 1)
	go func() {
		code, _ := runAppTo(fctx, "", &fout, s.withConn([]string{"recs", "--user", "carol", "--follow", "--json"})...)
		fdone <- code
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("recs --follow: %s within 20s; printed %q", what, fout.String())
			}
		}
	}
	waitFor("no current state printed", func() bool { return strings.Contains(fout.String(), "null") })
	code, out, errOut = s.run(t, "", "search", "--user", "carol", "--wait", "Galaxy S24")
	expect(code, out, errOut, "m1/p2")
	waitFor("the update was not printed", func() bool { return strings.Count(fout.String(), "\n") >= 2 })
	fcancel()
	if code := <-fdone; code != 0 {
		t.Errorf("recs --follow exited %d after Ctrl-C, want 0", code)
	}
	lines := strings.Split(strings.TrimSpace(fout.String()), "\n")
	if len(lines) != 2 || lines[0] != "null" || !strings.Contains(lines[1], `"last_query":"Galaxy S24"`) {
		t.Errorf("recs --follow --json printed %q, want null then carol's update", lines)
	}
}

// `shopstream recommender` runs until Ctrl-C, serves /metrics and says
// when it joins.
func TestRecommenderCommand(t *testing.T) {
	s := newSearchStack(t)
	ctx, cancel := context.WithCancel(s.ctx)
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		code, _ := runAppTo(ctx, "", &out, s.withConn([]string{"recommender", "--metrics-addr", "127.0.0.1:0", "--instance-id", "cmd-test"})...)
		done <- code
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "joining prompts"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("recommender did not start within 20s; printed %q", out.String())
		}
	}
	if !strings.Contains(out.String(), "table holds 0 filtered products") || !strings.Contains(out.String(), "/metrics on 127.0.0.1:") {
		t.Errorf("recommender printed %q", out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("recommender exited %d after Ctrl-C, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("recommender did not stop within 10s of Ctrl-C")
	}
}
