package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The layout's hard rules (DESIGN.md §3): workflows stay deterministic and
// free of I/O libraries; the streamer's hot path never depends on Temporal.
func TestLayoutKeepsWorkflowsAndStreamerApart(t *testing.T) {
	for _, c := range []struct {
		pkgs      string
		forbidden []string
	}{
		{"../workflows/...", []string{"github.com/twmb/franz-go", "github.com/jackc/pgx"}},
		{"../streamer/...", []string{"go.temporal.io"}},
	} {
		if _, err := os.Stat(strings.TrimSuffix(c.pkgs, "/...")); err != nil {
			t.Logf("%s does not exist yet", c.pkgs)
			continue
		}
		for _, dep := range goList(t, "-deps", c.pkgs) {
			for _, f := range c.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", c.pkgs, dep)
				}
			}
		}
	}
	// The Temporal SDK itself reaches net/http through gRPC, so for the
	// standard library the rule is on what workflow code imports directly.
	for _, imp := range goList(t, "-f", `{{join .Imports "\n"}}`, "../workflows/...") {
		switch {
		case imp == "os", imp == "net", strings.HasPrefix(imp, "net/"), imp == "database/sql", imp == "math/rand", imp == "math/rand/v2":
			t.Errorf("workflows imports %s: move the side effect into an activity", imp)
		}
	}
	// Nor may workflow code read the clock or sleep outside Temporal.
	nondet := regexp.MustCompile(`\btime\.(Now|Sleep|After|Tick|NewTimer|NewTicker)\(`)
	files, _ := filepath.Glob("../workflows/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := nondet.Find(src); m != nil {
			t.Errorf("%s calls %s: use workflow.Now / workflow.Sleep / workflow.NewTimer", f, m)
		}
	}
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}
