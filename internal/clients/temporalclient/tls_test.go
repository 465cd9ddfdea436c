package temporalclient_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/clients/temporalclient"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/tlsgen"
)

// tlsProxy terminates TLS (and, with requireClientCert, mutual TLS) in
// front of the Temporal dev server, which has no TLS of its own, and lets a
// request through only when it carries the API key as Temporal Cloud
// expects it (authorization: Bearer <key>); otherwise it answers as gRPC
// does, Unauthenticated. It speaks HTTP/2 on both sides, so gRPC passes as
// it is.
type tlsProxy struct {
	addr string
	mu   sync.Mutex
	auth []string // authorization headers seen
}

func startTLSProxy(t *testing.T, ca *tlsgen.CA, backend, apiKey string, requireClientCert bool) *tlsProxy {
	t.Helper()
	pair, err := ca.Server([]string{"temporal.test", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := ca.ServerConfig(pair, requireClientCert)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.NextProtos = []string{"h2"}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: backend})
	rp.Transport, rp.FlushInterval = tr, -1
	p := &tlsProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	srv := &http.Server{TLSConfig: tlsCfg, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		p.mu.Lock()
		p.auth = append(p.auth, got)
		p.mu.Unlock()
		if apiKey != "" && got != "Bearer "+apiKey {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "16") // Unauthenticated
			w.Header().Set("Grpc-Message", "invalid API key")
			w.WriteHeader(http.StatusOK)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *tlsProxy) sawAuth(want string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.auth {
		if a == want {
			return true
		}
	}
	return false
}

// Temporal's TLS, mTLS and API-key settings, under the SDK's environment
// names, against the real Temporal dev server behind a TLS-terminating
// proxy (the dev server itself has no TLS): each works as set, and each
// wrong setting is refused with a message that says what to check and
// never shows the key.
func TestTemporalTLSAndAPIKeyThroughATLSProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stack, err := environment.Start(ctx, environment.Options{StartTemporal: true, TemporalPort: 0, TemporalUIPort: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	ca, err := tlsgen.NewCA("temporal test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("shopstream-worker", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := client.Write(dir, "worker")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsgen.NewCA("someone else", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(dir, "other.crt")
	if err := os.WriteFile(otherCA, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	const apiKey = "tmprl-api-key-123"
	keyProxy := startTLSProxy(t, ca, stack.TemporalAddress, apiKey, false)
	mtlsProxy := startTLSProxy(t, ca, stack.TemporalAddress, "", true)

	// dial configures a client from the environment names as a user sets
	// them, through config's table.
	dial := func(env map[string]string) error {
		flags := map[string]string{}
		for _, s := range config.Settings() {
			if v, ok := env[s.Env]; ok {
				flags[s.Name] = v
			} else {
				flags[s.Name] = s.Default
			}
		}
		cfg, err := config.Parse(func(name string) string { return flags[name] })
		if err != nil {
			return err
		}
		o := temporalclient.FromConfig(cfg, nil)
		o.DialTimeout = 5 * time.Second
		c, err := temporalclient.Dial(ctx, o)
		if err == nil {
			c.Close()
		}
		return err
	}
	for i, c := range []struct {
		env  map[string]string
		want string // "" for success
	}{
		{map[string]string{"TEMPORAL_ADDRESS": keyProxy.addr, "TEMPORAL_API_KEY": apiKey, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": caFile, "TEMPORAL_TLS_SERVER_NAME": "temporal.test"}, ""},
		{map[string]string{"TEMPORAL_ADDRESS": mtlsProxy.addr, "TEMPORAL_TLS": "true", "TEMPORAL_TLS_CLIENT_CERT_PATH": cert, "TEMPORAL_TLS_CLIENT_KEY_PATH": key, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": caFile}, ""},
		{map[string]string{"TEMPORAL_ADDRESS": keyProxy.addr, "TEMPORAL_API_KEY": "wrong-key", "TEMPORAL_TLS_SERVER_CA_CERT_PATH": caFile}, "invalid API key): check TEMPORAL_API_KEY"},
		{map[string]string{"TEMPORAL_ADDRESS": keyProxy.addr, "TEMPORAL_API_KEY": apiKey, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": otherCA}, "the TLS handshake failed"},
		{map[string]string{"TEMPORAL_ADDRESS": mtlsProxy.addr, "TEMPORAL_TLS": "true", "TEMPORAL_TLS_SERVER_CA_CERT_PATH": caFile}, "the TLS handshake failed"},
		{map[string]string{"TEMPORAL_ADDRESS": keyProxy.addr, "TEMPORAL_TLS": "false", "TEMPORAL_API_KEY": apiKey}, "closed the connection before it spoke gRPC: it probably expects TLS: set TEMPORAL_TLS=true"},
	} {
		err := dial(c.env)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("#%d: %v", i, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("#%d: got %v, want it to say %q", i, err, c.want)
		case err != nil && (strings.Contains(err.Error(), apiKey) || strings.Contains(err.Error(), "wrong-key")):
			t.Errorf("#%d: the error shows the API key: %v", i, err)
		case err != nil:
			t.Logf("#%d: %v", i, err)
		}
	}
	if !keyProxy.sawAuth("Bearer " + apiKey) {
		t.Error("the proxy never saw the API key as a bearer token")
	}
}
