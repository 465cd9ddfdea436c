// Package imagefetch downloads images from URLs that users give, safely: it
// refuses internal addresses (after DNS resolution and on every redirect),
// bounds concurrency, time and size, retries transient failures with
// backoff, and accepts only bytes that really are images.
package imagefetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopstream/shopstream/internal/telemetry"
)

// Options configures a Fetcher; zero values take the defaults.
type Options struct {
	// AllowHosts may resolve to internal addresses: "host" or "host:port".
	AllowHosts []string
	// Timeout bounds one attempt, from dialing to the last byte (10s).
	Timeout time.Duration
	// ConnectTimeout bounds connecting, TLS included (3s), and
	// HeaderTimeout waiting for the response headers once the request is
	// sent (5s). A host that misses either is not tried again: a server
	// that does not answer is more likely a tarpit than a hiccup, and
	// retrying it triples what it costs.
	ConnectTimeout time.Duration
	HeaderTimeout  time.Duration
	// Attempts is how many times a transient failure is tried (3).
	Attempts int
	// Backoff is the wait before the second attempt, doubled after (250ms).
	Backoff time.Duration
	// MaxBytes is the largest image accepted (10 MiB).
	MaxBytes int64
	// Concurrency bounds the downloads in flight (16); PerHost bounds
	// those to one host (4). One tenant (a mall, see FetchFor) holds at most
	// three quarters of them, and a freed slot goes to the tenant that
	// holds the fewest.
	Concurrency int
	PerHost     int
	// Registerer receives the fetcher's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultAttempts       = 3
	DefaultBackoff        = 250 * time.Millisecond
	DefaultMaxBytes       = 10 << 20
	DefaultConcurrency    = 16
	DefaultPerHost        = 4
	DefaultConnectTimeout = 3 * time.Second
	DefaultHeaderTimeout  = 5 * time.Second
)

// Image is a downloaded image.
type Image struct {
	Data        []byte
	ContentType string // sniffed from the bytes
	SHA256      string // hex
}

// Ext is the file extension for the image's type.
func (im *Image) Ext() string { return extFor(im.ContentType) }

// accepted maps the image types we store to their extensions. SVG is left
// out on purpose: it is a document that can carry scripts.
var accepted = map[string]string{
	"image/png":                ".png",
	"image/jpeg":               ".jpg",
	"image/gif":                ".gif",
	"image/webp":               ".webp",
	"image/bmp":                ".bmp",
	"image/x-icon":             ".ico",
	"image/vnd.microsoft.icon": ".ico",
}

func extFor(ct string) string {
	if e, ok := accepted[ct]; ok {
		return e
	}
	return ".img"
}

// Error is a fetch that did not produce an image. Permanent errors (refused,
// not found, too large, not an image) are not retried.
type Error struct {
	URL       string
	Kind      string // refused, too_large, not_image, http_status, timeout, network, bad_url
	Permanent bool
	Err       error
}

func (e *Error) Error() string { return fmt.Sprintf("fetch image %s: %v", e.URL, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Fetcher downloads images; it is safe for concurrent use.
type Fetcher struct {
	o      Options
	client *http.Client
	slots  *scheduler

	fetches  *prometheus.CounterVec
	duration prometheus.Histogram
	bytes    prometheus.Counter
}

// positiveOr is v, or def when v is zero or negative (an option left unset).
func positiveOr[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// New builds a Fetcher; it fails only when its metrics cannot be registered.
func New(o Options) (*Fetcher, error) {
	o.Timeout = positiveOr(o.Timeout, DefaultTimeout)
	o.Attempts = positiveOr(o.Attempts, DefaultAttempts)
	o.Backoff = positiveOr(o.Backoff, DefaultBackoff)
	o.MaxBytes = positiveOr(o.MaxBytes, DefaultMaxBytes)
	o.Concurrency = positiveOr(o.Concurrency, DefaultConcurrency)
	o.PerHost = positiveOr(o.PerHost, DefaultPerHost)
	o.ConnectTimeout = positiveOr(o.ConnectTimeout, DefaultConnectTimeout)
	o.HeaderTimeout = positiveOr(o.HeaderTimeout, DefaultHeaderTimeout)
	m := telemetry.With(o.Registerer)
	g := newGuard(o.AllowHosts, o.ConnectTimeout)
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would dial for us and bypass the guard
		DialContext:           g.DialContext,
		MaxIdleConns:          o.Concurrency * 2,
		MaxIdleConnsPerHost:   o.PerHost,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		ResponseHeaderTimeout: o.HeaderTimeout,
	}
	f := &Fetcher{
		o:     o,
		slots: newScheduler(o.Concurrency, o.PerHost),
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return &redirectError{"more than 5 redirects"}
				}
				if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
					return &redirectError{"redirect to a " + req.URL.Scheme + " URL"}
				}
				return nil
			},
		},
		fetches:  m.CounterVec("shopstream_collector_image_fetches_total", "Image download attempts by outcome (ok, refused, too_large, not_image, http_status, timeout, network, bad_url).", "outcome"),
		duration: m.Histogram("shopstream_collector_image_fetch_seconds", "Time of one image download attempt.", prometheus.ExponentialBuckets(0.001, 4, 9)),
		bytes:    m.Counter("shopstream_collector_image_bytes_total", "Bytes of images downloaded."),
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// Close releases idle connections.
func (f *Fetcher) Close() { f.client.CloseIdleConnections() }

// Fetch downloads one image, retrying transient failures.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (*Image, error) {
	return f.FetchFor(ctx, "", rawURL)
}

// FetchFor downloads one image for tenant (a mall): tenants share the
// download slots fairly.
func (f *Fetcher) FetchFor(ctx context.Context, tenant, rawURL string) (*Image, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		f.fetches.WithLabelValues("bad_url").Inc()
		return nil, &Error{URL: rawURL, Kind: "bad_url", Permanent: true, Err: errors.New("not an absolute http or https URL")}
	}
	// A host refused whatever DNS says is refused before any connection,
	// and never retried.
	if err := CheckURL(u, f.o.AllowHosts); err != nil {
		f.fetches.WithLabelValues("refused").Inc()
		return nil, &Error{URL: rawURL, Kind: "refused", Permanent: true, Err: err}
	}
	backoff := f.o.Backoff
	for attempt := 1; ; attempt++ {
		im, err := f.attempt(ctx, tenant, u.Host, rawURL)
		if err == nil {
			return im, nil
		}
		var fe *Error
		if !errors.As(err, &fe) || fe.Permanent || attempt >= f.o.Attempts || ctx.Err() != nil {
			if fe != nil && !fe.Permanent && attempt > 1 {
				fe.Err = fmt.Errorf("%w (after %d attempts)", fe.Err, attempt)
			}
			return nil, err
		}
		// Full jitter around the doubling backoff, so many products that
		// failed together do not retry in lockstep.
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(d):
		}
		backoff *= 2
	}
}

func (f *Fetcher) attempt(ctx context.Context, tenant, host, rawURL string) (*Image, error) {
	release, err := f.slots.acquire(ctx, tenant, host)
	if err != nil {
		return nil, err
	}
	defer release()
	t0 := time.Now()
	im, err := f.get(ctx, rawURL)
	f.duration.Observe(time.Since(t0).Seconds())
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			f.fetches.WithLabelValues(fe.Kind).Inc()
		}
		return nil, err
	}
	f.fetches.WithLabelValues("ok").Inc()
	f.bytes.Add(float64(len(im.Data)))
	return im, nil
}

func (f *Fetcher) get(ctx context.Context, rawURL string) (*Image, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	fail := func(kind string, permanent bool, err error) (*Image, error) {
		return nil, &Error{URL: rawURL, Kind: kind, Permanent: permanent, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fail("bad_url", true, err)
	}
	req.Header.Set("Accept", "image/png, image/jpeg, image/gif, image/webp, image/*;q=0.8")
	req.Header.Set("User-Agent", "shopstream-collector/1")
	resp, err := f.client.Do(req)
	if err != nil {
		return fail(f.classify(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		transient := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
		return fail("http_status", !transient, fmt.Errorf("server answered %s", resp.Status))
	}
	if resp.ContentLength > f.o.MaxBytes {
		return fail("too_large", true, fmt.Errorf("image is %d bytes, over the %d-byte limit", resp.ContentLength, f.o.MaxBytes))
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "image/") {
		if mt == "" {
			mt = "none"
		}
		return fail("not_image", true, fmt.Errorf("content type %s is not an image", mt))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.o.MaxBytes+1))
	if err != nil {
		return fail(f.classify(ctx, err))
	}
	if int64(len(data)) > f.o.MaxBytes {
		return fail("too_large", true, fmt.Errorf("image is over the %d-byte limit", f.o.MaxBytes))
	}
	// The header is the server's claim; the bytes decide.
	sniffed := http.DetectContentType(data)
	if _, ok := accepted[sniffed]; !ok {
		return fail("not_image", true, fmt.Errorf("content is %s, not a PNG, JPEG, GIF, WebP, BMP or ICO image (server said %s)", sniffed, mt))
	}
	sum := sha256.Sum256(data)
	return &Image{Data: data, ContentType: sniffed, SHA256: hex.EncodeToString(sum[:])}, nil
}

// classify turns a transport error into (kind, permanent, error).
func (f *Fetcher) classify(ctx context.Context, err error) (string, bool, error) {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return "refused", true, refused
	}
	var re *redirectError
	if errors.As(err, &re) {
		return "bad_url", true, re
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" && oe.Timeout() {
		return "timeout", true, fmt.Errorf("could not connect within %s", f.o.ConnectTimeout)
	}
	if strings.Contains(err.Error(), "TLS handshake timeout") {
		return "timeout", true, fmt.Errorf("could not connect (TLS) within %s", f.o.ConnectTimeout)
	}
	if strings.Contains(err.Error(), "timeout awaiting response headers") {
		return "timeout", true, fmt.Errorf("no response headers within %s", f.o.HeaderTimeout)
	}
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout", false, fmt.Errorf("no complete answer within %s", f.o.Timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	// A name that does not exist will not exist a moment later either.
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return "network", true, err
	}
	return "network", false, err
}

type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }
