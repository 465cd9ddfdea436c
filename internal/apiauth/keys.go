package apiauth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keys checks bearer tokens against the tokens file. It reads the file
// again when it changes (looking at most once a second), so a token created
// or revoked while the API runs counts at once, without a restart.
type Keys struct {
	path string
	now  func() time.Time

	mu       sync.Mutex
	byID     map[string]Token
	limiters map[string]*rate.Limiter
	modTime  time.Time
	size     int64
	checked  time.Time
	// stale is why the last read of a changed file failed; the tokens read
	// before stay in force.
	stale error
}

// Open reads the tokens file at path; now is the clock (time.Now when nil).
func Open(path string, now func() time.Time) (*Keys, error) {
	if now == nil {
		now = time.Now
	}
	k := &Keys{path: path, now: now, limiters: map[string]*rate.Limiter{}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the tokens file.
func (k *Keys) Path() string { return k.path }

// Len is how many tokens the file holds.
func (k *Keys) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refreshLocked()
	return len(k.byID)
}

func (k *Keys) reload() error {
	st, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("API tokens file: %w (create one with `shopstream api token create`)", err)
	}
	tokens, err := Load(k.path)
	if err != nil {
		return err
	}
	byID := make(map[string]Token, len(tokens))
	for _, t := range tokens {
		byID[t.ID] = t
	}
	limiters := make(map[string]*rate.Limiter, len(tokens))
	for id, t := range byID {
		r, b := t.Rate, t.Burst
		if r == 0 {
			r = DefaultRate
		}
		if b == 0 {
			b = DefaultBurst
		}
		// A limiter survives a reload when its token and limits do.
		if old, ok := k.limiters[id]; ok && old.Limit() == rate.Limit(r) && old.Burst() == b {
			limiters[id] = old
			continue
		}
		limiters[id] = rate.NewLimiter(rate.Limit(r), b)
	}
	k.byID, k.limiters = byID, limiters
	k.modTime, k.size, k.checked, k.stale = st.ModTime(), st.Size(), k.now(), nil
	return nil
}

func (k *Keys) refreshLocked() {
	now := k.now()
	if now.Sub(k.checked) < time.Second {
		return
	}
	k.checked = now
	st, err := os.Stat(k.path)
	if err != nil {
		k.stale = err
		return
	}
	if st.ModTime().Equal(k.modTime) && st.Size() == k.size {
		return
	}
	if err := k.reload(); err != nil {
		k.stale = err
	}
}

// Stale says why the tokens file could not be read again after it changed
// (nil when it could): the tokens read before are still used.
func (k *Keys) Stale() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stale
}

// Principal is who a valid token speaks for.
type Principal struct {
	ID    string
	Scope Scope
	// Mall is the only mall the principal may touch; empty: any.
	Mall  string
	Name  string
	limit *rate.Limiter
}

// MayTouch says whether the principal may act on a mall's products.
func (p Principal) MayTouch(mall string) bool { return p.Mall == "" || p.Mall == mall }

// Errors of Authenticate; the API answers both with 401.
var (
	ErrNoToken      = errors.New("no bearer token: send Authorization: Bearer <token>")
	ErrInvalidToken = errors.New("the bearer token is not valid")
)

// Authenticate checks an Authorization header.
func (k *Keys) Authenticate(authorization string) (Principal, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if authorization == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrNoToken
	}
	token = strings.TrimSpace(token)
	id, ok := idOf(token)
	if !ok {
		return Principal{}, ErrInvalidToken
	}
	k.mu.Lock()
	k.refreshLocked()
	t, known := k.byID[id]
	lim := k.limiters[id]
	k.mu.Unlock()
	if !known || subtle.ConstantTimeCompare([]byte(hashOf(token)), []byte(t.SHA256)) != 1 {
		return Principal{}, ErrInvalidToken
	}
	return Principal{ID: t.ID, Scope: t.Scope, Mall: t.Mall, Name: t.Name, limit: lim}, nil
}

// Allow takes one request from the principal's rate limit. When none is
// left it says how long until one is.
func (k *Keys) Allow(p Principal) (bool, time.Duration) {
	if p.limit == nil {
		return true, 0
	}
	now := k.now()
	r := p.limit.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
