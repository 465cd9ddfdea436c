package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/topicread"
)

// testEnv is an in-process Kafka (kfake) and schema registry (srfake) with
// the streamer's topics created, as `shopstream bootstrap` creates them.
type testEnv struct {
	t      testing.TB
	kc     *kafkatest.Cluster // nil when the broker runs in another process (newTestEnvOn)
	topics records.Topics
	kafka  *clients.Kafka
	serde  *records.Serde
	cl     *kgo.Client
	admin  *kadm.Client
	// registryURL is where the schema registry serves.
	registryURL string
}

func newTestEnv(t testing.TB, partitions int32) *testEnv {
	t.Helper()
	kc := kafkatest.Start(t)
	e := &testEnv{t: t, kc: kc, topics: records.DefaultTopics(), kafka: kc.Kafka, serde: kc.Serde, registryURL: kc.RegistryURL}
	e.cl = kc.Client(kgo.ProducerLinger(0))
	return e.createTopics(partitions)
}

// newTestEnvOn is newTestEnv on a broker and registry that run elsewhere
// (a benchmark's broker process).
func newTestEnvOn(t testing.TB, partitions int32, brokers []string, registryURL string) *testEnv {
	t.Helper()
	kafka, err := clients.NewKafka(clients.KafkaOptions{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, topics: records.DefaultTopics(), kafka: kafka, registryURL: registryURL}
	e.serde = e.newSerde()
	if e.cl, err = kafka.NewClient(kgo.ProducerLinger(0)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cl.Close)
	return e.createTopics(partitions)
}

// newSerde is a serde of its own, as another process would have: it must
// learn writer schemas from the registry, not from the cache of the serde
// that encoded them.
func (e *testEnv) newSerde() *records.Serde {
	e.t.Helper()
	s, err := clients.NewSerde(e.registryURL)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// createTopics creates the streamer's topics, as `shopstream bootstrap`
// does.
func (e *testEnv) createTopics(partitions int32) *testEnv {
	t := e.t
	t.Helper()
	ctx := context.Background()
	e.admin = kadm.NewClient(e.cl)
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for _, c := range []struct {
		name       string
		partitions int32
		configs    map[string]*string
	}{
		{e.topics.Products, partitions, nil},
		{e.topics.Filtered, partitions, compact},
		{e.topics.DLQ, partitions, nil},
		{e.topics.Filter, 1, compact},
		{e.topics.FilterApplied, 1, compact},
	} {
		if _, err := e.admin.CreateTopic(ctx, c.partitions, 1, c.configs, c.name); err != nil {
			t.Fatalf("create topic %s: %v", c.name, err)
		}
	}
	return e
}

// config is a streamer configuration for this environment.
func (e *testEnv) config(id string) Options {
	return Options{
		Deps: component.Deps{
			Kafka: e.kafka.With(kgo.ClientID(id)), Serde: e.newSerde(), Topics: e.topics,
			Registerer: prometheus.NewRegistry(), Logger: testLogger(e.t, id),
		},
		InstanceID: id, HeartbeatInterval: 200 * time.Millisecond,
	}
}

func testLogger(t testing.TB, id string) *slog.Logger {
	if os.Getenv("STREAMER_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name(), "id", id)
}

// running is a streamer instance started by a test.
type running struct {
	s    *Streamer
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error
}

func (e *testEnv) start(cfg Options) *running {
	e.t.Helper()
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, reg: cfg.Registerer.(*prometheus.Registry), stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-r.done:
		e.t.Fatalf("streamer %s stopped before it was ready: %v", cfg.InstanceID, err)
	case <-time.After(30 * time.Second):
		e.t.Fatalf("streamer %s not ready in 30s", cfg.InstanceID)
	}
	e.t.Cleanup(func() { r.shutdown(e.t) })
	return r
}

// shutdown cancels the instance and checks that it stops within the bound
// an orchestrator gives between SIGTERM and SIGKILL.
func (r *running) shutdown(t testing.TB) time.Duration {
	r.stop()
	start := time.Now()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("streamer %s: %v", r.s.InstanceID(), err)
		}
		r.done <- nil // later shutdowns return at once
		return time.Since(start)
	case <-time.After(10 * time.Second):
		t.Errorf("streamer %s did not stop within 10s of its context ending", r.s.InstanceID())
		return time.Since(start)
	}
}

func (e *testEnv) setFilter(version int64, substring string, caseSensitive bool) {
	e.t.Helper()
	ctx := context.Background()
	v, err := e.serde.Encode(ctx, nil, e.topics.Filter, &records.FilterState{
		Version: version, Substring: substring, CaseSensitive: caseSensitive, SetAt: time.Now(), SetBy: "test",
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.cl.ProduceSync(ctx, &kgo.Record{Topic: e.topics.Filter, Key: []byte(ControlKey), Value: v}).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// names cycles through product names; "phone" matches the ones marked.
var testNames = []struct {
	name  string
	phone bool
}{
	{"Galaxy Phone", true}, {"IPHONE 15 Pro", true}, {"Laptop 14", false}, {"Tablet Mini", false},
	{"Headphones", true}, {"Телефон", false}, {"Smart TV", false}, {"Telephone cable", true},
	{"tablet case for phone", true}, {"Ph one", false},
}

func testProduct(i int) records.Product {
	n := testNames[i%len(testNames)]
	now := time.Now()
	return records.Product{
		ProductID: fmt.Sprintf("p-%06d", i), MallID: fmt.Sprintf("mall-%d", i%7),
		Name: fmt.Sprintf("%s #%d", n.name, i), Price: records.Price{Amount: "9.99", Currency: "EUR"},
		Tags: []string{"t"}, CreatedAt: now, UpdatedAt: now,
	}
}

// produce writes products [from, to) and returns their keys.
func (e *testEnv) produce(from, to int) []string {
	e.t.Helper()
	ctx := context.Background()
	keys := make([]string, 0, to-from)
	rs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		p := testProduct(i)
		v, err := e.serde.Encode(ctx, nil, e.topics.Products, &p)
		if err != nil {
			e.t.Fatal(err)
		}
		keys = append(keys, p.Key())
		rs = append(rs, &kgo.Record{Topic: e.topics.Products, Key: []byte(p.Key()), Value: v})
	}
	if err := e.cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return keys
}

// waitProcessed waits until the group has committed every offset of the
// product topic: everything produced so far has been filtered, and its
// output is visible to read_committed readers.
func (e *testEnv) waitProcessed(group string, timeout time.Duration) {
	e.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ends, err := e.admin.ListEndOffsets(ctx, e.topics.Products)
		if err != nil {
			e.t.Fatal(err)
		}
		committed, err := e.admin.FetchOffsets(ctx, group)
		if err == nil {
			behind := 0
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if !ok || c.Err != nil || c.At < o.Offset {
					behind++
				}
			})
			if behind == 0 {
				return
			}
			last = fmt.Sprintf("%d partitions behind", behind)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("the group did not commit the whole product topic in %s: %s", timeout, last)
}

// output reads the filtered topic as a read_committed consumer.
func (e *testEnv) read(topic string) []*kgo.Record {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	if err := topicread.Read(ctx, e.kafka, topic, topicread.Options{}, func(r *kgo.Record) error { out = append(out, r); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// expectSameKeys checks that got holds each key of want exactly once.
func expectSameKeys(t testing.TB, got []*kgo.Record, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Key)]++
	}
	var dup, missing, extra []string
	wantSet := map[string]bool{}
	for _, k := range want {
		wantSet[k] = true
		if seen[k] == 0 {
			missing = append(missing, k)
		}
	}
	for k, n := range seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", k, n))
		}
		if !wantSet[k] {
			extra = append(extra, k)
		}
	}
	if len(dup)+len(missing)+len(extra) > 0 {
		t.Fatalf("output: %d records, want %d; %d duplicated %v, %d missing %v, %d unexpected %v",
			len(got), len(want), len(dup), head(dup), len(missing), head(missing), len(extra), head(extra))
	}
}

func head(s []string) string {
	if len(s) > 5 {
		return strings.Join(s[:5], " ") + " …"
	}
	return strings.Join(s, " ")
}

// phoneKeys are the keys of products [from, to) whose name contains "phone"
// in any case.
func phoneKeys(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		if testNames[i%len(testNames)].phone {
			p := testProduct(i)
			out = append(out, p.Key())
		}
	}
	return out
}

// decodeName decodes a forwarded value in full with hamba, independently of
// the raw reader under test.
func (e *testEnv) decodeName(v []byte) string {
	e.t.Helper()
	var p records.Product
	if err := e.serde.Decode(context.Background(), v, &p); err != nil {
		e.t.Fatalf("forwarded value does not decode: %v", err)
	}
	return p.Name
}
