package imagefetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopstream/shopstream/internal/imageserver"
)

// counting serves h and counts the requests that reached it.
type counting struct {
	*httptest.Server
	hits atomic.Int64
}

func serve(t *testing.T, h http.HandlerFunc) *counting {
	c := &counting{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func fastOptions(allow ...string) Options {
	return Options{AllowHosts: allow, Timeout: 300 * time.Millisecond, Attempts: 3, Backoff: 10 * time.Millisecond, MaxBytes: 64 << 10}
}

func newFetcher(t *testing.T, o Options) *Fetcher {
	t.Helper()
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func fetchErr(t *testing.T, err error) *Error {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return fe
}

func TestFetchesAnAllowListedImage(t *testing.T) {
	img := serve(t, imageserver.Handler().ServeHTTP)
	reg := prometheus.NewRegistry()
	o := fastOptions(hostOf(img.Server))
	o.Registerer = reg
	f := newFetcher(t, o)
	im, err := f.Fetch(context.Background(), img.URL+"/images/a.png")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := imageserver.PNG("a", imageserver.DefaultSize)
	sum := sha256.Sum256(want)
	if im.ContentType != "image/png" || im.SHA256 != hex.EncodeToString(sum[:]) || im.Ext() != ".png" {
		t.Fatalf("got %s %s %s", im.ContentType, im.SHA256, im.Ext())
	}
	if n := testutil.ToFloat64(f.fetches.WithLabelValues("ok")); n != 1 {
		t.Fatalf("ok fetches metric %v", n)
	}
}

func TestRefusesInternalAddresses(t *testing.T) {
	internal := serve(t, imageserver.Handler().ServeHTTP) // on 127.0.0.1, not allow-listed
	allowed := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/images/a.png", http.StatusFound)
	})
	f := newFetcher(t, fastOptions(hostOf(allowed.Server)))
	port := internal.URL[strings.LastIndex(internal.URL, ":"):]
	for i, tc := range []struct{ url, why string }{
		{internal.URL + "/images/a.png", "loopback"},
		{"http://localhost" + port + "/images/a.png", "loopback"}, // a name that resolves inside
		{"http://[::ffff:127.0.0.1]" + port + "/images/a.png", "loopback"},
		{"http://169.254.169.254/latest/meta-data/", "metadata"},
		{"http://10.1.2.3/x.png", "private"},
		{"http://[fe80::1]/x.png", "link-local"},
		{"http://0.0.0.0" + port + "/x.png", "unspecified"},
		{allowed.URL + "/redirect", "loopback"}, // an allowed host redirecting inside
	} {
		t0 := time.Now()
		_, err := f.Fetch(context.Background(), tc.url)
		fe := fetchErr(t, err)
		var re *RefusedError
		if fe.Kind != "refused" || !fe.Permanent || !errors.As(err, &re) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("#%d %s: %v (kind %s), want refused as %s", i, tc.url, err, fe.Kind, tc.why)
		}
		if d := time.Since(t0); d > 200*time.Millisecond {
			t.Errorf("#%d: refusal took %s: it must not wait or retry", i, d)
		}
	}
	if n := internal.hits.Load(); n != 0 {
		t.Fatalf("the internal server was reached %d times", n)
	}
	if n := allowed.hits.Load(); n != 1 {
		t.Fatalf("the allowed server was reached %d times, want 1 (no retry of a refusal)", n)
	}
}

func TestBlockedReason(t *testing.T) {
	for i, tc := range []struct {
		addr    string
		blocked bool
	}{
		{"127.0.0.1", true}, {"127.8.9.10", true}, {"::1", true}, {"10.0.0.1", true},
		{"172.16.0.1", true}, {"172.31.255.255", true}, {"192.168.1.1", true}, {"169.254.169.254", true},
		{"100.100.100.200", true}, {"fd00:ec2::254", true}, {"fc00::1", true}, {"::ffff:10.0.0.1", true},
		{"64:ff9b::7f00:1", true}, {"224.0.0.1", true},
		// Zones: classified without them, and refused with them anyway.
		{"::1%lo", true}, {"fe80::1%eth0", true}, {"fd00:ec2::254%eth0", true}, {"::ffff:127.0.0.1%lo", true},
		{"2606:4700::1111%eth0", true},
		// Forms that embed an IPv4 address.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true}, // Teredo
		{"2002:c0a8:101::1", true},                     // 6to4 of 192.168.1.1
		{"2002:808:808::1", true},                      // 6to4 of a public address: no image host needs it
		{"64:ff9b::a00:1", true}, {"64:ff9b:1::a00:1", true}, {"::127.0.0.1", true}, {"::10.0.0.1", true},
		{"::ffff:169.254.169.254", true}, {"::ffff:7f00:1", true},
		// What Go calls global unicast and is still not the internet.
		{"192.0.2.1", true}, {"2001:db8::1", true}, {"100::1", true}, {"fec0::1", true}, {"255.255.255.255", true},
		{"8.8.8.8", false}, {"172.32.0.1", false}, {"93.184.216.34", false}, {"2606:4700::1111", false},
		{"::ffff:8.8.8.8", false},
	} {
		if got := BlockedReason(netip.MustParseAddr(tc.addr)) != ""; got != tc.blocked {
			t.Errorf("#%d %s: blocked %v, want %v", i, tc.addr, got, tc.blocked)
		}
	}
}

// The URL's host, before DNS: IP literals in blocked ranges, zoned
// literals and numeric hosts that are no plain IP address are refused.
func TestHostReason(t *testing.T) {
	for i, tc := range []struct {
		url     string
		refused bool
	}{
		{"http://[::1%25lo]:8080/images/a.png", true},
		{"http://[fe80::1%25eth0]/x.png", true},
		{"http://[::ffff:127.0.0.1]/x.png", true},
		{"http://127.0.0.1./x.png", true},
		{"http://2130706433/x.png", true},
		{"http://0x7f000001/x.png", true},
		{"http://0177.0.0.1/x.png", true},
		{"http://127.1/x.png", true},
		{"http://10.1/x.png", true},
		{"http://1.2.3.4.5/x.png", true},
		{"http://cdn.example.com/x.png", false},
		{"http://cdn.example.com./x.png", false},
		{"http://8.8.8.8/x.png", false},
		{"http://[2606:4700::1111]/x.png", false},
		{"http://0x.example/x.png", false},
		{"http://123.example/x.png", false},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if got := CheckURL(u, nil) != nil; got != tc.refused {
			t.Errorf("#%d %s: refused %v (%v), want %v", i, tc.url, got, CheckURL(u, nil), tc.refused)
		}
	}
	u, _ := url.Parse("http://127.0.0.1:8080/images/a.png")
	if err := CheckURL(u, []string{"127.0.0.1:8080"}); err != nil {
		t.Errorf("an allow-listed host is refused: %v", err)
	}
}

// A server on the IPv6 loopback is out of reach through a zone, which
// netip.Prefix.Contains alone let through; the refusal is not retried.
func TestRefusesAZonedLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	var hits atomic.Int64
	img := imageserver.Handler()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		img.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	port := ln.Addr().(*net.TCPAddr).Port
	f := newFetcher(t, fastOptions())
	for i, u := range []string{
		fmt.Sprintf("http://[::1%%25lo]:%d/images/a.png", port),
		fmt.Sprintf("http://[::1%%251]:%d/images/a.png", port),
		fmt.Sprintf("http://[::ffff:127.0.0.1%%25lo]:%d/images/a.png", port),
	} {
		t0 := time.Now()
		_, err := f.Fetch(context.Background(), u)
		fe := fetchErr(t, err)
		if fe.Kind != "refused" || !fe.Permanent {
			t.Errorf("#%d %s: %v (kind %s), want refused", i, u, err, fe.Kind)
		}
		if d := time.Since(t0); d > 200*time.Millisecond {
			t.Errorf("#%d: refusal took %s: it must not wait or retry", i, d)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback server was reached %d times", n)
	}
}

// A numeric host is refused at once, not looked up and retried as a
// network error.
func TestRefusesNumericHostsWithoutRetry(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := fastOptions()
	o.Registerer = reg
	f := newFetcher(t, o)
	for i, u := range []string{"http://2130706433/x.png", "http://127.1/x.png", "http://0x7f.0.0.1/x.png"} {
		_, err := f.Fetch(context.Background(), u)
		if fe := fetchErr(t, err); fe.Kind != "refused" || !fe.Permanent || !strings.Contains(err.Error(), "numeric host") {
			t.Errorf("#%d %s: %v (kind %s), want refused as a numeric host", i, u, err, fe.Kind)
		}
	}
	if n := testutil.ToFloat64(f.fetches.WithLabelValues("network")); n != 0 {
		t.Errorf("%v network attempts, want none", n)
	}
}

func TestRejectsWhatIsNotAnImage(t *testing.T) {
	png, _ := imageserver.PNG("x", 8)
	big, _ := imageserver.PNG("big", 1024)
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>hi</html>"))
		case "/lying":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("<html><script>alert(1)</script></html>"))
		case "/svg":
			w.Header().Set("Content-Type", "image/svg+xml")
			w.Write([]byte(`<svg xmlns="http://www.w3.org/2000/svg"></svg>`))
		case "/big":
			w.Header().Set("Content-Type", "image/png")
			w.Write(big)
		case "/big-chunked":
			w.Header().Set("Content-Type", "image/png")
			for i := 0; i < len(big); i += 1000 {
				w.Write(big[i:min(i+1000, len(big))])
				w.(http.Flusher).Flush()
			}
		case "/missing":
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "image/png")
			w.Write(png)
		}
	})
	o := fastOptions(hostOf(s.Server))
	o.MaxBytes = 4096
	f := newFetcher(t, o)
	if len(big) <= 4096 {
		t.Fatalf("test image is only %d bytes", len(big))
	}
	for i, tc := range []struct{ path, kind, says string }{
		{"/html", "not_image", "text/html is not an image"},
		{"/lying", "not_image", "content is text/html"},
		{"/svg", "not_image", "not a PNG"},
		{"/big", "too_large", "over the 4096-byte limit"},
		{"/big-chunked", "too_large", "over the 4096-byte limit"},
		{"/missing", "http_status", "404"},
	} {
		before := s.hits.Load()
		_, err := f.Fetch(context.Background(), s.URL+tc.path)
		fe := fetchErr(t, err)
		if fe.Kind != tc.kind || !fe.Permanent || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("#%d %s: %v (kind %s), want %s saying %q", i, tc.path, err, fe.Kind, tc.kind, tc.says)
		}
		if n := s.hits.Load() - before; n != 1 {
			t.Errorf("#%d %s: %d requests, want 1 (permanent failures are not retried)", i, tc.path, n)
		}
	}
	if _, err := f.Fetch(context.Background(), s.URL+"/ok.png"); err != nil {
		t.Fatalf("a real PNG: %v", err)
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	png, _ := imageserver.PNG("x", 8)
	var n atomic.Int64
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	})
	f := newFetcher(t, fastOptions(hostOf(s.Server)))
	if _, err := f.Fetch(context.Background(), s.URL+"/x.png"); err != nil {
		t.Fatalf("third attempt should succeed: %v", err)
	}
	if s.hits.Load() != 3 {
		t.Fatalf("%d requests, want 3", s.hits.Load())
	}
}

func TestTimesOutOnAHangingServer(t *testing.T) {
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	})
	f := newFetcher(t, fastOptions(hostOf(s.Server)))
	t0 := time.Now()
	_, err := f.Fetch(context.Background(), s.URL+"/x.png")
	d := time.Since(t0)
	fe := fetchErr(t, err)
	if fe.Kind != "timeout" || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("got %v (kind %s), want a timeout after 3 attempts", err, fe.Kind)
	}
	if s.hits.Load() != 3 {
		t.Fatalf("%d requests, want 3", s.hits.Load())
	}
	if d < 900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("took %s, want about 3 × 300ms plus backoff", d)
	}
}

func TestStopsOnCancel(t *testing.T) {
	s := serve(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	o := fastOptions(hostOf(s.Server))
	o.Timeout = 10 * time.Second
	f := newFetcher(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, err := f.Fetch(ctx, s.URL+"/x.png"); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("fetch ran %s after its context ended", d)
	}
}
