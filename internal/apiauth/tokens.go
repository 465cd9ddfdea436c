// Package apiauth is the product API's bearer tokens: a file that holds
// each token's SHA-256 (never the token), its scope (read or write), the
// mall it is limited to if any, and its rate limit; creating, listing and
// revoking tokens in it; and checking a request's Authorization header
// against it, with a rate limiter per token.
package apiauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Scope is what a token may do: read complete products, or also write
// (POST and DELETE).
type Scope string

const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
)

// Includes says whether a token of scope s may do what need asks.
func (s Scope) Includes(need Scope) bool {
	return s == need || (s == ScopeWrite && need == ScopeRead)
}

// ParseScope reads a scope name.
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case ScopeRead, ScopeWrite:
		return Scope(s), nil
	}
	return "", fmt.Errorf("scope %q: want read or write", s)
}

// Default rate limit of a token that names none: requests per second and
// the burst above it.
const (
	DefaultRate  = 100
	DefaultBurst = 200
)

// Token is one entry of the tokens file. The token itself is never stored:
// only its SHA-256, which is enough for a 256-bit random secret (a slow
// password hash protects guessable passwords, not these).
type Token struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
	Scope  Scope  `json:"scope"`
	// Mall limits the token to one mall's products; empty: every mall.
	Mall string `json:"mall,omitempty"`
	// Rate is requests per second (DefaultRate when 0), Burst the requests
	// allowed at once above it (DefaultBurst when 0).
	Rate      float64   `json:"rate,omitempty"`
	Burst     int       `json:"burst,omitempty"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// file is the tokens file's shape.
type file struct {
	Tokens []Token `json:"tokens"`
}

// A token is "sst_" + its id + "_" + a 256-bit secret, base64url: the id
// finds the entry, the hash of the whole token checks it.
const prefix = "sst_"

var tokenRE = regexp.MustCompile(`^sst_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$`)

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Load reads the tokens file.
func Load(path string) ([]Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read API tokens file: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse API tokens file %s: %w", path, err)
	}
	for i, t := range f.Tokens {
		if _, err := ParseScope(string(t.Scope)); err != nil || t.ID == "" || len(t.SHA256) != 64 {
			return nil, fmt.Errorf("API tokens file %s: entry %d is not a token (id, sha256 and scope read or write are required)", path, i)
		}
	}
	return f.Tokens, nil
}

// Options of a new token.
type Options struct {
	Scope Scope
	Mall  string
	Rate  float64
	Burst int
	Name  string
	Now   time.Time
}

// Create adds a new token to the file at path (creating it, readable by
// its owner only) and returns the token, which exists nowhere else.
func Create(path string, o Options) (string, Token, error) {
	if _, err := ParseScope(string(o.Scope)); err != nil {
		return "", Token{}, err
	}
	if o.Rate < 0 || o.Burst < 0 {
		return "", Token{}, errors.New("rate and burst must not be negative")
	}
	tokens, err := Load(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", Token{}, err
	}
	var id [6]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Token{}, fmt.Errorf("make a token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Token{}, fmt.Errorf("make a token: %w", err)
	}
	t := Token{ID: hex.EncodeToString(id[:]), Scope: o.Scope, Mall: o.Mall, Rate: o.Rate, Burst: o.Burst, Name: o.Name, CreatedAt: o.Now.UTC()}
	token := prefix + t.ID + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	t.SHA256 = hashOf(token)
	if err := save(path, append(tokens, t)); err != nil {
		return "", Token{}, err
	}
	return token, t, nil
}

// Revoke removes the token with id from the file; it reports whether there
// was one.
func Revoke(path, id string) (bool, error) {
	tokens, err := Load(path)
	if err != nil {
		return false, err
	}
	kept := slices.DeleteFunc(slices.Clone(tokens), func(t Token) bool { return t.ID == id })
	if len(kept) == len(tokens) {
		return false, nil
	}
	return true, save(path, kept)
}

// save replaces the file in one rename, so a running API never reads half
// of it.
func save(path string, tokens []Token) error {
	if tokens == nil {
		tokens = []Token{}
	}
	b, err := json.MarshalIndent(file{Tokens: tokens}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the API tokens file's directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".api-tokens-*")
	if err != nil {
		return fmt.Errorf("write API tokens file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write API tokens file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write API tokens file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write API tokens file: %w", err)
	}
	return nil
}

// idOf returns the id part of a token that has the right shape.
func idOf(token string) (string, bool) {
	m := tokenRE.FindStringSubmatch(token)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Describe is a token's one-line summary, without its hash.
func (t Token) Describe() string {
	mall := t.Mall
	if mall == "" {
		mall = "every mall"
	} else {
		mall = "mall " + mall
	}
	rate, burst := t.Rate, t.Burst
	if rate == 0 {
		rate = DefaultRate
	}
	if burst == 0 {
		burst = DefaultBurst
	}
	s := fmt.Sprintf("%s  %-5s  %s  %g/s (burst %d)  created %s", t.ID, t.Scope, mall, rate, burst, t.CreatedAt.Format(time.RFC3339))
	if t.Name != "" {
		s += "  " + strings.TrimSpace(t.Name)
	}
	return s
}
