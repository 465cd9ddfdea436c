package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/pgcluster/pgtest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/topicread"
)

// The package's tests that need PostgreSQL share one throwaway cluster.
// poisons are the values PostgreSQL's text and jsonb refuse, or that are
// not text at all.
var poisons = []struct{ name, value string }{{"nul", "a\x00b"}, {"bad-utf8", "caf\xe9"}}

// productFields put a poison into each string field of a Product.
var productFields = []struct {
	field string
	set   func(p *records.Product, v string)
}{
	{"product_id", func(p *records.Product, v string) { p.ProductID = v }},
	{"mall_id", func(p *records.Product, v string) { p.MallID = v }},
	{"name", func(p *records.Product, v string) { p.Name = v }},
	{"description", func(p *records.Product, v string) { p.Description = v }},
	{"price.amount", func(p *records.Product, v string) { p.Price.Amount = v }},
	{"price.currency", func(p *records.Product, v string) { p.Price.Currency = v }},
	{"category", func(p *records.Product, v string) { p.Category = v }},
	{"brand", func(p *records.Product, v string) { p.Brand = v }},
	{"sku", func(p *records.Product, v string) { p.SKU = v }},
	{"tags", func(p *records.Product, v string) { p.Tags = []string{"ok", v} }},
	{"images.url", func(p *records.Product, v string) { p.Images[0].URL += v }},
	{"images.alt", func(p *records.Product, v string) { p.Images[0].Alt = v }},
	{"specifications.key", func(p *records.Product, v string) { p.Specifications[v] = "x" }},
	{"specifications.value", func(p *records.Product, v string) { p.Specifications["colour"] = v }},
}

// Every component of a process, on kfake, srfake and a real PostgreSQL:
// records with a NUL or bytes that are not UTF-8 in every string field go
// to the streamer, the recommender, the sink and the collector, and to the
// API as POST bodies; none of them stops a component, and the valid product
// and prompt sent after them flow through every stage.
func TestPoisonInEveryFieldStopsNoComponent(t *testing.T) {
	kc := kafkatest.Start(t)
	topics := records.DefaultTopics()
	createTopics(kc)
	images := httptest.NewServer(imageserver.Handler())
	t.Cleanup(images.Close)
	imageHost := strings.TrimPrefix(images.URL, "http://")

	cfg := config.Default()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = kc.Brokers, kc.RegistryURL
	cfg.DatabaseDSN = pgtest.DB(t)
	cfg.DataDir = t.TempDir()
	cfg.BlobURL = filepath.Join(cfg.DataDir, "images")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	g := supervise.New(0)
	if err := e.AddStreamer(g, StreamerSettings{Group: "poison-streamer", InstanceID: "poison-1", MaxBatch: 500, Recommender: true}); err != nil {
		t.Fatal(err)
	}
	sk, err := e.Sink(ctx, SinkSettings{Group: sink.DefaultGroup})
	if err != nil {
		t.Fatal(err)
	}
	col, err := e.Collector(ctx, CollectorSettings{Group: "poison-collector", Fetch: DevCollectorSettings(imageHost).Fetch})
	if err != nil {
		t.Fatal(err)
	}
	api, err := e.API(ctx, APISettings{Addr: "127.0.0.1:0", MaxBody: 64 << 10, AllowHosts: []string{imageHost}}, g)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]supervise.Component{"sink": sk, "collector": col, "api": api} {
		if err := g.Add(name, c); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- g.Run(rctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("a component stopped with %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := g.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}

	// Poisoned products and prompts, straight to Kafka.
	var recs []*kgo.Record
	n := 0
	for _, f := range productFields {
		for _, poison := range poisons {
			n++
			p := records.Product{MallID: "pm", ProductID: fmt.Sprintf("p%d", n), Name: "Poisoned mug", Description: "d",
				Price: records.Price{Amount: "1.00", Currency: "USD"}, Tags: []string{}, Specifications: map[string]string{},
				Images: []records.Image{{URL: images.URL + fmt.Sprintf("/images/poison-%d.png", n)}}}
			f.set(&p, poison.value)
			recs = append(recs, encode(t, e, topics.Products, p.Key(), &p))
		}
	}
	for i, field := range []string{"search_id", "user_id", "query"} {
		for j, poison := range poisons {
			s := records.SearchPrompt{SearchID: fmt.Sprintf("s-%d-%d", i, j), UserID: "poisoner", Query: "Poisoned mug", SearchedAt: time.Now().UTC()}
			switch field {
			case "search_id":
				s.SearchID = poison.value
			case "user_id":
				s.UserID = poison.value
			case "query":
				s.Query = poison.value
			}
			recs = append(recs, encode(t, e, topics.Find, s.UserID, &s))
		}
	}
	if err := e.Client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Poisoned POST bodies: a JSON \u0000 or raw bytes that are not UTF-8
	// in each string field; each is refused, or accepted cleaned.
	for _, field := range []string{"mallId", "productId", "title", "content", "price", "currency", "imageUrl"} {
		for _, raw := range []string{`a\u0000b`, "caf\xe9"} {
			body := map[string]string{"mallId": "m1", "productId": "api-poison", "title": "Mug", "content": "c", "price": "1.00",
				"currency": "USD", "imageUrl": images.URL + "/images/api-poison.png"}
			body[field] = raw
			var b bytes.Buffer
			b.WriteString("{")
			first := true
			for k, v := range body {
				if !first {
					b.WriteString(",")
				}
				first = false
				fmt.Fprintf(&b, "%q:\"%s\"", k, strings.ReplaceAll(v, `"`, `\"`))
			}
			b.WriteString("}")
			code, answer := post(t, api.Addr(), b.Bytes())
			if code != http.StatusBadRequest {
				t.Errorf("POST with %q in %s: %d %s, want 400", raw, field, code, answer)
			}
		}
	}

	// The valid product and prompt, after every poison.
	good := `{"mallId":"m1","productId":"good-1","title":"Sturdy mug","content":"c","price":"9.50","imageUrl":"` + images.URL + `/images/good-1.png"}`
	if code, answer := post(t, api.Addr(), []byte(good)); code != http.StatusAccepted {
		t.Fatalf("the valid product: %d %s", code, answer)
	}
	prompt := records.SearchPrompt{SearchID: "good-search", UserID: "alice", Query: "sturdy mug", SearchedAt: time.Now().UTC()}
	// The prompt goes after the product is filtered, so the join finds it.
	waitFor(t, 60*time.Second, "the valid product filtered by the streamer", func() bool {
		return hasKey(t, e, topics.Filtered, "m1/good-1")
	})
	if err := e.Client.ProduceSync(ctx, encode(t, e, topics.Find, "alice", &prompt)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the valid product complete in the API", func() bool {
		resp, err := http.Get("http://" + api.Addr() + "/api/v1/complete-products/good-1?mallId=m1")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	waitFor(t, 60*time.Second, "alice's recommendation", func() bool {
		return hasKey(t, e, topics.Recommendations, "alice")
	})
	db, err := e.Database(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every table holding the valid records", func() bool {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM products WHERE key = 'm1/good-1') +
			(SELECT count(*) FROM filtered_products WHERE key = 'm1/good-1') +
			(SELECT count(*) FROM complete_products WHERE key = 'm1/good-1') +
			(SELECT count(*) FROM searches WHERE search_id = 'good-search') +
			(SELECT count(*) FROM recommendations WHERE user_id = 'alice' AND products::text LIKE '%good-1%')`).Scan(&n)
		return err == nil && n == 5
	})

	// Each poisoned product was dead-lettered, as invalid, by the sink and
	// by the collector, with a clean detail.
	by := map[string]map[string]bool{} // component -> source key
	err = topicread.Read(ctx, e.Kafka, topics.DLQ, topicread.Options{}, func(r *kgo.Record) error {
		l := deadletter.Parse(r)
		if !utf8Clean(l.Error) {
			t.Errorf("dead letter of %q by %s: detail %q is not clean", r.Key, l.Component, l.Error)
		}
		if by[l.Component] == nil {
			by[l.Component] = map[string]bool{}
		}
		by[l.Component][string(r.Key)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(by["collector"]); got != n {
		t.Errorf("the collector dead-lettered %d poisoned products, want all %d", got, n)
	}
	// The sink: every poisoned product, and the recommendations of the
	// poisoned users (the recommender joins them; their rows cannot be
	// stored).
	if got := len(by["sink"]); got < n {
		t.Errorf("the sink dead-lettered %d poisoned keys, want at least the %d products", got, n)
	}
	var poisonRows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM products WHERE mall_id = 'pm'`).Scan(&poisonRows); err != nil {
		t.Fatal(err)
	}
	t.Logf("dead letters: sink %d keys, collector %d, recommender %d; poisoned product rows stored: %d",
		len(by["sink"]), len(by["collector"]), len(by["recommender"]), poisonRows)
}

func encode(t *testing.T, e *Env, topic, key string, v any) *kgo.Record {
	t.Helper()
	val, err := e.Serde.Encode(context.Background(), nil, topic, v)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: val}
}

func post(t *testing.T, addr string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/api/v1/products", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func hasKey(t *testing.T, e *Env, topic, key string) bool {
	found := false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = topicread.Read(ctx, e.Kafka, topic, topicread.Options{}, func(r *kgo.Record) error {
		if string(r.Key) == key && r.Value != nil {
			found = true
		}
		return nil
	})
	return found
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func utf8Clean(s string) bool {
	return !strings.ContainsRune(s, 0) && strings.ToValidUTF8(s, "") == s
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
