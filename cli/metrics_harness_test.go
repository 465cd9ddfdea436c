package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/blobstore"
	"github.com/shopstream/shopstream/internal/bootstrap"
	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/kafkametrics"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/productapi"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/workflows"
)

// recorder is a process's registry that also remembers what registered on
// it: a vector with no series yet gathers nothing, but its name, help,
// labels and kind are known from its description and Go type.
type recorder struct {
	*prometheus.Registry
	mu    sync.Mutex
	descs map[string]registered
}

type registered struct {
	help, kind string
	labels     []string
}

func newRecorder() *recorder {
	return &recorder{Registry: telemetry.NewRegistry(), descs: map[string]registered{}}
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descHelp   = regexp.MustCompile(`help: "((?:[^"\\]|\\.)*)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	kind := ""
	switch c.(type) {
	case *prometheus.CounterVec:
		kind = telemetry.KindCounter
	case *prometheus.GaugeVec:
		kind = telemetry.KindGauge
	case *prometheus.HistogramVec:
		kind = telemetry.KindHistogram
	case *prometheus.SummaryVec:
		kind = telemetry.KindSummary
	case *kafkametrics.Collector:
		// Its counter is always gathered; a series it exports only at
		// times (a hanging transaction's age) is a gauge.
		kind = telemetry.KindGauge
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		s := d.String()
		name := descName.FindStringSubmatch(s)
		if name == nil {
			continue
		}
		reg := registered{kind: kind}
		if h := descHelp.FindStringSubmatch(s); h != nil {
			reg.help, _ = strconv.Unquote(`"` + h[1] + `"`)
		}
		if l := descLabels.FindStringSubmatch(s); l != nil && l[1] != "" {
			reg.labels = strings.Split(l[1], ",")
		}
		r.descs[name[1]] = reg
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// exposed is what one process exposes on /metrics: the families it gathered
// after doing a little work, and every metric registered on it.
type exposed struct {
	process  string
	families []*dto.MetricFamily
	descs    map[string]registered
}

// kinds returns every metric name the process exposes with its kind: the
// gathered kind, else the kind of the registered vector.
func (e exposed) kinds() map[string]string {
	out := map[string]string{}
	for name, d := range e.descs {
		out[name] = d.kind
	}
	for _, mf := range e.families {
		out[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}
	return out
}

// lintFamilies is what promlint reads: the gathered families, plus one made
// up from the description of each registered metric that has no series yet.
func (e exposed) lintFamilies() []*dto.MetricFamily {
	out := append([]*dto.MetricFamily(nil), e.families...)
	gathered := map[string]bool{}
	for _, mf := range e.families {
		gathered[mf.GetName()] = true
	}
	for name, d := range e.descs {
		if gathered[name] || d.kind == "" {
			continue
		}
		m := &dto.Metric{}
		for _, l := range d.labels {
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr(l), Value: ptr("x")})
		}
		t := map[string]dto.MetricType{telemetry.KindCounter: dto.MetricType_COUNTER, telemetry.KindGauge: dto.MetricType_GAUGE,
			telemetry.KindHistogram: dto.MetricType_HISTOGRAM, telemetry.KindSummary: dto.MetricType_SUMMARY}[d.kind]
		out = append(out, &dto.MetricFamily{Name: ptr(name), Help: ptr(d.help), Type: &t, Metric: []*dto.Metric{m}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

func ptr[T any](v T) *T { return &v }

var exposure struct {
	once  sync.Once
	procs []exposed
	err   error
}

// exposedMetrics runs every shopstream process once per test binary, as
// the commands wire them, on the embedded stack: the worker (the workflows,
// the emulate activities, the Temporal SDK's metrics, the Kafka view), the
// streamer with the built-in recommender, the sink, the collector and the
// API. It makes each do a little work (a filter change, an emulation, one
// that fails, records that go to the dead-letter topic, a search, API
// requests), gathers each registry, and stops them all. The sink and the
// collector are only built, not run: they need PostgreSQL, and their
// metrics are all registered when they are built.
func exposedMetrics(t *testing.T) []exposed {
	t.Helper()
	stack := sharedStack.get(t)
	exposure.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		exposure.procs, exposure.err = runProcesses(ctx, stack)
	})
	if exposure.err != nil {
		t.Fatal(exposure.err)
	}
	return exposure.procs
}

func runProcesses(ctx context.Context, stack *environment.Stack) (_ []exposed, err error) {
	dir, err := os.MkdirTemp("", "shopstream-metrics-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = stack.KafkaBrokers, stack.RegistryURL
	cfg.TemporalAddress, cfg.TemporalUIURL = stack.TemporalAddress, stack.TemporalUIURL
	cfg.TaskQueue, cfg.DataDir = "metrics-"+sfx, dir
	t := &cfg.Topics
	for _, p := range []*string{&t.Products, &t.CompleteProducts, &t.Filtered, &t.Find, &t.Recommendations, &t.Filter, &t.FilterApplied, &t.DLQ} {
		*p = "m" + sfx + "_" + *p
	}
	flags := []string{
		"--kafka-brokers", strings.Join(cfg.KafkaBrokers, ","), "--schema-registry-url", cfg.SchemaRegistryURL,
		"--temporal-address", cfg.TemporalAddress, "--task-queue", cfg.TaskQueue, "--data-dir", dir,
		"--product-topic", t.Products, "--complete-product-topic", t.CompleteProducts, "--filtered-topic", t.Filtered,
		"--find-topic", t.Find, "--recom-topic", t.Recommendations, "--filter-topic", t.Filter,
		"--filter-applied-topic", t.FilterApplied, "--dlq-topic", t.DLQ,
	}
	log := slog.New(slog.DiscardHandler)
	rctx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() { stop(); running.Wait() }()
	background := func(name string, f func(context.Context) error) {
		running.Add(1)
		go func() {
			defer running.Done()
			if err := f(rctx); err != nil && rctx.Err() == nil {
				log.Error(name, "err", err)
			}
		}()
	}

	// The worker, and the topics its bootstrap creates.
	workerReg := newRecorder()
	ew, err := process.Connect(ctx, cfg, log, workerReg, process.NeedKafka|process.NeedTemporal)
	if err != nil {
		return nil, err
	}
	defer ew.Close()
	if err := ew.RegisterKafkaView(); err != nil {
		return nil, err
	}
	// StreamFilter has a fixed id: one left by another run on this shared
	// server would take the signals on its own task queue.
	_ = ew.Temporal.TerminateWorkflow(ctx, workflows.StreamFilterWorkflowID, "", "metrics test starts its own")
	defer func() {
		_ = ew.Temporal.TerminateWorkflow(context.Background(), workflows.StreamFilterWorkflowID, "", "metrics test done")
	}()
	w, err := ew.Worker(time.Second)
	if err != nil {
		return nil, err
	}
	background("worker", w.Run)
	if _, err := bootstrap.Run(ctx, ew.Temporal, cfg, bootstrap.Input(cfg, bootstrap.Topics{Partitions: 2, ReplicationFactor: 1}, []string{"topics", "schemas"}), io.Discard, false); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}

	// The streamer process: the filter and the recommender.
	streamerReg := newRecorder()
	es, err := process.Connect(ctx, cfg, log, streamerReg, process.NeedKafka)
	if err != nil {
		return nil, err
	}
	defer es.Close()
	streamers := supervise.New(0)
	if err := es.AddStreamer(streamers, process.StreamerSettings{Group: "metrics-streamer-" + sfx, Recommender: true}); err != nil {
		return nil, err
	}
	background("streamer", streamers.Run)

	// The sink and the collector, built as their commands build them.
	sinkReg := newRecorder()
	if _, err := sink.New(sink.Options{Deps: component.Deps{Kafka: es.Kafka, Topics: cfg.Topics, Serde: es.Serde, Registerer: sinkReg, Logger: log},
		Group: sink.DefaultGroup, Store: &pgstore.Store{}, BatchSize: 5000}); err != nil {
		return nil, err
	}
	collectorReg := newRecorder()
	blobs, err := blobstore.Open(ctx, "mem://", dir)
	if err != nil {
		return nil, err
	}
	defer blobs.Close()
	fetcher, err := imagefetch.New(imagefetch.Options{Registerer: collectorReg})
	if err != nil {
		return nil, err
	}
	defer fetcher.Close()
	if _, err := collector.New(collector.Options{Deps: component.Deps{Kafka: es.Kafka, Topics: cfg.Topics, Serde: es.Serde, Registerer: collectorReg},
		Store: &collector.Store{}, Blobs: blobs, Fetcher: fetcher}); err != nil {
		return nil, err
	}

	// The API, answering a few requests.
	apiReg := newRecorder()
	ea, err := process.Connect(ctx, cfg, log, apiReg, process.NeedKafka)
	if err != nil {
		return nil, err
	}
	defer ea.Close()
	api, err := productapi.New(productapi.Options{Producer: ea.Client, Serde: ea.Serde, Topics: cfg.Topics,
		Registerer: apiReg, Gatherer: apiReg, Logger: log})
	if err != nil {
		return nil, err
	}
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/api/v1/products", `{"mallId":"m1","productId":"api-1","title":"Galaxy Phone","price":"9.50","imageUrl":"https://cdn.example.com/x.png"}`},
		{"POST", "/api/v1/products", `not json`},
		{"GET", "/api/v1/complete-products", ""}, // no catalog: 503
		{"GET", "/metrics", ""},
	} {
		api.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, strings.NewReader(req.body)))
	}

	// Work: a filter change every streamer applies, an emulation, one that
	// fails in its activity, records for the dead-letter topic, a search.
	if code, out, errOut := shopstream(ctx, append([]string{"filter", "set", "phone", "--wait", "--timeout", "40s"}, flags...)...); code != 0 {
		return nil, fmt.Errorf("filter set: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := shopstream(ctx, append([]string{"emulate", "--count", "200"}, flags...)...); code != 0 {
		return nil, fmt.Errorf("emulate: exit %d: %s%s", code, out, errOut)
	}
	run, err := ew.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.EmulateWorkflowIDPrefix + "bad-" + sfx, TaskQueue: cfg.TaskQueue},
		workflows.EmulateShop, workflows.EmulateShopInput{Count: 1, Shops: 1, Topic: t.Products, ImageBaseURL: "ftp://images.invalid/"})
	if err != nil {
		return nil, err
	}
	if err := run.Get(ctx, nil); err == nil {
		return nil, errors.New("an emulation with an ftp:// image base URL succeeded; want its batch activity to fail")
	}
	if err := ew.Client.ProduceSync(ctx,
		&kgo.Record{Topic: t.Products, Key: []byte("m1/bad"), Value: []byte("not avro")},
		&kgo.Record{Topic: t.Find, Key: []byte("alice"), Value: []byte("not avro")},
	).FirstErr(); err != nil {
		return nil, err
	}
	if code, out, errOut := shopstream(ctx, append(append([]string{"search", "--user", "alice"}, flags...), "Galaxy Phone")...); code != 0 {
		return nil, fmt.Errorf("search: exit %d: %s%s", code, out, errOut)
	}

	// Wait until the work shows, then gather every process while it runs.
	procs := []struct {
		name string
		reg  *recorder
		// wait names series the work must have produced; name=v: a
		// series of that value (the Temporal SDK's metrics reach the
		// registry within a second).
		wait []string
	}{
		{"worker", workerReg, []string{"temporal_workflow_failed_total", "temporal_activity_execution_failed_total",
			workflows.MetricFilterDesiredVersion + "=1", "shopstream_emulate_records_produced_total", "shopstream_kafka_consumer_lag_records"}},
		{"streamer", streamerReg, []string{"shopstream_streamer_records_in_total", "shopstream_recommender_dead_letters_total",
			"shopstream_recommender_prompts_total", "shopstream_streamer_kafka_produce_bytes_total", "shopstream_streamer_filter_applied_version=1"}},
		{"sink", sinkReg, nil},
		{"collector", collectorReg, nil},
		{"api", apiReg, []string{"shopstream_api_requests_total"}},
	}
	var out []exposed
	for _, p := range procs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mfs, err := p.reg.Gather()
			if err != nil {
				return nil, fmt.Errorf("gather the %s's metrics: %w", p.name, err)
			}
			missing := missingFamilies(mfs, p.wait)
			if len(missing) == 0 {
				p.reg.mu.Lock()
				out = append(out, exposed{process: p.name, families: mfs, descs: p.reg.descs})
				p.reg.mu.Unlock()
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the %s's metrics lack %v after its work", p.name, missing)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out, nil
}

func missingFamilies(mfs []*dto.MetricFamily, want []string) []string {
	have := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			have[mf.GetName()] = true
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			have[mf.GetName()+"="+strconv.FormatFloat(v, 'g', -1, 64)] = true
		}
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	return missing
}
