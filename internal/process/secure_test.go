package process

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workflows"
)

// The whole pipeline on each kind of secured cluster kfake runs, every
// client built by the one builder from the settings a user gives: the
// emulate activity produces products, the streamer filters them, the
// built-in recommender answers a search, the sink writes them to
// PostgreSQL and the collector collects their images. In the last case
// ACLs are on and every component runs as its own principal with exactly
// the ACLs of internal/acls, as `shopstream dev --secure` runs them. (The
// emulate activity runs in Temporal's test activity environment: what is
// secured here is Kafka.)
func TestPipelineOnEachSecuredCluster(t *testing.T) {
	var users []string
	for _, c := range acls.Components {
		users = append(users, acls.DefaultUser(c))
	}
	for _, c := range []struct {
		name string
		s    kafkatest.Secure
	}{
		{"PLAIN over SASL_PLAINTEXT", kafkatest.Secure{Mechanism: config.MechanismPlain}},
		{"SCRAM-SHA-256 over SASL_SSL", kafkatest.Secure{TLS: true, Mechanism: config.MechanismScram256}},
		{"mutual TLS", kafkatest.Secure{TLS: true, ClientCert: true}},
		{"SCRAM-SHA-512 over SASL_SSL with ACLs, a principal per component", kafkatest.Secure{TLS: true, Mechanism: config.MechanismScram512, ACLs: true, Users: users}},
	} {
		t.Run(c.name, func(t *testing.T) { runSecuredPipeline(t, c.s) })
	}
}

func runSecuredPipeline(t *testing.T, s kafkatest.Secure) {
	const count = 120
	kc := kafkatest.Start(t, kafkatest.Secured(s))
	createTopics(kc)
	topics := records.DefaultTopics()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if s.ACLs {
		if _, err := acls.Apply(ctx, kc.Admin(), acls.All(nil, topics), false); err != nil {
			t.Fatal(err)
		}
	}
	images := httptest.NewServer(imageserver.Handler())
	defer images.Close()
	imagesURL, _ := url.Parse(images.URL)

	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL, cfg.KafkaSecurity = kc.Brokers, kc.RegistryURL, kc.Security
	cfg.DatabaseDSN, cfg.BlobURL = pgtest.DB(t), "mem://"
	e, err := Connect(ctx, cfg, slog.New(slog.DiscardHandler), telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if s.ACLs {
		e.Principals = map[string]*clients.Kafka{}
		for _, c := range acls.Components {
			user := acls.DefaultUser(c)
			if c == acls.Recommender {
				user = acls.DefaultUser(acls.Streamer) // in the streamer's process
			}
			e.Principals[c] = kc.As(user)
		}
	}

	g := supervise.New(0)
	if err := e.AddStreamer(g, StreamerSettings{Group: streamer.DefaultGroup, InstanceID: "secure-1", MaxBatch: 100, Recommender: true}); err != nil {
		t.Fatal(err)
	}
	sk, err := e.Sink(ctx, SinkSettings{Group: sink.DefaultGroup, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	col, err := e.Collector(ctx, CollectorSettings{Group: collector.DefaultGroup, TransactionalID: "shopstream-collector-0",
		Fetch: imagefetch.Options{AllowHosts: []string{imagesURL.Host}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add("sink", e.Guard(acls.Sink, sk)); err != nil {
		t.Fatal(err)
	}
	if err := g.Add("collector", col); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(rctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the components stopped with %v", err)
		}
	}()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// emulate: the batch activity, as the worker's principal.
	acts, err := e.Activities()
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(acts.Emulate.EmulateBatch, activity.RegisterOptions{Name: workflows.ActivityEmulateBatch})
	if _, err := env.ExecuteActivity(workflows.ActivityEmulateBatch, workflows.EmulateBatchInput{
		WorkflowID: "secure-test", Batch: 0, First: 0, Count: count, Topic: topics.Products,
		Seed: 7, Shops: 3, ImageBaseURL: images.URL + "/images", ProductTime: time.Now().UTC(),
	}); err != nil {
		t.Fatalf("emulate: %v", err)
	}

	// The streamer passes every product (no filter set).
	var name string
	admin := kc.Kafka
	if got := kafkatest.ReadCommitted(t, admin, topics.Filtered, count, func(r *kgo.Record) {
		var p records.Product
		if name == "" && kc.Serde.Decode(ctx, r.Value, &p) == nil {
			name = p.Name
		}
	}); got != count {
		t.Fatalf("the filtered topic holds %d products, want %d", got, count)
	}

	// The recommender answers a search for one of them.
	prompt, err := kc.Serde.Encode(ctx, nil, topics.Find, &records.SearchPrompt{SearchID: "s-1", UserID: "alice", Query: name, SearchedAt: time.Now().UTC().Truncate(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Client().ProduceSync(ctx, &kgo.Record{Topic: topics.Find, Key: []byte("alice"), Value: prompt}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var recs records.Recommendation
	kafkatest.ReadCommitted(t, admin, topics.Recommendations, 1, func(r *kgo.Record) {
		_ = kc.Serde.Decode(ctx, r.Value, &recs)
	})
	if recs.UserID != "alice" || len(recs.Products) == 0 || !strings.EqualFold(recs.LastQuery, name) {
		t.Fatalf("recommendation %+v, want one for alice's search %q", recs, name)
	}

	// The collector collected every product's images.
	if got := kafkatest.ReadCommitted(t, admin, topics.CompleteProducts, count, func(*kgo.Record) {}); got != count {
		t.Fatalf("the complete-products topic holds %d products, want %d", got, count)
	}

	// The sink wrote every product.
	conn, err := pgx.Connect(ctx, cfg.DatabaseDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := conn.QueryRow(ctx, "select count(*) from products").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == count || time.Now().After(deadline) {
			break
		}
	}
	if rows != count {
		t.Fatalf("the sink's products table holds %d rows, want %d", rows, count)
	}
}

// A component whose principal lacks one ACL does not start: the error
// names the operation and the resource.
func TestComponentWithoutAnACLSaysWhichOne(t *testing.T) {
	kc := kafkatest.Start(t, kafkatest.Secured(kafkatest.Secure{TLS: true, Mechanism: config.MechanismScram512, ACLs: true, Users: []string{"shopstream-streamer"}}))
	createTopics(kc)
	topics := records.DefaultTopics()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var granted []acls.Rule
	for _, r := range acls.For(acls.Streamer, "shopstream-streamer", topics) {
		if r.Name != topics.Filtered || r.Operation != kmsg.ACLOperationWrite {
			granted = append(granted, r)
		}
	}
	if _, err := acls.Apply(ctx, kc.Admin(), granted, false); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = kc.Brokers, kc.RegistryURL
	cfg.KafkaSecurity = kc.Security
	cfg.KafkaSecurity.Username, cfg.KafkaSecurity.Password = "shopstream-streamer", kc.Passwords["shopstream-streamer"]
	e, err := Connect(ctx, cfg, slog.New(slog.DiscardHandler), telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	err = e.AddStreamer(supervise.New(0), StreamerSettings{Group: streamer.DefaultGroup, InstanceID: "narrow-1", Recommender: true})
	want := "streamer: principal User:shopstream-streamer may not WRITE topic analytic_products_filtered"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error saying %q", err, want)
	}
}
