package apiauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A created token is printed once and stored only as its hash, in a file
// only its owner reads; it authenticates with its scope and mall.
func TestCreateStoresOnlyTheHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	now := time.Unix(1_700_000_000, 0)
	token, entry, err := Create(path, Options{Scope: ScopeWrite, Mall: "m1", Name: "shop m1", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !tokenRE.MatchString(token) || !strings.HasPrefix(token, "sst_"+entry.ID+"_") {
		t.Fatalf("token %q has not the sst_<id>_<secret> shape", token)
	}
	raw, _ := os.ReadFile(path)
	secret := token[strings.LastIndex(token, "_")+1:]
	if strings.Contains(string(raw), secret) || !strings.Contains(string(raw), entry.SHA256) {
		t.Fatalf("the file holds the secret, or not its hash:\n%s", raw)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("tokens file mode %v, want 0600", st.Mode().Perm())
	}
	keys, err := Open(path, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	p, err := keys.Authenticate("Bearer " + token)
	if err != nil || p.Scope != ScopeWrite || p.Mall != "m1" || !p.MayTouch("m1") || p.MayTouch("m2") {
		t.Fatalf("authenticate: %+v %v", p, err)
	}
	for i, h := range []string{"", "Basic abc", "Bearer", "bearer " + token[:len(token)-1] + "x", "Bearer sst_" + entry.ID + "_" + strings.Repeat("A", 43)} {
		if _, err := keys.Authenticate(h); err == nil {
			t.Errorf("#%d %q authenticated", i, h)
		}
	}
	if _, err := keys.Authenticate(""); !errors.Is(err, ErrNoToken) {
		t.Errorf("no header: %v, want ErrNoToken", err)
	}
	if _, err := keys.Authenticate("Bearer nope"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a malformed token: %v, want ErrInvalidToken", err)
	}
}

// A token created or revoked while the API runs counts within a second.
func TestKeysFollowTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	first, e1, _ := Create(path, Options{Scope: ScopeRead, Now: now})
	keys, err := Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	second, _, _ := Create(path, Options{Scope: ScopeWrite, Now: now})
	now = now.Add(1100 * time.Millisecond)
	if _, err := keys.Authenticate("Bearer " + second); err != nil {
		t.Fatalf("a token created after Open: %v", err)
	}
	if ok, err := Revoke(path, e1.ID); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	now = now.Add(1100 * time.Millisecond)
	if _, err := keys.Authenticate("Bearer " + first); err == nil {
		t.Fatal("a revoked token still authenticates")
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(1100 * time.Millisecond)
	if _, err := keys.Authenticate("Bearer " + second); err != nil || keys.Stale() == nil {
		t.Fatalf("a broken file must keep the tokens read before and say so: %v, stale %v", err, keys.Stale())
	}
}

// The rate limit: a burst, then a wait that Allow names.
func TestAllowLimitsEachToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	now := time.Unix(1_700_000_000, 0)
	tok, _, _ := Create(path, Options{Scope: ScopeRead, Rate: 1, Burst: 3, Now: now})
	keys, _ := Open(path, func() time.Time { return now })
	p, _ := keys.Authenticate("Bearer " + tok)
	for i := 0; i < 3; i++ {
		if ok, _ := keys.Allow(p); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := keys.Allow(p)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over the burst: ok %v, wait %s", ok, wait)
	}
	now = now.Add(time.Second)
	if ok, _ := keys.Allow(p); !ok {
		t.Fatal("refused after the wait")
	}
}

func TestOpenSaysHowToMakeATokensFile(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing.json"), nil)
	if err == nil || !strings.Contains(err.Error(), "shopstream api token create") {
		t.Fatalf("%v, want a hint", err)
	}
	if _, _, err := Create(filepath.Join(t.TempDir(), "t.json"), Options{Scope: "admin"}); err == nil {
		t.Fatal("scope admin accepted")
	}
}
