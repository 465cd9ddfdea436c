package productapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopstream/shopstream/internal/apiauth"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
)

// clock is a test clock the keys and the API share.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tokens creates a tokens file with one token per options, returning the
// tokens in order and the keys over the file.
func tokens(t *testing.T, clk *clock, opts ...apiauth.Options) (string, []string, *apiauth.Keys) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-tokens.json")
	var out []string
	for _, o := range opts {
		o.Now = clk.Now()
		tok, _, err := apiauth.Create(path, o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok)
	}
	keys, err := apiauth.Open(path, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return path, out, keys
}

func product(mall, id string) string {
	b, _ := json.Marshal(map[string]any{"mallId": mall, "productId": id, "title": "Mug", "price": "9.50", "imageUrl": "https://cdn.example.com/mug.png"})
	return string(b)
}

// What a caller sees with no token, a bad one, a read token, a write token
// limited to a mall, and a write token for every mall; what is open.
func TestTokensScopesAndMalls(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	path, toks, keys := tokens(t, clk,
		apiauth.Options{Scope: apiauth.ScopeRead},
		apiauth.Options{Scope: apiauth.ScopeWrite, Mall: "m1"},
		apiauth.Options{Scope: apiauth.ScopeWrite})
	read, writeM1, write := toks[0], toks[1], toks[2]
	f := newFixtureWith(t, func(o *Options) { o.Auth = keys })

	for i, tc := range []struct {
		token, method, path, body string
		code                      int
		challenge                 string // in WWW-Authenticate
	}{
		{"", "POST", "/api/v1/products", product("m1", "p1"), 401, `Bearer realm="shopstream"`},
		{"sst_000000000000_" + strings.Repeat("A", 43), "POST", "/api/v1/products", product("m1", "p1"), 401, `error="invalid_token"`},
		{"not-a-token", "GET", "/api/v1/complete-products", "", 401, `error="invalid_token"`},
		{read, "POST", "/api/v1/products", product("m1", "p1"), 403, `error="insufficient_scope", scope="write"`},
		{read, "DELETE", "/api/v1/complete-products/p1?mallId=m1", "", 403, `scope="write"`},
		{writeM1, "POST", "/api/v1/products", product("m2", "p1"), 403, `error="insufficient_scope"`},
		{writeM1, "GET", "/api/v1/complete-products?mallId=m2", "", 403, `error="insufficient_scope"`},
		{writeM1, "DELETE", "/api/v1/complete-products/p1?mallId=m2", "", 403, `error="insufficient_scope"`},
		{writeM1, "GET", "/metrics", "", 403, `error="insufficient_scope"`},
		{"", "GET", "/metrics", "", 401, `Bearer realm="shopstream"`},
		{writeM1, "POST", "/api/v1/products", product("m1", "p1"), 202, ""},
		{write, "POST", "/api/v1/products", product("m2", "p2"), 202, ""},
		{read, "GET", "/metrics", "", 200, ""},
		{"", "GET", "/healthz", "", 200, ""},
		{"", "GET", "/readyz", "", 200, ""},
		{"", "GET", "/api/v1/openapi.json", "", 200, ""},
	} {
		code, h, b := f.sendAs(tc.token, tc.method, tc.path, tc.body)
		if code != tc.code {
			t.Errorf("#%d %s %s: %d %s, want %d", i, tc.method, tc.path, code, b, tc.code)
			continue
		}
		if tc.challenge != "" && !strings.Contains(h.Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("#%d: WWW-Authenticate %q, want %q in it", i, h.Get("WWW-Authenticate"), tc.challenge)
		}
		if code >= 400 {
			var e errorBody
			if err := json.Unmarshal(b, &e); err != nil || e.Error == "" || e.RequestID == "" || h.Get("Content-Type") != "application/json" {
				t.Errorf("#%d: %d body %s is not a JSON error with a request id", i, code, b)
			}
		}
	}
	if recs := f.produced(); len(recs) != 2 {
		t.Fatalf("%d records produced, want the 2 that were allowed", len(recs))
	}

	// A revoked token stops working once the file is read again, without
	// a restart.
	id := strings.Split(write, "_")[1]
	if ok, err := apiauth.Revoke(path, id); err != nil || !ok {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	clk.Add(2 * time.Second)
	if code, _, b := f.sendAs(write, "POST", "/api/v1/products", product("m2", "p3")); code != 401 {
		t.Fatalf("a revoked token: %d %s, want 401", code, b)
	}
	if code, _, _ := f.sendAs(read, "GET", "/metrics", ""); code != 200 {
		t.Fatalf("the other tokens after a revoke: %d, want 200", code)
	}
}

// A token over its rate gets 429 with Retry-After; its limit refills.
func TestRateLimitPerToken(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	_, toks, keys := tokens(t, clk,
		apiauth.Options{Scope: apiauth.ScopeWrite, Rate: 0.5, Burst: 2},
		apiauth.Options{Scope: apiauth.ScopeWrite})
	slow, other := toks[0], toks[1]
	f := newFixtureWith(t, func(o *Options) { o.Auth = keys })
	for i := 0; i < 2; i++ {
		if code, _, b := f.sendAs(slow, "POST", "/api/v1/products", product("m1", fmt.Sprint("p", i))); code != 202 {
			t.Fatalf("request %d within the burst: %d %s", i, code, b)
		}
	}
	code, h, b := f.sendAs(slow, "POST", "/api/v1/products", product("m1", "p9"))
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "2" || !strings.Contains(string(b), `"requestId"`) {
		t.Fatalf("over the limit: %d Retry-After %q %s, want 429 with Retry-After 2", code, h.Get("Retry-After"), b)
	}
	if code, _, _ := f.sendAs(other, "POST", "/api/v1/products", product("m1", "p10")); code != 202 {
		t.Fatalf("another token is limited by the first one's rate: %d", code)
	}
	clk.Add(2 * time.Second)
	if code, _, b := f.sendAs(slow, "POST", "/api/v1/products", product("m1", "p11")); code != 202 {
		t.Fatalf("after Retry-After: %d %s", code, b)
	}
}

// The API will not serve beyond loopback without tokens unless told to.
func TestRefusesToServeBeyondLoopbackWithoutTokens(t *testing.T) {
	kc := kafkatest.Start(t)
	base := Options{Producer: kc.Client(), Serde: kc.Serde, Topics: records.Topics{Products: topic}}
	for i, tc := range []struct {
		addr     string
		insecure bool
		ok       bool
	}{
		{"0.0.0.0:8080", false, false}, {":8080", false, false}, {"10.1.2.3:8080", false, false}, {"[::]:8080", false, false},
		{"0.0.0.0:8080", true, true}, {"127.0.0.1:8080", false, true}, {"[::1]:8080", false, true}, {"localhost:8080", false, true},
	} {
		o := base
		o.Addr, o.InsecureNoAuth = tc.addr, tc.insecure
		_, err := New(o)
		if (err == nil) != tc.ok {
			t.Errorf("#%d %s insecure=%v: %v, want ok=%v", i, tc.addr, tc.insecure, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "API_TOKENS_FILE") || !strings.Contains(err.Error(), "--insecure-no-auth")) {
			t.Errorf("#%d: %v does not say what to do", i, err)
		}
	}
}

// Image URLs that name an internal address, a zone or a numeric host are
// refused at once, naming the field; an allow-listed host is accepted.
func TestRefusesInternalImageURLs(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.AllowHosts = []string{"127.0.0.1:8080"} })
	for i, tc := range []struct {
		field string
		body  map[string]any
	}{
		{"imageUrl", with("imageUrl", "http://[::1%25lo]:8080/images/a.png")},
		{"imageUrl", with("imageUrl", "http://[fe80::1%25eth0]/a.png")},
		{"imageUrl", with("imageUrl", "http://169.254.169.254/latest/meta-data/")},
		{"imageUrl", with("imageUrl", "http://[::ffff:10.0.0.1]/a.png")},
		{"imageUrl", with("imageUrl", "http://2130706433/a.png")},
		{"imageUrl", with("imageUrl", "http://127.1/a.png")},
		{"imageUrl", with("imageUrl", "http://127.0.0.1:9999/a.png")},
		{"imageUrls[1]", with("imageUrls", []string{"https://cdn.example.com/a.png", "http://[2002:c0a8:101::1]/b.png"})},
	} {
		raw, _ := json.Marshal(tc.body)
		code, _, b := f.send("POST", "/api/v1/products", string(raw))
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if code != 400 || !strings.Contains(e.Fields[tc.field], "public host") {
			t.Errorf("#%d: %d %s, want 400 naming %s", i, code, b, tc.field)
		}
	}
	raw, _ := json.Marshal(with("imageUrl", "http://127.0.0.1:8080/images/a.png"))
	if code, _, b := f.send("POST", "/api/v1/products", string(raw)); code != 202 {
		t.Fatalf("an allow-listed image host: %d %s", code, b)
	}
	if n := len(f.produced()); n != 1 {
		t.Fatalf("%d records produced, want 1", n)
	}
}

// A field given twice is refused: encoding/json would keep the last one,
// a proxy in front of the API may have checked the first.
func TestRefusesDuplicateKeys(t *testing.T) {
	f := newFixture(t)
	body := `{"mallId":"m1","productId":"p1","title":"Mug","price":"1","imageUrl":"https://cdn.example.com/a.png","mallId":"m2"}`
	code, _, b := f.send("POST", "/api/v1/products", body)
	var e errorBody
	_ = json.Unmarshal(b, &e)
	if code != 400 || e.Fields["mallId"] == "" {
		t.Fatalf("%d %s, want 400 naming mallId", code, b)
	}
	if n := len(f.produced()); n != 0 {
		t.Fatalf("%d records produced", n)
	}
}

// A thousand made-up methods add one series, not a thousand.
func TestUnknownMethodsShareOneLabel(t *testing.T) {
	f := newFixture(t)
	count := func() int { return testutil.CollectAndCount(f.reg, "shopstream_api_requests_total") }
	f.send("FOO", "/api/v1/products", "")
	before := count()
	for i := 0; i < 1000; i++ {
		if code, _, _ := f.send(fmt.Sprintf("M%03d", i), "/api/v1/products", ""); code != 405 {
			t.Fatalf("method M%03d: %d, want 405", i, code)
		}
	}
	if after := count(); after != before {
		t.Fatalf("series went from %d to %d after 1000 unknown methods", before, after)
	}
	if n := testutil.ToFloat64(f.reqCounter("/api/v1/products", "other", "405")); n != 1001 {
		t.Fatalf("other/405 = %v, want 1001", n)
	}
}

func (f *fixture) reqCounter(route, method, code string) prometheus.Collector {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "shopstream_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["route"] == route && l["method"] == method && l["code"] == code {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

// With Kafka gone, POST answers 503 within the produce deadline; the body
// says what to do and carries a request id, the log the detail.
func TestPostAnswers503WhenKafkaIsDown(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	f := newFixtureWith(t, func(o *Options) {
		o.ProduceTimeout = 2 * time.Second
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	})
	// Encode once so the schema is cached, as it is in a running API.
	if code, _, b := f.send("POST", "/api/v1/products", product("m1", "warm")); code != 202 {
		t.Fatalf("%d %s", code, b)
	}
	f.kc.Fake.Close()
	t0 := time.Now()
	code, h, b := f.send("POST", "/api/v1/products", product("m1", "p1"))
	d := time.Since(t0)
	if code != http.StatusServiceUnavailable || d > 4*time.Second {
		t.Fatalf("%d after %s, want 503 within the 2 s deadline", code, d.Round(time.Millisecond))
	}
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || e.RequestID == "" || h.Get("Retry-After") == "" {
		t.Fatalf("body %s, Retry-After %q: want a request id and Retry-After", b, h.Get("Retry-After"))
	}
	for _, leak := range append([]string{"127.0.0.1", "dial", "context deadline"}, f.kc.Brokers...) {
		if strings.Contains(string(b), leak) {
			t.Errorf("the body %s carries %q", b, leak)
		}
	}
	mu.Lock()
	log := logs.String()
	mu.Unlock()
	if !strings.Contains(log, "request_id="+e.RequestID) || !strings.Contains(log, "err=") {
		t.Errorf("the log does not carry the detail under the request id %s:\n%s", e.RequestID, log)
	}
	t.Logf("503 after %s", d.Round(time.Millisecond))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
