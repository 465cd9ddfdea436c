// Package productapi is the product collector's HTTP API: products in (to
// the product topic), complete products out (from the collector's catalog),
// deletes as tombstones, an OpenAPI document, health, metrics, and the
// embedded image server.
package productapi

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/apiauth"
	"github.com/shopstream/shopstream/internal/catalog"
	"github.com/shopstream/shopstream/internal/imageserver"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI is the API's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// DefaultAddr is where `shopstream api` listens.
const DefaultAddr = "127.0.0.1:8080"

// DefaultMaxBody is the largest POST body accepted.
const DefaultMaxBody = 64 << 10

// Page sizes of GET /api/v1/complete-products.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Options configure the API. Topics, Serde, Registerer, Logger and Now are
// named as in every component; the API produces through a client the
// process has connected already (Producer) rather than building its own.
type Options struct {
	// Producer is the connected client that POST and DELETE produce
	// through.
	Producer *kgo.Client
	// Topics names the product topic the API writes to.
	Topics records.Topics
	Serde  *records.Serde
	// Registerer receives the API's metrics (nil registers nowhere);
	// Gatherer is served on /metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time

	Gatherer prometheus.Gatherer
	// Readiness is the process's, served on /readyz (always ready when
	// nil), so a probe of the API's own port sees the whole process.
	Readiness telemetry.Readiness
	// Catalog serves the reads; nil makes them answer 503.
	Catalog catalog.Reader
	// Addr is where Run listens (DefaultAddr).
	Addr    string
	MaxBody int64
	// NoImages turns off the embedded image server at /images/; only
	// `shopstream dev` serves it.
	NoImages bool

	// Auth checks the bearer tokens of every route but /healthz, /readyz,
	// the OpenAPI document and the test images; nil lets everyone in, which
	// New refuses on a non-loopback Addr unless InsecureNoAuth.
	Auth           *apiauth.Keys
	InsecureNoAuth bool
	// AllowHosts are the image hosts that may be internal addresses, as the
	// collector's fetcher allows them: other image URLs naming an internal
	// IP literal are refused at once.
	AllowHosts []string
	// ProduceTimeout bounds how long POST and DELETE wait for Kafka
	// (DefaultProduceTimeout).
	ProduceTimeout time.Duration
}

// DefaultProduceTimeout is how long a POST or DELETE waits for Kafka
// before it answers 503.
const DefaultProduceTimeout = 5 * time.Second

// StopWithin bounds how long Run takes to return once its context ends:
// requests in flight get 5 s to finish.
const StopWithin = 6 * time.Second

// API serves the product API. Run returns within StopWithin of its
// context's end.
type API struct {
	o        Options
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	accepted prometheus.Counter
	ready    chan struct{}
	addr     string // set before ready is closed
}

// New checks o, builds the API's handler and registers its metrics; it
// starts nothing.
func New(o Options) (*API, error) {
	if o.Producer == nil || o.Serde == nil || o.Topics.Products == "" {
		return nil, errors.New("product API needs a Kafka client, a serde and the product topic")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.ProduceTimeout <= 0 {
		o.ProduceTimeout = DefaultProduceTimeout
	}
	if o.Auth == nil && !o.InsecureNoAuth && !loopback(o.Addr) {
		return nil, fmt.Errorf("the product API would listen on %s, beyond this machine, without authentication: "+
			"give it a tokens file (API_TOKENS_FILE; `shopstream api token create --scope write` makes one), "+
			"listen on 127.0.0.1, or pass --insecure-no-auth", o.Addr)
	}
	f := telemetry.With(o.Registerer)
	a := &API{
		o:        o,
		mux:      http.NewServeMux(),
		ready:    make(chan struct{}),
		requests: f.CounterVec("shopstream_api_requests_total", "HTTP requests to the product API, by route, method and status code.", "route", "method", "code"),
		latency:  f.HistogramVec("shopstream_api_request_seconds", "Time to answer an HTTP request to the product API, by route.", prometheus.ExponentialBuckets(0.0005, 3, 10), "route"),
		accepted: f.Counter("shopstream_api_products_accepted_total", "Products accepted by POST /api/v1/products and produced to the product topic."),
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	a.handle("/api/v1/products", needWrite, a.postProduct)
	a.handle("/api/v1/products/{productId}", needRead, a.productStatus)
	a.handle("/api/v1/complete-products", needRead, a.listComplete)
	a.handle("/api/v1/complete-products/{productId}", needRead, a.completeProduct)
	a.handle("/api/v1/openapi.json", open, func(w http.ResponseWriter, r *http.Request) {
		if !a.allow(w, r, http.MethodGet) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	a.handle("/healthz", open, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	a.mux.Handle("/readyz", telemetry.ReadyHandler(o.Readiness))
	if o.Gatherer != nil {
		metrics := promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true})
		a.handle("/metrics", needAll, metrics.ServeHTTP)
	}
	if !o.NoImages {
		a.mux.Handle(imageserver.PathPrefix, imageserver.Handler())
	}
	a.handle("/", open, func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, http.StatusNotFound, fmt.Sprintf("no route %s %s: see /api/v1/openapi.json", r.Method, r.URL.Path), nil)
	})
	return a, nil
}

// Handler is the API's HTTP handler.
func (a *API) Handler() http.Handler { return a.mux }

// StopWithin is how long Run takes to return once its context ends.
func (a *API) StopWithin() time.Duration { return StopWithin }

// Ready is closed once Run listens.
func (a *API) Ready() <-chan struct{} { return a.ready }

// Addr is the address Run listens on; empty before Ready.
func (a *API) Addr() string {
	select {
	case <-a.ready:
		return a.addr
	default:
		return ""
	}
}

// Run serves the API on its address until ctx ends.
func (a *API) Run(ctx context.Context) error {
	addr, done, err := serve(ctx, a.o.Addr, a.mux, a.o.Logger)
	if err != nil {
		return err
	}
	a.addr = addr
	close(a.ready)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done:
			return err
		case <-time.After(StopWithin):
			return fmt.Errorf("product API on %s did not stop within %s", addr, StopWithin)
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (a *API) allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
			return true
		}
	}
	allowed := ""
	for i, m := range methods {
		if i > 0 {
			allowed += ", "
		}
		allowed += m
	}
	w.Header().Set("Allow", allowed)
	a.fail(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", methodLabel(r.Method), r.URL.Path, allowed), nil)
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errorBody is every error's shape.
type errorBody struct {
	Error     string            `json:"error"`
	Fields    map[string]string `json:"fields,omitempty"`
	Status    string            `json:"status,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	MallIDs   []string          `json:"mallIds,omitempty"`
	RequestID string            `json:"requestId"`
}

// accepted is the answer to POST and DELETE.
type acceptedBody struct {
	MallID      string `json:"mallId"`
	ProductID   string `json:"productId"`
	Key         string `json:"key"`
	Status      string `json:"status"`
	StatusURL   string `json:"statusUrl"`
	CompleteURL string `json:"completeUrl"`
}

func links(mall, product string) (status, complete string) {
	q := "?mallId=" + url.QueryEscape(mall)
	return "/api/v1/products/" + url.PathEscape(product) + q, "/api/v1/complete-products/" + url.PathEscape(product) + q
}

func (a *API) postProduct(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, http.MethodPost) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.o.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over the %d-byte limit", a.o.MaxBody), nil)
			return
		}
		a.fail(w, r, http.StatusBadRequest, "read body: "+err.Error(), nil)
		return
	}
	in, fields, err := decodeProduct(body, a.o.AllowHosts)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	if fields != nil {
		a.fail(w, r, http.StatusBadRequest, fmt.Sprintf("invalid product: %d bad field(s)", len(fields)), &errorBody{Fields: fields})
		return
	}
	if !a.mayTouch(w, r, in.MallID) {
		return
	}
	now := a.o.Now().UTC().Truncate(time.Millisecond)
	p := records.Product{
		ProductID: in.ProductID, MallID: in.MallID, Name: in.Title, Description: in.Content,
		Price: records.Price{Amount: in.Price, Currency: in.Currency},
		Tags:  []string{}, Specifications: map[string]string{},
		CreatedAt: now, UpdatedAt: now,
	}
	for _, u := range in.ImageURLs {
		p.Images = append(p.Images, records.Image{URL: u})
	}
	// Kafka that does not answer must not hold the request: the client
	// hears 503 within the deadline and may retry.
	ctx, cancel := context.WithTimeout(r.Context(), a.o.ProduceTimeout)
	defer cancel()
	val, err := a.o.Serde.Encode(ctx, nil, a.o.Topics.Products, &p)
	if err != nil {
		a.unavailable(w, r, "could not encode the product", err, "key", p.Key())
		return
	}
	rec := &kgo.Record{Topic: a.o.Topics.Products, Key: []byte(p.Key()), Value: val}
	if err := a.produce(ctx, rec); err != nil {
		a.unavailable(w, r, "could not queue the product", err, "key", p.Key())
		return
	}
	a.accepted.Inc()
	st, cp := links(p.MallID, p.ProductID)
	w.Header().Set("Location", st)
	writeJSON(w, http.StatusAccepted, acceptedBody{MallID: p.MallID, ProductID: p.ProductID, Key: p.Key(), Status: "accepted", StatusURL: st, CompleteURL: cp})
}

// produce waits for Kafka to acknowledge rec, or for ctx to end. franz-go
// cannot always fail a record whose request may have reached a broker
// (the idempotent producer must not leave a gap in its sequence), so
// ProduceSync alone could hold the request for as long as Kafka is away;
// the answer is given at the deadline instead. A record answered with 503
// may still be written later; the client's retry of the same product is
// then one more version of the same key, which the collector reads as an
// update. A full buffer fails at once rather than waiting for space.
func (a *API) produce(ctx context.Context, rec *kgo.Record) error {
	done := make(chan error, 1)
	a.o.Producer.TryProduce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no acknowledgement from Kafka within %s: %w", a.o.ProduceTimeout, ctx.Err())
	}
}

// imageView and productView are the JSON of a complete product. An image
// is named by its source URL and its blob key, never by where the server
// keeps it.
type imageView struct {
	URL         string `json:"url"`
	Key         string `json:"key"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ContentType string `json:"contentType"`
}

type productView struct {
	MallID      string      `json:"mallId"`
	ProductID   string      `json:"productId"`
	Title       string      `json:"title"`
	Content     string      `json:"content"`
	Price       string      `json:"price"`
	Currency    string      `json:"currency"`
	Images      []imageView `json:"images"`
	CollectedAt time.Time   `json:"collectedAt"`
	UpdatedAt   time.Time   `json:"updatedAt"`
}

func viewOf(p catalog.Product) productView {
	v := productView{
		MallID: p.Product.MallID, ProductID: p.Product.ProductID, Title: p.Product.Name, Content: p.Product.Description,
		Price: p.Product.Price.Amount, Currency: p.Product.Price.Currency, Images: []imageView{},
		CollectedAt: p.CollectedAt, UpdatedAt: p.UpdatedAt,
	}
	for _, im := range p.Images {
		v.Images = append(v.Images, imageView{URL: im.URL, Key: im.Key, SHA256: im.SHA256, Size: im.Size, ContentType: im.ContentType})
	}
	return v
}

type listBody struct {
	Items      []productView `json:"items"`
	NextCursor string        `json:"nextCursor,omitempty"`
}

func encodeCursor(id catalog.Identity) string {
	b, _ := json.Marshal(id)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*catalog.Identity, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var id catalog.Identity
	if err := json.Unmarshal(b, &id); err != nil || id.MallID == "" || id.ProductID == "" {
		return nil, errors.New("not a cursor from this API")
	}
	return &id, nil
}

func (a *API) catalogOr503(w http.ResponseWriter, r *http.Request) bool {
	if a.o.Catalog == nil {
		a.fail(w, r, http.StatusServiceUnavailable, "no database to read complete products from: set DATABASE_DSN / --database-dsn", nil)
		return false
	}
	return true
}

func (a *API) listComplete(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, http.MethodGet) {
		return
	}
	q := r.URL.Query()
	fields := fieldErrors{}
	limit := DefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			fields["limit"] = fmt.Sprintf("must be a whole number from 1 to %d", MaxLimit)
		}
		limit = n
	}
	var after *catalog.Identity
	if s := q.Get("cursor"); s != "" {
		var err error
		if after, err = decodeCursor(s); err != nil {
			fields["cursor"] = "not a cursor from this API: use nextCursor of the previous page"
		}
	}
	mall := q.Get("mallId")
	if mall != "" && !validID(mall) {
		fields["mallId"] = "use letters, digits, '.', '_' and '-', starting with a letter or digit"
	}
	if len(fields) > 0 {
		a.fail(w, r, http.StatusBadRequest, "invalid query", &errorBody{Fields: fields})
		return
	}
	mall = scopeMall(r, mall)
	if !a.mayTouch(w, r, mall) || !a.catalogOr503(w, r) {
		return
	}
	items, err := a.o.Catalog.ListComplete(r.Context(), catalog.ListQuery{MallID: mall, After: after, Limit: limit + 1})
	if err != nil {
		a.unavailable(w, r, "could not read complete products", err)
		return
	}
	body := listBody{Items: []productView{}}
	if len(items) > limit {
		items = items[:limit]
		last := items[limit-1].Product
		body.NextCursor = encodeCursor(catalog.Identity{MallID: last.MallID, ProductID: last.ProductID})
	}
	for _, p := range items {
		body.Items = append(body.Items, viewOf(p))
	}
	writeJSON(w, http.StatusOK, body)
}

// lookup finds the states of the path's product, answering the request
// itself (400, 403, 503) when it cannot.
func (a *API) lookup(w http.ResponseWriter, r *http.Request) (string, string, []catalog.Product, bool) {
	id, mall := r.PathValue("productId"), r.URL.Query().Get("mallId")
	fields := fieldErrors{}
	if !validID(id) {
		fields["productId"] = "use 1 to 64 letters, digits, '.', '_' and '-', starting with a letter or digit"
	}
	if mall != "" && !validID(mall) {
		fields["mallId"] = "use 1 to 64 letters, digits, '.', '_' and '-', starting with a letter or digit"
	}
	if len(fields) > 0 {
		a.fail(w, r, http.StatusBadRequest, "invalid product identity", &errorBody{Fields: fields})
		return "", "", nil, false
	}
	mall = scopeMall(r, mall)
	if !a.mayTouch(w, r, mall) || !a.catalogOr503(w, r) {
		return "", "", nil, false
	}
	states, err := a.o.Catalog.Lookup(r.Context(), id, mall)
	if err != nil {
		a.unavailable(w, r, "could not read the product", err, "product_id", id)
		return "", "", nil, false
	}
	return id, mall, states, true
}

func malls(ps []catalog.Product) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Product.MallID
	}
	return out
}

func (a *API) ambiguous(w http.ResponseWriter, r *http.Request, id string, ps []catalog.Product) {
	a.fail(w, r, http.StatusConflict, fmt.Sprintf("product %s exists in %d malls: add ?mallId= to choose one", id, len(ps)), &errorBody{MallIDs: malls(ps)})
}

func (a *API) notFound(w http.ResponseWriter, r *http.Request, id, mall string) {
	where := ""
	if mall != "" {
		where = " in mall " + mall
	}
	a.fail(w, r, http.StatusNotFound, fmt.Sprintf("no complete product %s%s: it is unknown, or its images are still being collected", id, where), nil)
}

func (a *API) completeProduct(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, http.MethodGet, http.MethodDelete) {
		return
	}
	if r.Method == http.MethodDelete {
		// Reading needs a read token; deleting needs a write token.
		if q := requestOf(r); q.authenticated && !q.who.Scope.Includes(apiauth.ScopeWrite) {
			a.forbid(w, r, apiauth.ScopeWrite, fmt.Sprintf("this token's scope is %s; DELETE needs a write token", q.who.Scope))
			return
		}
	}
	id, mall, states, ok := a.lookup(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodDelete {
		a.deleteProduct(w, r, id, mall, states)
		return
	}
	var complete, failed []catalog.Product
	for _, p := range states {
		if p.Status == catalog.StatusComplete {
			complete = append(complete, p)
		} else {
			failed = append(failed, p)
		}
	}
	switch {
	case len(complete) > 1:
		a.ambiguous(w, r, id, complete)
	case len(complete) == 1:
		writeJSON(w, http.StatusOK, viewOf(complete[0]))
	case len(failed) == 1:
		f := failed[0]
		a.fail(w, r, http.StatusNotFound, fmt.Sprintf("product %s in mall %s is not complete: its image collection failed", id, f.Product.MallID),
			&errorBody{Status: string(f.Status), Reason: f.Reason, MallIDs: []string{f.Product.MallID}})
	case len(failed) > 1:
		a.fail(w, r, http.StatusNotFound, fmt.Sprintf("product %s is not complete in any mall: its image collection failed", id),
			&errorBody{Status: string(catalog.StatusFailed), MallIDs: malls(failed)})
	default:
		a.notFound(w, r, id, mall)
	}
}

func (a *API) deleteProduct(w http.ResponseWriter, r *http.Request, id, mall string, states []catalog.Product) {
	switch {
	case len(states) == 0:
		a.notFound(w, r, id, mall)
		return
	case len(states) > 1:
		a.ambiguous(w, r, id, states)
		return
	}
	p := states[0].Product
	ctx, cancel := context.WithTimeout(r.Context(), a.o.ProduceTimeout)
	defer cancel()
	rec := &kgo.Record{Topic: a.o.Topics.Products, Key: []byte(p.Key())} // a tombstone
	if err := a.produce(ctx, rec); err != nil {
		a.unavailable(w, r, "could not queue the delete", err, "key", p.Key())
		return
	}
	st, cp := links(p.MallID, p.ProductID)
	writeJSON(w, http.StatusAccepted, acceptedBody{MallID: p.MallID, ProductID: p.ProductID, Key: p.Key(), Status: "deleting", StatusURL: st, CompleteURL: cp})
}

// statusBody is the answer to GET /api/v1/products/{productId}.
type statusBody struct {
	MallID      string     `json:"mallId"`
	ProductID   string     `json:"productId"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason,omitempty"`
	Images      int        `json:"images"`
	CollectedAt *time.Time `json:"collectedAt,omitempty"`
	UpdatedAt   time.Time  `json:"updatedAt"`
}

func (a *API) productStatus(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, http.MethodGet) {
		return
	}
	id, mall, states, ok := a.lookup(w, r)
	if !ok {
		return
	}
	switch {
	case len(states) == 0:
		where := ""
		if mall != "" {
			where = " in mall " + mall
		}
		a.fail(w, r, http.StatusNotFound, fmt.Sprintf("the collector has no product %s%s: unknown, or accepted and not collected yet", id, where), &errorBody{Status: "unknown"})
	case len(states) > 1:
		a.ambiguous(w, r, id, states)
	default:
		p := states[0]
		b := statusBody{MallID: p.Product.MallID, ProductID: p.Product.ProductID, Status: string(p.Status), Reason: p.Reason, Images: len(p.Images), UpdatedAt: p.UpdatedAt}
		if !p.CollectedAt.IsZero() {
			b.CollectedAt = &p.CollectedAt
		}
		writeJSON(w, http.StatusOK, b)
	}
}

// serve serves h on addr until ctx ends, then shuts down within 5s. It
// returns once the listener is bound, with the address bound.
func serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen for the product API on %s: %w (set --api-addr / API_ADDR to another address)", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && log != nil {
			log.Warn("product API shutdown", "err", err)
		}
	}()
	return ln.Addr().String(), done, nil
}
