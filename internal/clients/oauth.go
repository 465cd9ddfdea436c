package clients

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shopstream/shopstream/internal/config"
)

// ErrTokenExpired is the error of an OAUTHBEARER token that expired before
// it could be used.
var ErrTokenExpired = errors.New("the OAUTHBEARER token expired")

// tokenSource hands out an OAUTHBEARER token for each authentication.
type tokenSource interface {
	Token(ctx context.Context) (string, error)
}

func newTokenSource(s config.KafkaSecurity, now func() time.Time) (tokenSource, error) {
	if s.OAuthTokenFile != "" {
		return &fileToken{path: s.OAuthTokenFile, now: now}, nil
	}
	return &clientCredentials{
		endpoint: s.OAuthTokenEndpointURL, id: s.OAuthClientID, secret: s.OAuthClientSecret, scope: s.OAuthScope,
		http: NewHTTPClient(nil, 30*time.Second), now: now,
	}, nil
}

// fileToken reads the token from a file that something else (a sidecar, a
// projected service-account token) keeps fresh, again whenever the file
// changes.
type fileToken struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   string
	expiry  time.Time // from the token when it is a JWT
}

func (f *fileToken) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("read the OAUTHBEARER token file (KAFKA_SASL_OAUTHBEARER_TOKEN_FILE): %w", err)
	}
	if f.token == "" || !st.ModTime().Equal(f.modTime) || st.Size() != f.size {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return "", fmt.Errorf("read the OAUTHBEARER token file (KAFKA_SASL_OAUTHBEARER_TOKEN_FILE): %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("the OAUTHBEARER token file %s is empty", f.path)
		}
		f.token, f.modTime, f.size, f.expiry = tok, st.ModTime(), st.Size(), jwtExpiry(tok)
	}
	if !f.expiry.IsZero() && !f.now().Before(f.expiry) {
		return "", fmt.Errorf("%w at %s (the token in %s): whatever writes that file must renew the token", ErrTokenExpired, f.expiry.UTC().Format(time.RFC3339), f.path)
	}
	return f.token, nil
}

// clientCredentials is the OAuth 2.0 client-credentials flow (RFC 6749
// §4.4). A token is used until four fifths of its lifetime have passed, then
// a new one is fetched, so no authentication presents a token about to
// expire; when the endpoint cannot be reached, the old token serves until
// it expires.
type clientCredentials struct {
	endpoint, id, secret, scope string
	http                        *http.Client
	now                         func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	expiry    time.Time
}

func (c *clientCredentials) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.token != "" && now.Before(c.refreshAt) {
		return c.token, nil
	}
	tok, expiry, err := c.fetch(ctx, now)
	if err != nil {
		if c.token != "" && now.Before(c.expiry) {
			return c.token, nil
		}
		return "", err
	}
	c.token, c.expiry = tok, expiry
	c.refreshAt = now.Add(expiry.Sub(now) * 4 / 5)
	return tok, nil
}

// tokenResponse is the token endpoint's answer (RFC 6749 §5.1 and §5.2).
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (c *clientCredentials) fetch(ctx context.Context, now time.Time) (string, time.Time, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.scope != "" {
		form.Set("scope", c.scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("OAUTHBEARER token request to %s: %w", c.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	resp, err := c.http.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("OAUTHBEARER: cannot reach the token endpoint %s: %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("OAUTHBEARER: read the token endpoint's answer: %w", err)
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		why := strings.TrimSpace(tr.Error + " " + tr.ErrorDescription)
		if why == "" {
			why = "no OAuth error given"
		}
		return "", time.Time{}, fmt.Errorf("OAUTHBEARER: the token endpoint %s refused client %q with %s (%s): check KAFKA_SASL_OAUTHBEARER_CLIENT_ID, _CLIENT_SECRET and _SCOPE",
			c.endpoint, c.id, resp.Status, why)
	}
	if jerr != nil || tr.AccessToken == "" {
		return "", time.Time{}, fmt.Errorf("OAUTHBEARER: the token endpoint %s answered without an access_token", c.endpoint)
	}
	expiry := jwtExpiry(tr.AccessToken)
	if tr.ExpiresIn > 0 {
		expiry = now.Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	if expiry.IsZero() {
		// Neither expires_in nor a JWT exp: ask again within the hour.
		expiry = now.Add(time.Hour)
	}
	if !now.Before(expiry) {
		return "", time.Time{}, fmt.Errorf("%w: the token endpoint %s handed out a token that expired at %s: check the clocks of this host and the identity provider",
			ErrTokenExpired, c.endpoint, expiry.UTC().Format(time.RFC3339))
	}
	return tr.AccessToken, expiry, nil
}

// jwtExpiry is the exp claim of a JWT, or zero for an opaque token.
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(claims.Exp), 0)
}
