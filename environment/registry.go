package environment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// persistentRegistry serves franz-go's in-memory srfake registry and keeps
// its subjects in a JSON file, so a restarted dev stack still knows the
// schema ids that records already in Kafka carry.
type persistentRegistry struct {
	reg  *srfake.Registry
	path string
	mu   sync.Mutex
}

type savedSchema struct {
	Subject string    `json:"subject"`
	Version int       `json:"version"`
	ID      int       `json:"id"`
	Schema  sr.Schema `json:"schema"`
}

func newPersistentRegistry(path string) (*persistentRegistry, error) {
	p := &persistentRegistry{reg: srfake.NewRegistry(), path: path}
	if path == "" {
		return p, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved schemas %s: %w", path, err)
	}
	var saved []savedSchema
	if err := json.Unmarshal(raw, &saved); err != nil {
		return nil, fmt.Errorf("parse saved schemas %s: %w (delete the file to start with an empty registry)", path, err)
	}
	seeded := map[int]bool{}
	for _, s := range saved {
		if !seeded[s.ID] {
			p.reg.SeedSchema(s.Subject, s.Version, s.ID, s.Schema)
			seeded[s.ID] = true
			continue
		}
		// srfake seeds an id once (and panics on a second seed); another
		// subject with the same schema is registered, which reuses the id.
		if err := p.register(s); err != nil {
			return nil, fmt.Errorf("restore saved schemas %s: %w (delete the file to start with an empty registry)", path, err)
		}
	}
	return p, nil
}

func (p *persistentRegistry) register(s savedSchema) error {
	body, err := json.Marshal(s.Schema)
	if err != nil {
		return err
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/subjects/"+s.Subject+"/versions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	p.reg.Handler().ServeHTTP(rec, req)
	var got struct {
		ID int `json:"id"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil || got.ID != s.ID {
		return fmt.Errorf("subject %s version %d: registering it again gave %d %s, want id %d", s.Subject, s.Version, rec.Code, rec.Body.String(), s.ID)
	}
	return nil
}

// ServeHTTP passes every request to srfake and saves the registry after each
// successful change.
func (p *persistentRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.reg.Handler().ServeHTTP(w, r)
	if r.Method == http.MethodGet || p.path == "" {
		return
	}
	if err := p.save(); err != nil {
		// The change was served; failing to persist it only costs a restart.
		fmt.Fprintf(os.Stderr, "schema registry: %v\n", err)
	}
}

// get asks srfake's own handler, so persistence needs no access to its
// internals.
func (p *persistentRegistry) get(path string, v any) error {
	rec := httptest.NewRecorder()
	p.reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, rec.Code, rec.Body.String())
	}
	return json.Unmarshal(rec.Body.Bytes(), v)
}

func (p *persistentRegistry) save() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var subjects []string
	if err := p.get("/subjects", &subjects); err != nil {
		return fmt.Errorf("list subjects to save: %w", err)
	}
	var saved []savedSchema
	for _, subj := range subjects {
		var versions []int
		if err := p.get("/subjects/"+subj+"/versions", &versions); err != nil {
			return fmt.Errorf("list versions of %s to save: %w", subj, err)
		}
		for _, v := range versions {
			var ss sr.SubjectSchema
			if err := p.get("/subjects/"+subj+"/versions/"+strconv.Itoa(v), &ss); err != nil {
				return fmt.Errorf("read %s version %d to save: %w", subj, v, err)
			}
			saved = append(saved, savedSchema{Subject: subj, Version: v, ID: ss.ID, Schema: ss.Schema})
		}
	}
	raw, err := json.MarshalIndent(saved, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return fmt.Errorf("save schemas: %w", err)
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("save schemas: %w", err)
	}
	return os.Rename(tmp, p.path)
}
