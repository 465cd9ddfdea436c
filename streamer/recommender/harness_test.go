package recommender

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

// harness is an embedded Kafka and schema registry with the recommender's
// topics, and the producers a test writes its input with.
type harness struct {
	t      *testing.T
	ctx    context.Context
	kc     *kafkatest.Cluster
	kafka  *clients.Kafka
	topics records.Topics
	group  string
	serde  *records.Serde
	admin  *kadm.Client
	plain  *kgo.Client // prompts, as `shopstream search` writes them
	txn    *kgo.Client // filtered products, in transactions as the streamer writes them
	// maxUsers is the instances' MaxUsers; 0: the default.
	maxUsers int
}

const testPartitions = 3

func newHarness(t *testing.T, opts ...kafkatest.Option) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kc := kafkatest.Start(t, opts...)
	h := &harness{
		t: t, ctx: ctx, kc: kc, kafka: kc.Kafka, group: "recommender-test",
		topics: records.Topics{
			Products: "shop_products", CompleteProducts: "complete", Filtered: "filtered", Find: "find",
			Recommendations: "recom", Filter: "filter", FilterApplied: "filter_applied", DLQ: "dlq",
		},
	}
	h.serde = h.newSerde()
	admCl := h.client()
	h.admin = kadm.NewClient(admCl)
	for _, tp := range []struct {
		name    string
		compact bool
	}{{h.topics.Filtered, true}, {h.topics.Find, false}, {h.topics.Recommendations, true}, {h.topics.DLQ, false}} {
		policy := "delete"
		if tp.compact {
			policy = "compact"
		}
		resp, err := h.admin.CreateTopic(ctx, testPartitions, 1, map[string]*string{"cleanup.policy": &policy}, tp.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create topic %s: %v", tp.name, err)
		}
	}
	h.plain = h.client()
	h.txn = h.client(kgo.TransactionalID("test-products"))
	return h
}

func (h *harness) newSerde() *records.Serde { return h.kc.NewSerde() }

func (h *harness) client(opts ...kgo.Opt) *kgo.Client {
	h.t.Helper()
	return h.kc.Client(opts...)
}

// instance is one running recommender.
type instance struct {
	id     string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
	err    error         // what Run returned, once done is closed
	reg    *prometheus.Registry
	mu     sync.Mutex
	table  *Table
}

func (i *instance) getTable() *Table {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.table
}

// stop cancels the instance and checks that it stops cleanly and soon.
func (i *instance) stop(t *testing.T) {
	t.Helper()
	i.cancel()
	select {
	case <-i.done:
		if i.err != nil {
			t.Fatalf("instance %s: Run returned %v after cancel, want nil", i.id, i.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("instance %s did not stop within 15s of cancel", i.id)
	}
}

func (h *harness) start(id string, hooks *testHooks) *instance {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	in := &instance{id: id, cancel: cancel, done: make(chan struct{}), reg: prometheus.NewRegistry()}
	if hooks == nil {
		hooks = &testHooks{}
	}
	hooks.onTable = func(t *Table) { in.mu.Lock(); in.table = t; in.mu.Unlock() }
	logLevel := slog.LevelWarn
	if testing.Verbose() {
		logLevel = slog.LevelInfo
	}
	cfg := Options{
		Deps: component.Deps{
			Topics: h.topics, Serde: h.newSerde(), Registerer: in.reg,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})).With("instance", id),
			Kafka: h.kafka.With(
				kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(300*time.Millisecond),
				kgo.RebalanceTimeout(10*time.Second),
			),
		},
		Group: h.group, InstanceID: id, TransactionTimeout: 10 * time.Second,
		MaxUsers: h.maxUsers,
		hooks:    hooks,
	}
	go func() {
		defer close(in.done)
		in.err = runOnce(ctx, cfg)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-in.done:
		case <-time.After(15 * time.Second):
		}
	})
	return in
}

// scenario is testdata/scenario.json.
type scenario struct {
	Steps  []step                  `json:"steps"`
	Expect map[string]expectedUser `json:"expect"`
}

type step struct {
	Products          []scenarioProduct `json:"products"`
	Aborted           []scenarioProduct `json:"aborted"`
	Delete            []string          `json:"delete"`
	Prompts           []scenarioPrompt  `json:"prompts"`
	MalformedProducts []malformed       `json:"malformed_products"`
	MalformedPrompts  []malformed       `json:"malformed_prompts"`
}

type scenarioProduct struct {
	MallID    string        `json:"mall_id"`
	ProductID string        `json:"product_id"`
	Name      string        `json:"name"`
	Price     records.Price `json:"price"`
}

type scenarioPrompt struct {
	User       string `json:"user"`
	SearchID   string `json:"search_id"`
	Query      string `json:"query"`
	SearchedAt int64  `json:"searched_at"`
}

type malformed struct {
	Key    string          `json:"key"`
	Value  string          `json:"value"`
	Prompt *scenarioPrompt `json:"prompt"`
	Reason string          `json:"reason"`
}

type expectedUser struct {
	LastQuery      string            `json:"last_query"`
	LastSearchedAt int64             `json:"last_searched_at"`
	Products       []expectedProduct `json:"products"`
}

// expectedProduct is a product as the scenario wrote it, and the search
// that recommended it.
type expectedProduct struct {
	scenarioProduct
	SearchID      string `json:"search_id"`
	RecommendedAt int64  `json:"recommended_at"`
}

func loadScenario(t *testing.T) scenario {
	t.Helper()
	raw, err := os.ReadFile("testdata/scenario.json")
	if err != nil {
		t.Fatal(err)
	}
	var s scenario
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("parse testdata/scenario.json: %v", err)
	}
	return s
}

func (p scenarioPrompt) record() *records.SearchPrompt {
	q := p.Query
	if n, ok := strings.CutPrefix(q, "@"); ok {
		var size int
		fmt.Sscan(n, &size)
		q = strings.Repeat("a", size)
	}
	return &records.SearchPrompt{SearchID: p.SearchID, UserID: p.User, Query: q, SearchedAt: time.UnixMilli(p.SearchedAt).UTC()}
}

func (p scenarioProduct) record() *records.Product {
	at := time.UnixMilli(1_700_000_000_000).UTC()
	return &records.Product{MallID: p.MallID, ProductID: p.ProductID, Name: p.Name, Price: p.Price, CreatedAt: at, UpdatedAt: at}
}

// run plays the scenario's steps; before(i) runs before step i and after
// the previous step's effects are visible in the running instances.
func (h *harness) run(s scenario, running func() []*instance, before func(i int)) {
	h.t.Helper()
	t0 := time.Now()
	defer func() { h.t.Logf("scenario played in %s", time.Since(t0).Round(time.Millisecond)) }()
	for i, st := range s.Steps {
		if before != nil {
			before(i)
		}
		h.t.Logf("%6s step %d", time.Since(t0).Round(time.Millisecond), i)
		switch {
		case st.Products != nil:
			h.writeProducts(st.Products, true)
			h.waitTables(running(), st.Products, nil)
		case st.Aborted != nil:
			h.writeProducts(st.Aborted, false)
		case st.Delete != nil:
			h.deleteProducts(st.Delete)
			h.waitTables(running(), nil, st.Delete)
		case st.MalformedProducts != nil:
			for _, m := range st.MalformedProducts {
				h.produce(h.plain, &kgo.Record{Topic: h.topics.Filtered, Key: []byte(m.Key), Value: []byte(m.Value)})
			}
		case st.Prompts != nil:
			for _, p := range st.Prompts {
				h.writePrompt(p.User, p.record())
			}
			if len(running()) > 0 {
				h.waitPromptsJoined()
			}
		case st.MalformedPrompts != nil:
			for _, m := range st.MalformedPrompts {
				if m.Prompt != nil {
					h.writePrompt(m.Key, m.Prompt.record())
				} else {
					h.produce(h.plain, &kgo.Record{Topic: h.topics.Find, Key: []byte(m.Key), Value: []byte(m.Value)})
				}
			}
			if len(running()) > 0 {
				h.waitPromptsJoined()
			}
		default:
			h.t.Fatalf("scenario step %d does nothing", i)
		}
	}
}

func (h *harness) produce(cl *kgo.Client, rs ...*kgo.Record) {
	h.t.Helper()
	if err := cl.ProduceSync(h.ctx, rs...).FirstErr(); err != nil {
		h.t.Fatalf("produce: %v", err)
	}
}

func (h *harness) writePrompt(key string, p *records.SearchPrompt) {
	h.t.Helper()
	v, err := h.serde.Encode(h.ctx, nil, h.topics.Find, p)
	if err != nil {
		h.t.Fatal(err)
	}
	h.produce(h.plain, &kgo.Record{Topic: h.topics.Find, Key: []byte(key), Value: v})
}

func (h *harness) writeProducts(ps []scenarioProduct, commit bool) {
	h.t.Helper()
	var rs []*kgo.Record
	for _, p := range ps {
		v, err := h.serde.Encode(h.ctx, nil, h.topics.Filtered, p.record())
		if err != nil {
			h.t.Fatal(err)
		}
		rs = append(rs, &kgo.Record{Topic: h.topics.Filtered, Key: []byte(p.MallID + "/" + p.ProductID), Value: v})
	}
	h.inTxn(rs, commit)
}

func (h *harness) deleteProducts(keys []string) {
	h.t.Helper()
	var rs []*kgo.Record
	for _, k := range keys {
		rs = append(rs, &kgo.Record{Topic: h.topics.Filtered, Key: []byte(k)})
	}
	h.inTxn(rs, true)
}

func (h *harness) inTxn(rs []*kgo.Record, commit bool) {
	h.t.Helper()
	if err := h.txn.BeginTransaction(); err != nil {
		h.t.Fatal(err)
	}
	h.produce(h.txn, rs...)
	if err := h.txn.EndTransaction(h.ctx, kgo.TransactionEndTry(commit)); err != nil {
		h.t.Fatal(err)
	}
}

// waitTables waits until every running instance's table shows the upserts
// and deletes.
func (h *harness) waitTables(ins []*instance, upserts []scenarioProduct, deletes []string) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, in := range ins {
		for {
			tbl := in.getTable()
			ok := tbl != nil
			for _, p := range upserts {
				if !ok {
					break
				}
				got, found := tbl.Get(p.MallID + "/" + p.ProductID)
				ok = found && got.Name == p.Name && got.Price == p.Price
			}
			for _, k := range deletes {
				if !ok {
					break
				}
				_, found := tbl.Get(k)
				ok = !found
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				h.t.Fatalf("instance %s's table did not show %v / deletes %v within 20s", in.id, upserts, deletes)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// waitPromptsJoined waits until the group has committed the find topic to
// its end: every prompt written so far is joined and its output committed.
func (h *harness) waitPromptsJoined() {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ends, err := h.admin.ListEndOffsets(h.ctx, h.topics.Find)
		if err != nil {
			h.t.Fatal(err)
		}
		committed, err := h.admin.FetchOffsets(h.ctx, h.group)
		behind := 0
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(h.topics.Find, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					behind++
				}
			})
		}
		if err == nil && behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("prompts not joined within 60s (%d partitions behind, err %v)", behind, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readAll reads a topic from the start to its end offsets.
func (h *harness) readAll(topic string, committedOnly bool) []*kgo.Record {
	h.t.Helper()
	var ends kadm.ListedOffsets
	var err error
	if committedOnly {
		ends, err = h.admin.ListCommittedOffsets(h.ctx, topic)
	} else {
		ends, err = h.admin.ListEndOffsets(h.ctx, topic)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	iso := kgo.ReadUncommitted()
	if committedOnly {
		iso = kgo.ReadCommitted()
	}
	cl := h.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())
	defer cl.Close()
	pending := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			pending[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	for len(pending) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("read %s: still waiting for partitions %v", topic, pending)
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				if !r.Attrs.IsControl() {
					out = append(out, r)
				}
				if end, ok := pending[fp.Partition]; ok && r.Offset+1 >= end {
					delete(pending, fp.Partition)
				}
			}
		})
	}
	return out
}

// result is what a user sees: the latest Recommendation of every user, and
// how many committed Recommendation records there are.
func (h *harness) result() (map[string]expectedUser, int) {
	h.t.Helper()
	latest := map[string]*kgo.Record{}
	rs := h.readAll(h.topics.Recommendations, true)
	for _, r := range rs {
		latest[string(r.Key)] = r
	}
	out := map[string]expectedUser{}
	for user, r := range latest {
		var rec records.Recommendation
		if err := h.serde.Decode(h.ctx, r.Value, &rec); err != nil {
			h.t.Fatalf("decode the recommendation of %s: %v", user, err)
		}
		if rec.UserID != user {
			h.t.Errorf("record keyed %q holds user %q", user, rec.UserID)
		}
		u := expectedUser{LastQuery: rec.LastQuery, LastSearchedAt: rec.LastSearchedAt.UnixMilli(), Products: []expectedProduct{}}
		for _, p := range rec.Products {
			u.Products = append(u.Products, expectedProduct{
				scenarioProduct: scenarioProduct{MallID: p.MallID, ProductID: p.ProductID, Name: p.Name, Price: p.Price},
				SearchID:        p.SearchID, RecommendedAt: p.RecommendedAt.UnixMilli(),
			})
		}
		out[user] = u
	}
	return out, len(rs)
}

// check compares what users see with the scenario's expectations, and
// checks exactly-once: one committed Recommendation per valid prompt, one
// dead letter per malformed prompt.
func (h *harness) check(s scenario, instances int) {
	h.t.Helper()
	got, n := h.result()
	want := s.Expect
	for user := range want {
		if want[user].Products == nil {
			w := want[user]
			w.Products = []expectedProduct{}
			want[user] = w
		}
	}
	gj, _ := json.MarshalIndent(got, "", "  ")
	wj, _ := json.MarshalIndent(want, "", "  ")
	if string(gj) != string(wj) {
		h.t.Errorf("recommendations differ from testdata/scenario.json:\n got %s\nwant %s", gj, wj)
	}
	valid, badPrompts, badProducts := 0, map[string]int{}, map[string]int{}
	for _, st := range s.Steps {
		valid += len(st.Prompts)
		for _, m := range st.MalformedPrompts {
			badPrompts[m.Reason]++
		}
		for _, m := range st.MalformedProducts {
			badProducts[m.Reason]++
		}
	}
	if n != valid {
		h.t.Errorf("%d committed recommendation records, want exactly %d (one per valid prompt)", n, valid)
	}
	gotPrompts, gotProducts := map[string]int{}, map[string]int{}
	for _, r := range h.readAll(h.topics.DLQ, true) {
		switch header(r, deadletter.HeaderSourceTopic) {
		case h.topics.Find:
			gotPrompts[header(r, deadletter.HeaderReason)]++
		case h.topics.Filtered:
			gotProducts[header(r, deadletter.HeaderReason)]++
		default:
			h.t.Errorf("dead letter from unexpected topic %q", header(r, deadletter.HeaderSourceTopic))
		}
		if header(r, deadletter.HeaderComponent) != "recommender" || header(r, deadletter.HeaderSourceOffset) == "" || header(r, deadletter.HeaderTime) == "" {
			h.t.Errorf("dead letter lacks its origin headers: %v", r.Headers)
		}
	}
	if fmt.Sprint(gotPrompts) != fmt.Sprint(badPrompts) {
		h.t.Errorf("prompt dead letters by reason = %v, want exactly %v", gotPrompts, badPrompts)
	}
	for reason, n := range badProducts {
		if gotProducts[reason] < n || gotProducts[reason] > n*instances {
			h.t.Errorf("product dead letters for %s = %d, want between %d and %d (once per instance start)", reason, gotProducts[reason], n, n*instances)
		}
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// runOnce builds an instance from o and runs it until ctx ends.
func runOnce(ctx context.Context, o Options) error {
	r, err := New(o)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}
