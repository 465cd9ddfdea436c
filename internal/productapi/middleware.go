package productapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/shopstream/shopstream/internal/apiauth"
)

// access is what a route asks of its caller.
type access int

const (
	open      access = iota // no token needed
	needRead                // a read or write token
	needWrite               // a write token
	// needAll is a token of any scope that is limited to no mall: what
	// /metrics shows spans every mall.
	needAll
)

// request is what the middleware knows about a request: its id, which
// every error body and log line carries, and who sent it.
type request struct {
	id string
	// who is the caller; zero when the API has no tokens.
	who apiauth.Principal
	// authenticated says whether who is from a token.
	authenticated bool
}

type requestKey struct{}

func requestOf(r *http.Request) *request {
	if q, ok := r.Context().Value(requestKey{}).(*request); ok {
		return q
	}
	return &request{}
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// methodLabel is a request's method as the metrics name it: the standard
// methods are their own label and any other is "other", so a client
// sending a thousand made-up methods adds no series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// handle registers h on pattern behind the middleware: a request id,
// authentication and the rate limit when the API has tokens, and the
// request metrics.
func (a *API) handle(pattern string, need access, h http.HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		q := &request{id: newRequestID()}
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Request-Id", q.id)
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, q))
		if a.authorize(sw, r, q, need) {
			h(sw, r)
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		a.requests.WithLabelValues(pattern, methodLabel(r.Method), strconv.Itoa(sw.code)).Inc()
		a.latency.WithLabelValues(pattern).Observe(time.Since(t0).Seconds())
	})
}

// authorize answers 401, 403 or 429 itself and returns false when the
// request may not go on.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, q *request, need access) bool {
	if a.o.Auth == nil || need == open {
		return true
	}
	p, err := a.o.Auth.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		// RFC 6750: no credentials get the bare challenge, bad ones say so.
		challenge := `Bearer realm="shopstream"`
		if !errors.Is(err, apiauth.ErrNoToken) {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		a.fail(w, r, http.StatusUnauthorized, err.Error(), nil)
		return false
	}
	q.who, q.authenticated = p, true
	want := apiauth.ScopeRead
	if need == needWrite {
		want = apiauth.ScopeWrite
	}
	switch {
	case !p.Scope.Includes(want):
		a.forbid(w, r, want, fmt.Sprintf("this token's scope is %s; %s %s needs a %s token", p.Scope, r.Method, r.URL.Path, want))
		return false
	case need == needAll && p.Mall != "":
		a.forbid(w, r, want, fmt.Sprintf("this token is limited to mall %s; %s needs a token for every mall", p.Mall, r.URL.Path))
		return false
	}
	if ok, wait := a.o.Auth.Allow(p); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		a.fail(w, r, http.StatusTooManyRequests, fmt.Sprintf("this token's rate limit is exhausted: retry in %d s", max(secs, 1)), nil)
		return false
	}
	return true
}

// forbid answers 403 with the scope the request needs.
func (a *API) forbid(w http.ResponseWriter, r *http.Request, scope apiauth.Scope, msg string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="shopstream", error="insufficient_scope", scope="%s"`, scope))
	a.fail(w, r, http.StatusForbidden, msg, nil)
}

// mayTouch answers 403 and returns false when the caller's token is
// limited to another mall than mall.
func (a *API) mayTouch(w http.ResponseWriter, r *http.Request, mall string) bool {
	q := requestOf(r)
	if !q.authenticated || q.who.MayTouch(mall) {
		return true
	}
	a.forbid(w, r, q.who.Scope, fmt.Sprintf("this token is limited to mall %s, not %s", q.who.Mall, mall))
	return false
}

// scopeMall is the mall a read is limited to: the one asked for, or the
// token's own when it is limited to one and none was asked for.
func scopeMall(r *http.Request, asked string) string {
	if q := requestOf(r); asked == "" && q.authenticated {
		return q.who.Mall
	}
	return asked
}

// fail answers a client error: the message says what to do, and the
// body carries the request id.
func (a *API) fail(w http.ResponseWriter, r *http.Request, code int, msg string, extra *errorBody) {
	b := errorBody{}
	if extra != nil {
		b = *extra
	}
	b.Error, b.RequestID = msg, requestOf(r).id
	writeJSON(w, code, b)
}

// unavailable answers 503 when a backing service failed: the body says
// only what the user can do, and the request id finds the detail, which
// goes to the log (Kafka, registry and database errors name internal
// addresses and state).
func (a *API) unavailable(w http.ResponseWriter, r *http.Request, what string, err error, attrs ...any) {
	id := requestOf(r).id
	a.o.Logger.Error(what, append([]any{"request_id", id, "err", err}, attrs...)...)
	w.Header().Set("Retry-After", "5")
	writeJSON(w, http.StatusServiceUnavailable, errorBody{
		Error:     what + ": the service behind the API is unavailable; try again later (the request id finds the detail in the log)",
		RequestID: id,
	})
}

// loopback says whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
