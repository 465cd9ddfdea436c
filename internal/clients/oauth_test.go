package clients_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/kafkatest"
)

// tokenEndpoint is a local OAuth 2.0 token endpoint of the
// client-credentials flow: it checks the client's id, secret and scope and
// issues JWTs that live for lifetime.
type tokenEndpoint struct {
	*httptest.Server
	lifetime time.Duration

	mu     sync.Mutex
	issued map[string]time.Time // token -> expiry
}

func newTokenEndpoint(t *testing.T, lifetime time.Duration) *tokenEndpoint {
	e := &tokenEndpoint{lifetime: lifetime, issued: map[string]time.Time{}}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		// client_secret_basic: both parts are form-encoded (RFC 6749 §2.3.1).
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost || r.FormValue("grant_type") != "client_credentials" || r.FormValue("scope") != "kafka" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_request"}`)
			return
		}
		if !ok || id != "shopstream-streamer" || secret != "s3cret/+=" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"client authentication failed"}`)
			return
		}
		e.mu.Lock()
		exp := time.Now().Add(e.lifetime)
		tok := jwt(exp) + fmt.Sprint(len(e.issued)) // distinct even within a second
		e.issued[tok] = exp
		e.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": e.lifetime.Seconds()})
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *tokenEndpoint) fetches() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.issued)
}

// oauthBroker makes a kfake cluster answer OAUTHBEARER, which kfake itself
// does not speak: control functions take the SASL handshake and
// authenticate requests, accept a token valid has not refused, and give the
// session a lifetime so the client authenticates again. kfake enforces no
// SASL on this cluster, so the test proves what the client sends and when,
// not a broker's enforcement.
type oauthBroker struct {
	mu       sync.Mutex
	seen     []string // tokens presented, in order
	rejected []string
}

func newOAuthBroker(kc *kafkatest.Cluster, sessionLifetime time.Duration, valid func(token string) error) *oauthBroker {
	b := &oauthBroker{}
	kc.Fake.ControlKey(int16(kmsg.SASLHandshake), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.Fake.KeepControl()
		resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
		resp.SupportedMechanisms = []string{"OAUTHBEARER"}
		if req.(*kmsg.SASLHandshakeRequest).Mechanism != "OAUTHBEARER" {
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		}
		return resp, nil, true
	})
	kc.Fake.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.Fake.KeepControl()
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		// RFC 7628: n,,\x01auth=Bearer <token>\x01\x01
		msg := string(req.(*kmsg.SASLAuthenticateRequest).SASLAuthBytes)
		_, rest, _ := strings.Cut(msg, "auth=Bearer ")
		tok, _, _ := strings.Cut(rest, "\x01")
		b.mu.Lock()
		defer b.mu.Unlock()
		if err := valid(tok); err != nil {
			b.rejected = append(b.rejected, tok)
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			m := err.Error()
			resp.ErrorMessage = &m
			return resp, nil, true
		}
		b.seen = append(b.seen, tok)
		resp.SessionLifetimeMillis = sessionLifetime.Milliseconds()
		return resp, nil, true
	})
	return b
}

func (b *oauthBroker) tokens() (seen, rejected []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...), append([]string(nil), b.rejected...)
}

// produceFor connects with sec, runs then (when given), and produces to
// topic "t" every 100 ms for d: each produce may authenticate again.
func produceFor(t *testing.T, brokers []string, sec config.KafkaSecurity, d time.Duration, then func()) {
	t.Helper()
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: brokers, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cl, err := k.Connect(ctx, kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if then != nil {
		then()
	}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// The client-credentials flow against a local token endpoint: the client
// fetches a token, presents it, and before it expires fetches the next one,
// so authentications every 300 ms over 4 s of produce requests all present
// an unexpired token and the endpoint is asked only a few times.
func TestOAuthBearerClientCredentialsRefreshesBeforeExpiry(t *testing.T) {
	endpoint := newTokenEndpoint(t, 2*time.Second)
	kc := kafkatest.Start(t, kafkatest.SeedTopics(1, "t"))
	broker := newOAuthBroker(kc, 300*time.Millisecond, func(tok string) error {
		endpoint.mu.Lock()
		exp, ok := endpoint.issued[tok]
		endpoint.mu.Unlock()
		switch {
		case !ok:
			return fmt.Errorf("token not issued by the endpoint")
		case !time.Now().Before(exp):
			return fmt.Errorf("token expired at %s", exp)
		}
		return nil
	})
	sec := config.KafkaSecurity{Protocol: config.ProtocolSASLPlaintext, Mechanism: config.MechanismOAuthBearer,
		OAuthTokenEndpointURL: endpoint.URL + "/oauth2/token", OAuthClientID: "shopstream-streamer", OAuthClientSecret: "s3cret/+=", OAuthScope: "kafka"}
	produceFor(t, kc.Brokers, sec, 4*time.Second, nil)
	seen, rejected := broker.tokens()
	distinct := map[string]bool{}
	for _, tok := range seen {
		distinct[tok] = true
	}
	t.Logf("%d authentications, %d distinct tokens, %d fetched, %d rejected", len(seen), len(distinct), endpoint.fetches(), len(rejected))
	if len(rejected) > 0 {
		t.Errorf("the broker rejected %d tokens (expired or unknown): the client did not refresh before expiry", len(rejected))
	}
	if len(distinct) < 2 {
		t.Errorf("the client presented %d distinct tokens in 4s of 2s tokens: it never refreshed", len(distinct))
	}
	if len(seen) < 6 || endpoint.fetches() >= len(seen) {
		t.Errorf("%d authentications and %d token fetches: want several authentications per fetched token", len(seen), endpoint.fetches())
	}
}

// A client the endpoint refuses, a token file whose token expired, and a
// token the broker refuses: each says so, naming the client or the file,
// never the secret.
func TestOAuthBearerErrors(t *testing.T) {
	endpoint := newTokenEndpoint(t, time.Minute)
	kc := kafkatest.Start(t)
	newOAuthBroker(kc, 0, func(tok string) error {
		if strings.Contains(tok, "refused") {
			return fmt.Errorf("token refused by the broker")
		}
		return nil
	})
	for i, c := range []struct {
		sec  config.KafkaSecurity
		want []string
	}{
		{config.KafkaSecurity{OAuthTokenEndpointURL: endpoint.URL, OAuthClientID: "shopstream-streamer", OAuthClientSecret: "wrong-secret", OAuthScope: "kafka"},
			[]string{"token endpoint " + endpoint.URL + " refused client \"shopstream-streamer\"", "401", "invalid_client", "KAFKA_SASL_OAUTHBEARER_CLIENT_ID"}},
		{config.KafkaSecurity{OAuthTokenFile: writeToken(t, jwt(time.Now().Add(-time.Minute)))},
			[]string{"the OAUTHBEARER token expired at", "must renew the token"}},
		{config.KafkaSecurity{OAuthTokenFile: writeToken(t, "refused-opaque-token")},
			[]string{"authentication failed", "token refused by the broker", "not expired"}},
	} {
		c.sec.Protocol, c.sec.Mechanism = config.ProtocolSASLPlaintext, config.MechanismOAuthBearer
		k, err := clients.NewKafka(clients.KafkaOptions{Brokers: kc.Brokers, Security: c.sec, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = k.Connect(context.Background())
		if err == nil {
			t.Fatalf("#%d: connected", i)
		}
		t.Logf("#%d: %v (after %s)", i, err, time.Since(start).Round(time.Millisecond))
		for _, want := range append(c.want, kc.Brokers[0]) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("#%d: the error does not say %q", i, want)
			}
		}
		if strings.Contains(err.Error(), "wrong-secret") {
			t.Errorf("#%d: the error shows the client secret", i)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("#%d: took %s, want within the 5s dial timeout", i, took)
		}
	}
}

// The token file is read again when it changes: a rotated token is
// presented at the next authentication.
func TestOAuthBearerTokenFileIsReadAgainWhenItChanges(t *testing.T) {
	kc := kafkatest.Start(t, kafkatest.SeedTopics(1, "t"))
	broker := newOAuthBroker(kc, 200*time.Millisecond, func(string) error { return nil })
	path := writeToken(t, "first-token")
	sec := config.KafkaSecurity{Protocol: config.ProtocolSASLPlaintext, Mechanism: config.MechanismOAuthBearer, OAuthTokenFile: path}
	produceFor(t, kc.Brokers, sec, 2*time.Second, func() {
		if err := os.WriteFile(path, []byte("second-token-rotated\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	seen, _ := broker.tokens()
	if len(seen) < 2 || seen[0] != "first-token" || seen[len(seen)-1] != "second-token-rotated" {
		t.Fatalf("tokens presented %v: want first-token, then the rotated one", seen)
	}
}
