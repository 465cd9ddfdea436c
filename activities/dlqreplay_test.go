package activities

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.temporal.io/sdk/testsuite"

	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/dlqreplay"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
	"github.com/shopstream/shopstream/workflows"
)

func newReplayActs(t *testing.T, f *backfillFixture) *Replay {
	t.Helper()
	compact := "compact"
	f.kc.CreateTopic(1, map[string]*string{"cleanup.policy": &compact}, f.topics.DLQReplayed)
	r, err := NewReplay(ReplayOptions{Kafka: f.kc.Kafka, Admin: f.kc.Admin(), DLQ: f.topics.DLQ, Ledger: f.topics.DLQReplayed,
		Changelogs: []string{f.topics.Products, f.topics.Filtered}, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.closeProducers)
	return r
}

// replay runs the plan and every range, as the workflow would, and returns
// the plan and the total sent back.
func replay(t *testing.T, r *Replay, sel workflows.ReplaySelection, limit int) (workflows.ReplayPlan, int64) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)
	val, err := env.ExecuteActivity(workflows.ActivityReplayPlan, workflows.ReplayPlanInput{Selection: sel, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	var plan workflows.ReplayPlan
	if err := val.Get(&plan); err != nil {
		t.Fatal(err)
	}
	var total int64
	index := map[int32]int{}
	run := fmt.Sprintf("replay-test/%d", time.Now().UnixNano())
	for _, rg := range plan.Ranges {
		res, err := runReplayRange(r, workflows.ReplayRangeInput{WorkflowID: run, Selection: sel, Range: rg, Index: index[rg.Partition]})
		if err != nil {
			t.Fatal(err)
		}
		index[rg.Partition]++
		total += res.Replayed
	}
	return plan, total
}

func runReplayRange(r *Replay, in workflows.ReplayRangeInput) (workflows.ReplayRangeResult, error) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(r)
	val, err := env.ExecuteActivity(workflows.ActivityReplayRange, in)
	var res workflows.ReplayRangeResult
	if err == nil {
		err = val.Get(&res)
	}
	return res, err
}

func (f *backfillFixture) deadLetters(t *testing.T) []deadletter.Letter {
	t.Helper()
	var out []deadletter.Letter
	if err := topicread.Read(context.Background(), f.kc.Kafka, f.topics.DLQ, topicread.Options{}, func(r *kgo.Record) error {
		out = append(out, deadletter.Parse(r))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Products framed with a schema the registry does not know yet are
// dead-lettered by the streamer; once the schema is registered, a replay
// sends them back and the streamer forwards each exactly once, although it
// had remembered the schema id as unknown. A second replay sends nothing.
func TestReplayAfterTheMissingSchemaIsRegistered(t *testing.T) {
	f := newBackfillFixture(t)
	r := newReplayActs(t, f)
	ctx := context.Background()
	f.startStreamer(t)

	// A shop publishes with a newer schema (one field more) before anyone
	// registered it: the first id after the Product schema's.
	f.product(t, "p0", "Galaxy Phone") // registers the Product schema
	ours := f.kc.Serde.Schemas().Schema(records.KindProduct).String()
	if !strings.HasSuffix(ours, "]}") {
		t.Fatalf("the Product schema does not end its fields as expected: %s", ours)
	}
	newer := strings.TrimSuffix(ours, "]}") + `,{"name":"warehouse","type":"string","default":""}]}`
	var keys []string
	for i := range 4 {
		rec := f.product(t, fmt.Sprintf("n%d", i), "Pixel Phone")
		// The same body plus the new field (an empty string is one zero
		// byte), framed with the id the new schema will get.
		v := append([]byte{0, 0, 0, 0, 2}, rec.Value[5:]...)
		v = append(v, 0)
		bad := &kgo.Record{Topic: f.topics.Products, Key: []byte(fmt.Sprintf("m1/late-%d", i)), Value: v}
		if err := f.cl.ProduceSync(ctx, bad).FirstErr(); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, string(bad.Key))
	}
	waitFor(t, "the streamer dead-letters the 4 records", func() bool { return len(f.deadLetters(t)) == 4 })
	for _, d := range f.deadLetters(t) {
		if d.Reason != deadletter.ReasonUnknownSchemaID || d.Component != "streamer" {
			t.Fatalf("dead letter %+v, want unknown-schema-id by the streamer", d)
		}
	}

	// The shop's schema is registered: it gets id 2.
	got, err := f.kc.Serde.Registry().CreateSchema(ctx, "shop_products_v2-value", sr.Schema{Schema: newer, Type: sr.TypeAvro})
	if err != nil || got.ID != 2 {
		t.Fatalf("register the newer schema: id %d, %v; want id 2", got.ID, err)
	}
	plan, sent := replay(t, r, workflows.ReplaySelection{Reasons: []string{deadletter.ReasonUnknownSchemaID}}, 0)
	if sent != 4 || plan.Verdicts[dlqreplay.Replay] != 4 {
		t.Fatalf("replayed %d (plan %+v), want 4", sent, plan)
	}
	forwarded := func() map[string]int {
		n := map[string]int{}
		for _, rec := range f.filtered(t) {
			n[string(rec.Key)]++
		}
		return n
	}
	waitFor(t, "the streamer forwards the replayed records", func() bool { return len(forwarded()) == 4+4+1 })
	for _, k := range keys {
		if n := forwarded()[k]; n != 1 {
			t.Errorf("%s forwarded %d times, want once", k, n)
		}
	}
	if n := len(f.deadLetters(t)); n != 4 {
		t.Errorf("dead-letter topic holds %d letters, want the 4 first ones only", n)
	}
	if n := testutil.ToFloat64(r.replayed.WithLabelValues(f.topics.Products)); n != 4 {
		t.Errorf("shopstream_replay_records_total = %v, want 4", n)
	}
	// Everything went back once: a second replay sends nothing.
	plan, sent = replay(t, r, workflows.ReplaySelection{}, 0)
	if sent != 0 || plan.Verdicts[dlqreplay.Replayed] != 4 {
		t.Fatalf("second replay sent %d, verdicts %v; want none sent, 4 replayed already", sent, plan.Verdicts)
	}
}

// A replayed record that fails again is dead-lettered with its replay
// count, and replay stops at the limit; --limit and the selection pick.
func TestReplayStopsAtTheLimit(t *testing.T) {
	f := newBackfillFixture(t)
	r := newReplayActs(t, f)
	ctx := context.Background()
	send := func(d deadletter.Letter, replays int) {
		src := &kgo.Record{Topic: f.topics.Products, Partition: 0, Offset: d.SourceOffset, Key: d.Key, Value: []byte("junk")}
		if replays > 0 {
			src.Headers = []kgo.RecordHeader{{Key: deadletter.HeaderReplays, Value: []byte(fmt.Sprint(replays))}}
		}
		if err := f.cl.ProduceSync(ctx, deadletter.Record(f.topics.DLQ, src, deadletter.Why{Component: d.Component, Reason: d.Reason}, time.Now())).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// m1/a's record was dead-lettered by two components; it goes back once.
	send(deadletter.Letter{Key: []byte("m1/a"), SourceOffset: 1, Component: "streamer", Reason: deadletter.ReasonNotFramed}, 0)
	send(deadletter.Letter{Key: []byte("m1/a"), SourceOffset: 1, Component: "sink", Reason: deadletter.ReasonNotFramed}, 0)
	send(deadletter.Letter{Key: []byte("m1/b"), SourceOffset: 2, Component: "streamer", Reason: deadletter.ReasonNotFramed}, 3)
	send(deadletter.Letter{Key: []byte("m1/c"), SourceOffset: 3, Component: "sink", Reason: deadletter.ReasonInvalid}, 1)
	send(deadletter.Letter{Key: []byte("m1/d"), SourceOffset: 4, Component: "streamer", Reason: deadletter.ReasonNotFramed}, 0)

	plan, sent := replay(t, r, workflows.ReplaySelection{Components: []string{"streamer"}}, 1)
	if sent != 1 || plan.Verdicts[dlqreplay.AtLimit] != 1 || plan.Verdicts[dlqreplay.OverLimit] != 1 {
		t.Fatalf("sent %d, verdicts %v; want 1 sent, 1 at the replay limit, 1 over --limit", sent, plan.Verdicts)
	}
	var back []*kgo.Record
	if err := topicread.Read(ctx, f.kc.Kafka, f.topics.Products, topicread.Options{}, func(rec *kgo.Record) error {
		back = append(back, rec)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || string(back[0].Key) != "m1/a" || header(back[0], deadletter.HeaderReplays) != "1" || header(back[0], deadletter.HeaderReason) != "" {
		t.Fatalf("source topic holds %d records (%v), want m1/a replayed once, without the dead-letter headers", len(back), back)
	}
	_, sent = replay(t, r, workflows.ReplaySelection{Keys: []string{"m1/c"}}, 0)
	if sent != 1 {
		t.Fatalf("replay of key m1/c sent %d, want 1", sent)
	}
	plan, sent = replay(t, r, workflows.ReplaySelection{}, 0)
	if sent != 1 || plan.Verdicts[dlqreplay.Replayed] != 3 || plan.Verdicts[dlqreplay.AtLimit] != 1 {
		t.Fatalf("replay of everything sent %d, verdicts %v; want m1/d sent, the other 3 letters of records sent back already, m1/b at the limit", sent, plan.Verdicts)
	}
}

// A range whose first attempt stalls with its records in an open
// transaction (a worker that hangs, then is replaced) is sent back once:
// the retry fences the first attempt, whose commit then fails.
func TestReplayRangeFencesAZombie(t *testing.T) {
	f := newBackfillFixture(t)
	r := newReplayActs(t, f)
	ctx := context.Background()
	for i := range 5 {
		src := &kgo.Record{Topic: f.topics.Products, Offset: int64(i), Key: []byte(fmt.Sprintf("m1/z%d", i)), Value: []byte("junk")}
		if err := f.cl.ProduceSync(ctx, deadletter.Record(f.topics.DLQ, src, deadletter.Why{Component: "streamer", Reason: deadletter.ReasonNotFramed}, time.Now())).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rp, err := dlqreplay.New(dlqreplay.Options{Kafka: f.kc.Kafka, DLQ: f.topics.DLQ, Ledger: f.topics.DLQReplayed})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rp.Plan(ctx, dlqreplay.Selection{}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.beforeCommit = func(workflows.ReplayRangeInput) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(stalled)
			<-release
		}
		return nil
	}
	var total int64
	for i, rg := range plan.Ranges {
		in := workflows.ReplayRangeInput{WorkflowID: "replay-zombie", Range: workflows.ReplayRange(rg)}
		if i > 0 {
			res, err := runReplayRange(r, in)
			if err != nil {
				t.Fatal(err)
			}
			total += res.Replayed
			continue
		}
		zombie := make(chan error, 1)
		go func() {
			_, err := runReplayRange(r, in)
			zombie <- err
		}()
		<-stalled
		res, err := runReplayRange(r, in)
		if err != nil {
			t.Fatal(err)
		}
		total += res.Replayed
		close(release)
		if err := <-zombie; err == nil {
			t.Fatal("the stalled first attempt committed after the retry had fenced it")
		}
	}
	count := map[string]int{}
	if err := topicread.Read(ctx, f.kc.Kafka, f.topics.Products, topicread.Options{}, func(rec *kgo.Record) error {
		count[string(rec.Key)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if total != 5 || len(count) != 5 {
		t.Fatalf("sent %d, source holds %v; want each of the 5 once", total, count)
	}
	for k, n := range count {
		if n != 1 {
			t.Errorf("%s is in the source topic %d times", k, n)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
