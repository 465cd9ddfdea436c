package productapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

const topic = "shop_products"

type fixture struct {
	t     testing.TB
	kc    *kafkatest.Cluster
	srv   *httptest.Server
	cl    *kgo.Client
	serde *records.Serde
	reg   *prometheus.Registry
}

// newFixture runs the API against kfake and srfake; reads have no catalog
// here (the collector's tests cover them against PostgreSQL).
func newFixture(t testing.TB) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith lets a test change the options first.
func newFixtureWith(t testing.TB, change func(*Options)) *fixture {
	kc := kafkatest.Start(t)
	kc.CreateTopic(1, nil, topic)
	cl, serde := kc.Client(), kc.Serde
	reg := prometheus.NewRegistry()
	o := Options{Producer: cl, Serde: serde, Topics: records.Topics{Products: topic}, Registerer: reg, Gatherer: reg,
		Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }}
	if change != nil {
		change(&o)
	}
	api, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &fixture{t: t, kc: kc, srv: srv, cl: cl, serde: serde, reg: reg}
}

func (f *fixture) send(method, path, body string) (int, http.Header, []byte) {
	f.t.Helper()
	return f.sendAs("", method, path, body)
}

// sendAs sends a request with token as its bearer token (none when empty).
func (f *fixture) sendAs(token, method, path, body string) (int, http.Header, []byte) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (f *fixture) produced() []*kgo.Record {
	f.t.Helper()
	ends, err := kadm.NewClient(f.cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		f.t.Fatal(err)
	}
	end := ends[topic][0].Offset
	if end == 0 {
		return nil
	}
	c, err := f.kc.Kafka.NewClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for int64(len(out)) < end && ctx.Err() == nil {
		c.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func valid() map[string]any {
	return map[string]any{"mallId": "mall-1", "productId": "p-1", "title": "Red mug", "content": "A mug.", "price": "19.99", "imageUrl": "https://cdn.example.com/mug.png"}
}

func with(k string, v any) map[string]any {
	m := valid()
	if v == nil {
		delete(m, k)
	} else {
		m[k] = v
	}
	return m
}

func TestRejectsEachInvalidField(t *testing.T) {
	f := newFixture(t)
	many := make([]string, 11)
	for i := range many {
		many[i] = "http://x.example/" + strings.Repeat("a", i+1)
	}
	cases := []struct {
		body  map[string]any
		field string
	}{
		{with("mallId", nil), "mallId"},
		{with("mallId", ""), "mallId"},
		{with("mallId", "a/b"), "mallId"},
		{with("mallId", strings.Repeat("m", 65)), "mallId"},
		{with("mallId", 5), "mallId"},
		{with("productId", nil), "productId"},
		{with("productId", "-starts-with-dash"), "productId"},
		{with("productId", "has space"), "productId"},
		{with("title", nil), "title"},
		{with("title", "   "), "title"},
		{with("title", strings.Repeat("t", 201)), "title"},
		{with("title", "bell\x07"), "title"},
		{with("title", []string{"x"}), "title"},
		{with("content", strings.Repeat("c", 10001)), "content"},
		{with("content", 7), "content"},
		{with("price", nil), "price"},
		{with("price", "-1"), "price"},
		{with("price", "abc"), "price"},
		{with("price", "1.23456"), "price"},
		{with("price", "1e3"), "price"},
		{with("price", -2.5), "price"},
		{with("price", true), "price"},
		{with("price", "01.5"), "price"},
		{with("currency", "usd"), "currency"},
		{with("imageUrl", "ftp://x.example/a.png"), "imageUrl"},
		{with("imageUrl", "not a url"), "imageUrl"},
		{with("imageUrl", "http://user:pw@x.example/a.png"), "imageUrl"},
		{with("imageUrl", "http:///a.png"), "imageUrl"},
		{with("imageUrl", ""), "imageUrl"},
		{with("imageUrl", "http://x.example/"+strings.Repeat("a", 2048)), "imageUrl"},
		{with("imageUrl", nil), "imageUrl"},
		{with("imageUrls", []any{"http://x.example/a.png", 5}), "imageUrls[1]"},
		{with("imageUrls", []any{"javascript:alert(1)"}), "imageUrls[0]"},
		{with("imageUrls", "http://x.example/a.png"), "imageUrls"},
		{with("imageUrls", many), "imageUrls"},
		{with("colour", "red"), "colour"},
	}
	for i, c := range cases {
		raw, _ := json.Marshal(c.body)
		code, h, b := f.send("POST", "/api/v1/products", string(raw))
		var e errorBody
		if err := json.Unmarshal(b, &e); err != nil || h.Get("Content-Type") != "application/json" {
			t.Fatalf("#%d: not a JSON error: %s", i, b)
		}
		if code != http.StatusBadRequest || e.Fields[c.field] == "" {
			t.Errorf("#%d %s: %d %s, want 400 naming %s", i, raw, code, b, c.field)
		}
		if len(e.Fields) != 1 {
			t.Errorf("#%d: %d fields named, want only %s: %v", i, len(e.Fields), c.field, e.Fields)
		}
	}

	// Every bad field at once is named at once.
	code, _, b := f.send("POST", "/api/v1/products", `{"mallId":"","productId":"a/b","title":"","price":"x","imageUrl":"ftp://h/x","extra":1}`)
	var e errorBody
	json.Unmarshal(b, &e)
	for _, k := range []string{"mallId", "productId", "title", "price", "imageUrl", "extra"} {
		if e.Fields[k] == "" {
			t.Errorf("all-bad body: %s not named (%d %s)", k, code, b)
		}
	}
	for i, body := range []string{"", "not json", "[1,2]", "null", `{"a":1} {"b":2}`} {
		code, _, b := f.send("POST", "/api/v1/products", body)
		if code != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
			t.Errorf("body #%d %q: %d %s, want 400", i, body, code, b)
		}
	}
	big := with("content", strings.Repeat("x", DefaultMaxBody))
	raw, _ := json.Marshal(big)
	if code, _, b := f.send("POST", "/api/v1/products", string(raw)); code != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "65536-byte limit") {
		t.Errorf("oversized body: %d %s, want 413", code, b)
	}
	if recs := f.produced(); len(recs) != 0 {
		t.Fatalf("invalid input produced %d records", len(recs))
	}
}

func TestAcceptsAndProducesAProduct(t *testing.T) {
	f := newFixture(t)
	body := `{"mallId":"mall-1","productId":"p-1","title":" Red mug ","content":"A mug.","price":19.5,"currency":"EUR",
		"imageUrl":"https://cdn.example.com/a.png","imageUrls":["https://cdn.example.com/b.png","https://cdn.example.com/a.png"]}`
	code, h, b := f.send("POST", "/api/v1/products", body)
	if code != http.StatusAccepted {
		t.Fatalf("%d %s", code, b)
	}
	var acc acceptedBody
	json.Unmarshal(b, &acc)
	if acc.Key != "mall-1/p-1" || acc.Status != "accepted" || h.Get("Location") != "/api/v1/products/p-1?mallId=mall-1" {
		t.Fatalf("answer %s, Location %s", b, h.Get("Location"))
	}
	recs := f.produced()
	if len(recs) != 1 || string(recs[0].Key) != "mall-1/p-1" {
		t.Fatalf("produced %v", recs)
	}
	var p records.Product
	if err := f.serde.Decode(context.Background(), recs[0].Value, &p); err != nil {
		t.Fatal(err)
	}
	if p.Name != "Red mug" || p.Description != "A mug." || p.Price != (records.Price{Amount: "19.5", Currency: "EUR"}) ||
		len(p.Images) != 2 || p.Images[0].URL != "https://cdn.example.com/a.png" || p.Images[1].URL != "https://cdn.example.com/b.png" ||
		!p.UpdatedAt.Equal(time.UnixMilli(1_700_000_000_000)) {
		t.Fatalf("produced product %+v", p)
	}
}

func TestJSONEverywhere(t *testing.T) {
	f := newFixture(t)
	for i, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/api/v1/products", http.StatusMethodNotAllowed},
		{"PUT", "/api/v1/complete-products/p1", http.StatusMethodNotAllowed},
		{"GET", "/api/v2/nothing", http.StatusNotFound},
		{"GET", "/api/v1/complete-products", http.StatusServiceUnavailable}, // no catalog in this fixture
		{"GET", "/api/v1/complete-products/p1", http.StatusServiceUnavailable},
		{"GET", "/api/v1/complete-products/bad%20id", http.StatusBadRequest},
		{"GET", "/healthz", http.StatusOK},
	} {
		code, h, b := f.send(tc.method, tc.path, "")
		if code != tc.code || h.Get("Content-Type") != "application/json" || !json.Valid(b) {
			t.Errorf("#%d %s %s: %d %s %s, want %d JSON", i, tc.method, tc.path, code, h.Get("Content-Type"), b, tc.code)
		}
	}
	code, _, b := f.send("GET", "/metrics", "")
	if code != 200 || !strings.Contains(string(b), `shopstream_api_requests_total{code="405",method="GET",route="/api/v1/products"} 1`) {
		t.Errorf("metrics: %d\n%s", code, b)
	}
	code, h, b := f.send("GET", "/images/x.png", "")
	if code != 200 || h.Get("Content-Type") != "image/png" || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("image server: %d %s", code, h.Get("Content-Type"))
	}
}

// The OpenAPI document is served, parses, and covers every route.
func TestOpenAPICoversTheRoutes(t *testing.T) {
	f := newFixture(t)
	code, _, b := f.send("GET", "/api/v1/openapi.json", "")
	if code != 200 {
		t.Fatal(code)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	for path, methods := range map[string][]string{
		"/api/v1/products":                      {"post"},
		"/api/v1/products/{productId}":          {"get"},
		"/api/v1/complete-products":             {"get"},
		"/api/v1/complete-products/{productId}": {"get", "delete"},
		"/api/v1/openapi.json":                  {"get"},
		"/healthz":                              {"get"},
		"/metrics":                              {"get"},
		"/images/{name}.png":                    {"get"},
		"/readyz":                               {"get"},
	} {
		for _, m := range methods {
			if _, ok := doc.Paths[path][m]; !ok {
				t.Errorf("OpenAPI lacks %s %s", m, path)
			}
		}
	}
	// The security scheme, required everywhere but on the open routes,
	// whose operations say so; the others document 401, 403 and 429.
	var sec struct {
		Security   []map[string][]string `json:"security"`
		Components struct {
			SecuritySchemes map[string]struct{ Type, Scheme string } `json:"securitySchemes"`
		} `json:"components"`
	}
	_ = json.Unmarshal(b, &sec)
	if s := sec.Components.SecuritySchemes["bearerAuth"]; s.Type != "http" || s.Scheme != "bearer" || len(sec.Security) != 1 || sec.Security[0]["bearerAuth"] == nil {
		t.Errorf("no global bearer security scheme: %+v", sec)
	}
	open := map[string]bool{"/healthz": true, "/readyz": true, "/api/v1/openapi.json": true, "/images/{name}.png": true}
	for path, methods := range doc.Paths {
		for m, op := range methods {
			s, hasSec := op["security"].([]any)
			responses, _ := op["responses"].(map[string]any)
			switch {
			case open[path] && (!hasSec || len(s) != 0):
				t.Errorf("%s %s is open but its operation does not say security: []", m, path)
			case !open[path] && (responses["401"] == nil || responses["403"] == nil || responses["429"] == nil):
				t.Errorf("%s %s does not document 401, 403 and 429", m, path)
			}
		}
	}
}

// notReady is a process readiness with one part still starting.
type notReady struct{}

func (notReady) NotReady() map[string]string { return map[string]string{"streamer": "starting"} }

// Run listens on its address, answers the process's readiness on /readyz
// (the chart probes the API's own port) and stops when its context ends.
func TestRunServesReadinessAndStops(t *testing.T) {
	kc := kafkatest.Start(t)
	api, err := New(Options{Producer: kc.Client(), Serde: kc.Serde, Topics: records.Topics{Products: topic},
		Addr: "127.0.0.1:0", Readiness: notReady{}})
	if err != nil {
		t.Fatal(err)
	}
	if api.Addr() != "" {
		t.Errorf("Addr before Run = %q, want empty", api.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	select {
	case <-api.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	resp, err := http.Get("http://" + api.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"streamer":"starting"`) {
		t.Errorf("/readyz = %d %s, want 503 naming the streamer", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after the context ended: %v", err)
		}
	case <-time.After(7 * time.Second):
		t.Fatal("Run did not stop within its 6 s bound")
	}
}
