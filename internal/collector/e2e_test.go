package collector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/blobstore"
	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/collector"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/deadletter"
	"github.com/shopstream/shopstream/internal/imagefetch"
	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/productapi"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/testtool"
)

const (
	productTopic  = "shop_products"
	completeTopic = "products_with_full_img_set"
	dlqTopic      = "shop_products_dlq"
)

// rig is the whole product collector on the embedded stack: kfake, srfake,
// a real PostgreSQL, a local image directory, a local image server, the
// collector and the API.
type rig struct {
	t       *testing.T
	kc      *kafkatest.Cluster
	serde   *records.Serde
	store   *collector.Store
	blobs   *blobstore.Local
	bucket  blobstore.Store  // what the collector stores into: blobs unless a test says otherwise
	images  *httptest.Server // the allow-listed image server
	api     *httptest.Server
	reg     *prometheus.Registry
	hits    sync.Map // image path -> *atomic.Int64
	colOpts collector.Options
	allow   []string // the image hosts the fetcher and the API allow
	// stop stops the collector the rig started.
	stop func()
}

// startCollector runs a collector instance (its own transactional id) and
// returns a function that stops it and checks that it stopped cleanly.
func (r *rig) startCollector(ctx context.Context) (stop func()) {
	r.t.Helper()
	o := r.colOpts
	col, err := collector.New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	r.colOpts.Registerer = nil // a second instance must not register the same metrics again
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, errKilled) {
					r.t.Errorf("collector: %v", err)
				}
			case <-time.After(10 * time.Second):
				r.t.Errorf("collector did not stop within 10s of its context ending")
			}
		})
	}
}

func newRig(t *testing.T) *rig { return newRigWith(t, nil) }

// newRigWith stores images in bucket instead of the local directory.
func newRigWith(t *testing.T, bucket blobstore.Store) *rig { return newRigTuned(t, bucket, nil) }

// newRigTuned lets a test change the fetcher's and the collector's options
// (allow is the rig's image host, and the host of any server the test adds
// to it).
func newRigTuned(t *testing.T, bucket blobstore.Store, tune func(f *imagefetch.Options, c *collector.Options)) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kc := kafkatest.Start(t)
	r := &rig{t: t, kc: kc, serde: kc.Serde, reg: prometheus.NewRegistry()}
	for _, topic := range []string{productTopic, completeTopic, dlqTopic} {
		kc.CreateTopic(3, nil, topic)
	}
	r.store = collector.NewTestStore(t)
	var err error
	if r.blobs, err = blobstore.NewLocal(filepath.Join(t.TempDir(), "images")); err != nil {
		t.Fatal(err)
	}
	r.bucket = r.blobs
	if bucket != nil {
		r.bucket = bucket
	}

	// A PNG signature and 64 KiB: an image by its first bytes, over the
	// rig's 32 KiB limit.
	big := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64<<10)...)
	gen := imageserver.Handler()
	r.images = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n, _ := r.hits.LoadOrStore(req.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		switch req.URL.Path {
		case "/big.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(big)
		case "/page.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte("<html><body>not an image</body></html>"))
		case "/hang.png":
			<-req.Context().Done()
		case "/nul-status.png":
			// A status line with a NUL, which net/http cannot write.
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err == nil {
				buf.WriteString("HTTP/1.1 404 Not\x00Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				buf.Flush()
				conn.Close()
			}
		default:
			gen.ServeHTTP(w, req)
		}
	}))

	// The fetcher's own timeouts: a short one made a loaded machine fail
	// healthy downloads (TestInstancesComeAndGo did so with 400ms), so only
	// the tests about hanging hosts shorten them.
	fo := imagefetch.Options{
		AllowHosts: []string{strings.TrimPrefix(r.images.URL, "http://")},
		Attempts:   2, Backoff: 20 * time.Millisecond,
		MaxBytes: 32 << 10, Registerer: r.reg,
	}
	r.colOpts = collector.Options{
		Deps: component.Deps{
			Kafka:      kc.Kafka,
			Topics:     records.Topics{Products: productTopic, CompleteProducts: completeTopic, DLQ: dlqTopic},
			Serde:      r.serde,
			Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Registerer: r.reg,
		},
		Store: r.store, Blobs: r.bucket, RetryBackoff: 50 * time.Millisecond,
	}
	if tune != nil {
		tune(&fo, &r.colOpts)
	}
	fetcher, err := imagefetch.New(fo)
	if err != nil {
		t.Fatal(err)
	}
	r.colOpts.Fetcher = fetcher
	r.allow = fo.AllowHosts
	stopCollector := r.startCollector(ctx)
	r.stop = stopCollector

	api, err := productapi.New(productapi.Options{Producer: kc.Client(), Serde: r.serde, Topics: records.Topics{Products: productTopic}, Catalog: r.store, Registerer: r.reg, Gatherer: r.reg,
		AllowHosts: r.allow,
		// The 5 s default failed some of TestThousandConcurrentPosts's
		// POSTs on a loaded machine; productapi's own tests check the
		// deadline.
		ProduceTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.api = httptest.NewServer(api.Handler())

	t.Cleanup(func() {
		r.api.Close()
		stopCollector()
		cancel()
		r.images.Close()
	})
	return r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (r *rig) imageURL(name string) string { return r.images.URL + "/images/" + name + ".png" }

func (r *rig) hitsOf(path string) int64 {
	n, ok := r.hits.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// do sends a request to the API and decodes its JSON answer.
func (r *rig) do(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, r.api.URL+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		r.t.Fatalf("%s %s: content type %q, want application/json", method, path, ct)
	}
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		r.t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (r *rig) post(p map[string]any) {
	r.t.Helper()
	if code, body := r.do("POST", "/api/v1/products", p); code != http.StatusAccepted {
		r.t.Fatalf("POST %v: %d %v", p, code, body)
	}
}

// produce sends a product straight to the product topic, as a shop that
// bypasses the API does: the collector must guard what the API would
// have refused.
func (r *rig) produce(p records.Product) {
	r.t.Helper()
	if p.Tags == nil {
		p.Tags, p.Specifications = []string{}, map[string]string{}
	}
	if p.Price.Amount == "" {
		p.Price = records.Price{Amount: "1.00", Currency: "USD"}
	}
	val, err := r.serde.Encode(context.Background(), nil, productTopic, &p)
	if err != nil {
		r.t.Fatal(err)
	}
	cl := r.kc.Client()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: productTopic, Key: []byte(p.Key()), Value: val}).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

func product(mall, id, title string, images ...string) map[string]any {
	p := map[string]any{"mallId": mall, "productId": id, "title": title, "content": "about " + title, "price": "19.99"}
	if len(images) == 1 {
		p["imageUrl"] = images[0]
	} else {
		p["imageUrls"] = images
	}
	return p
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func pngSHA(name string) string {
	b, _ := imageserver.PNG(name, imageserver.DefaultSize)
	return sha(b)
}

func images(body map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := body["images"].([]any)
	for _, im := range list {
		out = append(out, im.(map[string]any))
	}
	return out
}

// topicRecords reads every committed record of a topic.
func (r *rig) topicRecords(topic string) []*kgo.Record {
	r.t.Helper()
	cl, err := r.kc.Kafka.NewClient(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		r.t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Stop at the end, or once nothing more arrives for a while: several
	// commit markers can sit at the end of a partition.
	last := time.Now()
	for len(want) > 0 && ctx.Err() == nil && time.Since(last) < 2*time.Second {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(rec *kgo.Record) {
			last = time.Now()
			out = append(out, rec)
			if rec.Offset+1 >= want[rec.Partition]-1 { // the last offset may be a commit marker
				delete(want, rec.Partition)
			}
		})
	}
	return out
}

func lastByKey(recs []*kgo.Record, key string) *kgo.Record {
	var last *kgo.Record
	for _, r := range recs {
		if string(r.Key) == key {
			last = r
		}
	}
	return last
}

func TestCollectUpdateDelete(t *testing.T) {
	r := newRig(t)

	// POST → the image is stored → GET lists it with its stored path.
	r.post(product("m1", "p1", "Red mug", r.imageURL("mug-red")))
	var got map[string]any
	eventually(t, 20*time.Second, "m1/p1 complete", func() bool {
		code, body := r.do("GET", "/api/v1/complete-products/p1", nil)
		got = body
		return code == http.StatusOK
	})
	ims := images(got)
	if len(ims) != 1 || ims[0]["sha256"] != pngSHA("mug-red") || ims[0]["contentType"] != "image/png" || ims[0]["url"] != r.imageURL("mug-red") {
		t.Fatalf("complete product images: %v", ims)
	}
	// The API names the image by its blob key, never by a server path.
	oldKey, _ := ims[0]["key"].(string)
	if _, has := ims[0]["path"]; has || oldKey != "m1/p1/"+pngSHA("mug-red")+".png" {
		t.Fatalf("complete product image %v: want its blob key and no server path", ims[0])
	}
	oldPath := filepath.Join(r.blobs.Root(), oldKey)
	data, err := os.ReadFile(oldPath)
	if err != nil || sha(data) != pngSHA("mug-red") {
		t.Fatalf("stored file %s: %v (sha %s)", oldPath, err, sha(data))
	}
	if n := testtool.MetricValue(t, r.reg, "shopstream_collector_stored_bytes_total"); n != float64(len(data)) {
		t.Fatalf("stored bytes metric %v, want the image's %d bytes", n, len(data))
	}
	if !strings.HasPrefix(oldPath, r.blobs.Root()) || !strings.HasSuffix(oldPath, "m1/p1/"+pngSHA("mug-red")+".png") {
		t.Fatalf("stored path %s is not content-addressed under %s", oldPath, r.blobs.Root())
	}
	code, list := r.do("GET", "/api/v1/complete-products", nil)
	items, _ := list["items"].([]any)
	if code != 200 || len(items) != 1 || images(items[0].(map[string]any))[0]["key"] != oldKey {
		t.Fatalf("list: %d %v", code, list)
	}
	// PostgreSQL is written just before the Kafka commit: the record may
	// come a moment after the state.
	var cp records.CompleteProduct
	var rec *kgo.Record
	eventually(t, 10*time.Second, "m1/p1 on the complete-product topic", func() bool {
		rec = lastByKey(r.topicRecords(completeTopic), "m1/p1")
		return rec != nil
	})
	if r.serde.Decode(context.Background(), rec.Value, &cp) != nil || cp.Images[0].Path != oldPath || cp.Product.Name != "Red mug" {
		t.Fatalf("complete-product topic: %v %+v", rec, cp)
	}

	// The same identity with the same image: not fetched again.
	fetched := r.hitsOf("/images/mug-red.png")
	r.post(product("m1", "p1", "Red mug, large", r.imageURL("mug-red")))
	eventually(t, 20*time.Second, "title update", func() bool {
		_, body := r.do("GET", "/api/v1/complete-products/p1?mallId=m1", nil)
		return body["title"] == "Red mug, large"
	})
	if n := r.hitsOf("/images/mug-red.png"); n != fetched {
		t.Fatalf("unchanged image fetched again: %d requests, was %d", n, fetched)
	}
	if n := testtool.MetricValue(t, r.reg, "shopstream_collector_images_reused_total"); n != 1 {
		t.Fatalf("images reused metric %v, want 1", n)
	}

	// A new image URL: re-collected, the old image removed.
	r.post(product("m1", "p1", "Blue mug", r.imageURL("mug-blue")))
	eventually(t, 20*time.Second, "re-collected image", func() bool {
		_, body := r.do("GET", "/api/v1/complete-products/p1", nil)
		ims := images(body)
		return len(ims) == 1 && ims[0]["sha256"] == pngSHA("mug-blue")
	})
	_, body := r.do("GET", "/api/v1/complete-products/p1", nil)
	newPath := filepath.Join(r.blobs.Root(), images(body)[0]["key"].(string))
	if _, err := os.Stat(newPath); err != nil {
		t.Fatalf("new image: %v", err)
	}
	eventually(t, 5*time.Second, "old image removed", func() bool {
		_, err := os.Stat(oldPath)
		return errors.Is(err, fs.ErrNotExist)
	})

	// DELETE → images gone from storage, GET 404, a tombstone downstream.
	if code, body := r.do("DELETE", "/api/v1/complete-products/p1", nil); code != http.StatusAccepted || body["key"] != "m1/p1" {
		t.Fatalf("DELETE: %d %v", code, body)
	}
	eventually(t, 20*time.Second, "deleted", func() bool {
		code, _ := r.do("GET", "/api/v1/complete-products/p1", nil)
		return code == http.StatusNotFound
	})
	eventually(t, 5*time.Second, "image files removed", func() bool {
		_, err := os.Stat(newPath)
		entries, _ := os.ReadDir(r.blobs.Root())
		return errors.Is(err, fs.ErrNotExist) && len(entries) == 0
	})
	if rec := lastByKey(r.topicRecords(completeTopic), "m1/p1"); rec == nil || rec.Value != nil {
		t.Fatalf("the last complete-product record of m1/p1 is not a tombstone: %v", rec)
	}
	if code, body := r.do("DELETE", "/api/v1/complete-products/p1", nil); code != http.StatusNotFound {
		t.Fatalf("second DELETE: %d %v, want 404", code, body)
	}
	if n := testtool.MetricValue(t, r.reg, "shopstream_collector_blobs_deleted_total"); n != 2 {
		t.Fatalf("blobs deleted metric %v, want 2", n)
	}
}

// Each bad image ends its product as failed with a reason a user can act
// on, visible in the API, with the record in the dead-letter topic.
func TestFailedCollection(t *testing.T) {
	// A short attempt timeout, shorter than the header timeout: the hanging
	// server costs the timeout of each attempt, and is retried once.
	r := newRigTuned(t, nil, func(f *imagefetch.Options, _ *collector.Options) { f.Timeout = 400 * time.Millisecond })
	internal := httptest.NewServer(imageserver.Handler()) // loopback, not allow-listed
	defer internal.Close()
	var internalHits atomic.Int64
	internal.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		internalHits.Add(1)
		imageserver.Handler().ServeHTTP(w, req)
	})
	cases := []struct{ id, url, reason string }{
		{"metadata", "http://169.254.169.254/latest/meta-data/iam", "refused to connect to 169.254.169.254: the cloud metadata service"},
		{"loopback", internal.URL + "/images/a.png", "refused to connect to 127.0.0.1: a loopback address"},
		{"too-large", r.images.URL + "/big.png", "over the 32768-byte limit"},
		{"not-image", r.images.URL + "/page.html", "content type text/html is not an image"},
		{"hanging", r.images.URL + "/hang.png", "no complete answer within 400ms (after 2 attempts)"},
		{"missing", r.images.URL + "/nope.jpg", "404 Not Found"},
	}
	for _, c := range cases {
		// The API refuses internal IP literals itself; the collector must
		// refuse them as well when a product comes straight to Kafka.
		r.produce(records.Product{MallID: "m1", ProductID: c.id, Name: c.id, Images: []records.Image{{URL: c.url}}})
	}
	// One good product alongside proves the failures do not stall others.
	r.post(product("m1", "good", "good", r.imageURL("good")))
	for _, c := range cases {
		var st map[string]any
		eventually(t, 20*time.Second, c.id+" reported", func() bool {
			code, body := r.do("GET", "/api/v1/products/"+c.id+"?mallId=m1", nil)
			st = body
			return code == http.StatusOK
		})
		reason, _ := st["reason"].(string)
		if st["status"] != "failed" || !strings.Contains(reason, c.reason) || !strings.Contains(reason, c.url) {
			t.Errorf("%s: status %v reason %q, want failed saying %q", c.id, st["status"], reason, c.reason)
		}
		code, body := r.do("GET", "/api/v1/complete-products/"+c.id, nil)
		if code != http.StatusNotFound || body["status"] != "failed" || body["reason"] != reason {
			t.Errorf("%s: GET complete: %d %v, want 404 with status failed and the reason", c.id, code, body)
		}
	}
	eventually(t, 20*time.Second, "the good product complete", func() bool {
		code, _ := r.do("GET", "/api/v1/complete-products/good", nil)
		return code == http.StatusOK
	})
	if n := internalHits.Load(); n != 0 {
		t.Fatalf("the loopback server was reached %d times", n)
	}
	if n := r.hitsOf("/hang.png"); n != 2 {
		t.Fatalf("hanging server: %d attempts, want 2", n)
	}
	if n := r.hitsOf("/big.png") + r.hitsOf("/page.html"); n != 2 {
		t.Fatalf("permanent failures retried: %d requests, want 2", n)
	}
	dlq := r.topicRecords(dlqTopic)
	for _, c := range cases {
		rec := lastByKey(dlq, "m1/"+c.id)
		if rec == nil {
			t.Errorf("%s: no dead letter", c.id)
			continue
		}
		h := map[string]string{}
		for _, kv := range rec.Headers {
			h[kv.Key] = string(kv.Value)
		}
		var p records.Product
		if h[deadletter.HeaderReason] != deadletter.ReasonImagesFailed || !strings.Contains(h[deadletter.HeaderError], c.reason) ||
			h[deadletter.HeaderSourceTopic] != productTopic || h[deadletter.HeaderComponent] != "collector" ||
			r.serde.Decode(context.Background(), rec.Value, &p) != nil || p.ProductID != c.id {
			t.Errorf("%s: dead letter headers %v, product %+v", c.id, h, p)
		}
	}
	// Nothing of the failed products was stored.
	var files []string
	filepath.WalkDir(r.blobs.Root(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 || !strings.Contains(files[0], "/m1/good/") {
		t.Fatalf("stored files %v, want only the good product's", files)
	}
}

// Several malls may use the same productId; reads say so, and pages walk
// through everything once.
func TestMallsAndPages(t *testing.T) {
	r := newRig(t)
	for _, m := range []string{"m1", "m2", "m3"} {
		for i := 0; i < 4; i++ {
			r.post(product(m, fmt.Sprintf("p%d", i), m, r.imageURL(fmt.Sprintf("%s-%d", m, i))))
		}
	}
	eventually(t, 30*time.Second, "12 complete", func() bool {
		_, body := r.do("GET", "/api/v1/complete-products?limit=100", nil)
		items, _ := body["items"].([]any)
		return len(items) == 12
	})
	code, body := r.do("GET", "/api/v1/complete-products/p1", nil)
	if code != http.StatusConflict || fmt.Sprint(body["mallIds"]) != "[m1 m2 m3]" {
		t.Fatalf("ambiguous GET: %d %v", code, body)
	}
	if code, body := r.do("DELETE", "/api/v1/complete-products/p1", nil); code != http.StatusConflict {
		t.Fatalf("ambiguous DELETE: %d %v", code, body)
	}
	if code, body := r.do("GET", "/api/v1/complete-products/p1?mallId=m2", nil); code != 200 || body["mallId"] != "m2" {
		t.Fatalf("GET with mallId: %d %v", code, body)
	}
	if code, _ := r.do("GET", "/api/v1/complete-products/p1?mallId=m9", nil); code != http.StatusNotFound {
		t.Fatalf("unknown mall: %d", code)
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("more than 5 pages of 5")
		}
		code, body := r.do("GET", "/api/v1/complete-products?limit=5&cursor="+cursor, nil)
		if code != 200 {
			t.Fatalf("page: %d %v", code, body)
		}
		for _, it := range body["items"].([]any) {
			m := it.(map[string]any)
			seen = append(seen, m["mallId"].(string)+"/"+m["productId"].(string))
		}
		next, _ := body["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 12 || seen[0] != "m1/p0" || seen[11] != "m3/p3" {
		t.Fatalf("paged through %v", seen)
	}
	_, body = r.do("GET", "/api/v1/complete-products?mallId=m2&limit=10", nil)
	if items := body["items"].([]any); len(items) != 4 {
		t.Fatalf("mallId filter: %d items", len(items))
	}
	for i, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=!!!", "cursor=bm9wZQ", "mallId=a/b"} {
		if code, body := r.do("GET", "/api/v1/complete-products?"+q, nil); code != http.StatusBadRequest || body["fields"] == nil {
			t.Errorf("#%d %s: %d %v, want 400 naming the field", i, q, code, body)
		}
	}
}

// No accepted product is lost: 1000 concurrent POSTs end as 1000 complete
// products.
func TestThousandConcurrentPosts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := newRig(t)
	const n = 1000
	var wg sync.WaitGroup
	var accepted atomic.Int64
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, _ := json.Marshal(product(fmt.Sprintf("mall-%d", i%10), fmt.Sprintf("prod-%d", i), "thing", r.imageURL(fmt.Sprintf("thing-%d", i%50))))
			resp, err := http.Post(r.api.URL+"/api/v1/products", "application/json", bytes.NewReader(raw))
			if err != nil {
				errs <- err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				errs <- resp.Status
				return
			}
			accepted.Add(1)
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("POST: %s", e)
	}
	if accepted.Load() != n {
		t.Fatalf("%d of %d accepted", accepted.Load(), n)
	}
	var count int
	eventually(t, 90*time.Second, "1000 complete products", func() bool {
		count = 0
		cursor := ""
		for {
			_, body := r.do("GET", "/api/v1/complete-products?limit=100&cursor="+cursor, nil)
			count += len(body["items"].([]any))
			next, _ := body["nextCursor"].(string)
			if next == "" {
				return count == n
			}
			cursor = next
		}
	})
}

// Instances come and go mid-stream (a rebalance, a stop in the middle of a
// batch); every product still ends complete, and the complete-product topic
// holds exactly one committed record per product: nothing lost, nothing
// emitted twice.
func TestInstancesComeAndGo(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 300
	second := r.startCollector(ctx)
	for i := 0; i < n; i++ {
		r.post(product(fmt.Sprintf("m%d", i%3), fmt.Sprintf("p%d", i), "x", r.imageURL(fmt.Sprintf("x-%d", i%20))))
		switch i {
		case 100:
			second() // leaves mid-stream
		case 200:
			defer r.startCollector(ctx)() // joins mid-stream
		}
	}
	eventually(t, 60*time.Second, "300 complete", func() bool {
		pg, _ := r.store.ListComplete(context.Background(), catalog.ListQuery{Limit: n + 1})
		return len(pg) == n
	})
	// The database commit comes just before the Kafka commit, and an
	// instance stopped mid-transaction holds read_committed readers back
	// until its transaction is aborted: wait for the committed output.
	var per map[string]int
	eventually(t, 60*time.Second, "300 keys on the complete-product topic", func() bool {
		per = map[string]int{}
		for _, rec := range r.topicRecords(completeTopic) {
			per[string(rec.Key)]++
		}
		return len(per) == n
	})
	for k, c := range per {
		if c != 1 {
			t.Errorf("%s: %d committed records, want 1", k, c)
		}
	}
}

// The same flow against the S3 code path: gocloud.dev's in-memory bucket
// stands in for S3, which cannot run here.
func TestCollectIntoABucket(t *testing.T) {
	bucket, err := blobstore.Open(context.Background(), "mem://", "")
	if err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, bucket)
	r.post(product("m1", "p1", "Mug", r.imageURL("a"), r.imageURL("b")))
	var body map[string]any
	eventually(t, 20*time.Second, "complete", func() bool {
		var code int
		code, body = r.do("GET", "/api/v1/complete-products/p1", nil)
		return code == http.StatusOK
	})
	ims := images(body)
	if len(ims) != 2 || ims[0]["key"] != "m1/p1/"+pngSHA("a")+".png" || ims[1]["key"] != "m1/p1/"+pngSHA("b")+".png" {
		t.Fatalf("images %v", ims)
	}
	key := "m1/p1/" + pngSHA("a") + ".png"
	if info, err := bucket.Stat(context.Background(), key); err != nil || info.ContentType != "image/png" {
		t.Fatalf("stored blob: %+v %v", info, err)
	}
	r.do("DELETE", "/api/v1/complete-products/p1", nil)
	eventually(t, 20*time.Second, "blobs deleted", func() bool {
		_, errA := bucket.Stat(context.Background(), key)
		_, errB := bucket.Stat(context.Background(), "m1/p1/"+pngSHA("b")+".png")
		return errors.Is(errA, blobstore.ErrNotFound) && errors.Is(errB, blobstore.ErrNotFound)
	})
}

// Records that are not products go to the dead-letter topic with the reason;
// the collector goes on. A product malformed after its name is among them:
// the streamer reads a product its filter drops only up to the name, and
// leaves such a record to the components that decode every product.
func TestUndecodableRecordsAreDeadLettered(t *testing.T) {
	r := newRig(t)
	cl := r.kc.Client()
	p := records.Product{MallID: "m1", ProductID: "other", Name: "x", Price: records.Price{Amount: "1", Currency: "USD"}}
	val, err := r.serde.Encode(context.Background(), nil, productTopic, &p)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: productTopic, Key: []byte("m1/plain"), Value: []byte(`{"json":"not avro"}`)},
		&kgo.Record{Topic: productTopic, Key: []byte("m1/mismatch"), Value: val},
		&kgo.Record{Topic: productTopic, Value: val},
		&kgo.Record{Topic: productTopic, Key: []byte("m1/cut"), Value: val[:len(val)-1]},
		&kgo.Record{Topic: productTopic, Key: []byte("m1/trailing"), Value: append(bytes.Clone(val), 0)},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r.post(product("m1", "after", "after", r.imageURL("after")))
	eventually(t, 20*time.Second, "the next product collected", func() bool {
		code, _ := r.do("GET", "/api/v1/complete-products/after", nil)
		return code == http.StatusOK
	})
	want := map[string]struct{ reason, says string }{
		"m1/plain":    {deadletter.ReasonNotFramed, "not in the Confluent wire format"},
		"m1/mismatch": {deadletter.ReasonKeyMismatch, `does not match the product's mall_id/product_id "m1/other"`},
		"":            {deadletter.ReasonNoKey, "record has no key"},
		"m1/cut":      {deadletter.ReasonMalformed, "does not decode as a Product"},
		"m1/trailing": {deadletter.ReasonMalformed, "trailing bytes"},
	}
	dlq := r.topicRecords(dlqTopic)
	for key, w := range want {
		rec := lastByKey(dlq, key)
		if rec == nil {
			t.Errorf("%q: not dead-lettered", key)
			continue
		}
		d := deadletter.Parse(rec)
		if d.Reason != w.reason || !strings.Contains(d.Error, w.says) || d.Component != "collector" {
			t.Errorf("%q: reason %q, error %q, by %q; want %s saying %q, by the collector", key, d.Reason, d.Error, d.Component, w.reason, w.says)
		}
	}
	if code, _ := r.do("GET", "/api/v1/products/other", nil); code != http.StatusNotFound {
		t.Errorf("a mismatched record created a product: %d", code)
	}
}

// No single record stops the collector: a status line with a NUL ends its
// product failed with a clean reason; a product whose fields PostgreSQL
// cannot store (a NUL, bytes that are not UTF-8) is dead-lettered; the
// product after them completes. Before, each of them rolled the batch back
// and was retried forever (SQLSTATE 22021, 22P05), and nothing after it
// was collected.
func TestPoisonRecordsDoNotStopTheCollector(t *testing.T) {
	r := newRig(t)
	r.post(product("m1", "nul-status", "Mug", r.images.URL+"/nul-status.png"))
	r.produce(records.Product{MallID: "m1", ProductID: "nul-name", Name: "Mug\x00", Images: []records.Image{{URL: r.imageURL("n1")}}})
	r.produce(records.Product{MallID: "m1", ProductID: "bad-utf8", Name: "Mug", Description: "caf\xe9", Images: []records.Image{{URL: r.imageURL("n2")}}})
	r.produce(records.Product{MallID: "m1", ProductID: "nul-alt", Name: "Mug", Images: []records.Image{{URL: r.imageURL("n3"), Alt: "a\x00"}}})
	r.post(product("m1", "next", "Next mug", r.imageURL("next")))

	eventually(t, 20*time.Second, "the product after the poison complete", func() bool {
		code, _ := r.do("GET", "/api/v1/complete-products/next?mallId=m1", nil)
		return code == http.StatusOK
	})
	var st map[string]any
	eventually(t, 10*time.Second, "nul-status reported", func() bool {
		code, body := r.do("GET", "/api/v1/products/nul-status?mallId=m1", nil)
		st = body
		return code == http.StatusOK
	})
	reason, _ := st["reason"].(string)
	if st["status"] != "failed" || !strings.Contains(reason, "404 Not\uFFFDFound") || strings.ContainsRune(reason, 0) {
		t.Fatalf("nul-status: %v, want failed with the status line cleaned", st)
	}
	dlq := r.topicRecords(dlqTopic)
	for _, c := range []struct{ id, reason, says string }{
		{"nul-status", deadletter.ReasonImagesFailed, "404 Not\uFFFDFound"},
		{"nul-name", deadletter.ReasonInvalid, "field name contains a NUL character"},
		{"bad-utf8", deadletter.ReasonInvalid, "field description is not valid UTF-8"},
		{"nul-alt", deadletter.ReasonInvalid, "field images contains a NUL character"},
	} {
		rec := lastByKey(dlq, "m1/"+c.id)
		if rec == nil {
			t.Errorf("%s: no dead letter", c.id)
			continue
		}
		l := deadletter.Parse(rec)
		if l.Reason != c.reason || !strings.Contains(l.Error, c.says) || strings.ContainsRune(l.Error, 0) {
			t.Errorf("%s: dead letter %s %q, want %s saying %q", c.id, l.Reason, l.Error, c.reason, c.says)
		}
	}
	if n := r.hitsOf("/images/n1.png") + r.hitsOf("/images/n2.png") + r.hitsOf("/images/n3.png"); n != 0 {
		t.Errorf("images of products that cannot be stored were fetched %d times", n)
	}
}
