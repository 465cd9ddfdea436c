package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
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
		// What /metrics and status read about the pipeline does not link
		// the hot path it observes.
		{"../internal/health/...", []string{"github.com/shopstream/shopstream/streamer"}},
		{"../internal/kafkametrics/...", []string{"github.com/shopstream/shopstream/streamer"}},
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

// cli/ parses flags, calls one function per command and prints; what a
// command does lives in a package named for it (issue 11 set the bound).
func TestCLIStaysThin(t *testing.T) {
	const most = 1800
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines += strings.Count(string(b), "\n")
	}
	if lines > most {
		t.Errorf("cli/ has %d lines of non-test Go, want at most %d: move what a command does into a package and keep flags, one call and printing here", lines, most)
	}
	t.Logf("cli/: %d non-test lines", lines)
}

// Only cli/ knows the command-line library: configuration, components and
// the embedded stack are plain Go that a test or another binary can use.
func TestNothingBelowCLIImportsTheCommandLineLibrary(t *testing.T) {
	for _, line := range strings.Split(goListOut(t, "-f", `{{.ImportPath}} {{join .Deps " "}}`, "../..."), "\n") {
		pkg, deps, _ := strings.Cut(line, " ")
		if pkg == "" || pkg == "github.com/shopstream/shopstream/cli" {
			continue
		}
		for _, dep := range strings.Fields(deps) {
			if dep == "github.com/urfave/cli/v2" || strings.HasPrefix(dep, "github.com/urfave/cli/") {
				t.Errorf("%s depends on %s: keep flags in cli/ and pass plain values down", pkg, dep)
			}
		}
	}
}

// The house rules that a look at the source enforces (STYLE.md):
//   - metrics are registered through internal/telemetry, which returns an
//     error where promauto panics on a name collision;
//   - nothing outside package main panics;
//   - every Kafka, schema registry and Temporal client is built in
//     internal/clients (and its subpackage for Temporal), so how a process
//     connects (and, next, its TLS and SASL) is decided in one place;
//   - the dead-letter headers are named in internal/deadletter alone, so no
//     component's dead letters drift from what `dlq list` reads.
//
// Tests may do all four.
func TestSourceFollowsTheHouseRules(t *testing.T) {
	found, err := sourceRuleViolations("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range found {
		t.Error(v)
	}
}

// The check finds what it looks for: a tree with one violation of each rule,
// and the same calls where they are allowed.
func TestSourceCheckFindsPlantedViolations(t *testing.T) {
	root := t.TempDir()
	for name, src := range map[string]string{
		"internal/sink/metrics.go": "package sink\n\nimport pa \"github.com/prometheus/client_golang/prometheus/promauto\"\n\nvar _ = pa.With\n",
		"internal/sink/open.go":    "package sink\n\nfunc open() {\n\tpanic(\"boom\") // a comment that says panic( is fine\n}\n",
		"internal/sink/x_test.go":  "package sink\n\nimport \"github.com/twmb/franz-go/pkg/kgo\"\n\nfunc helper() { panic(1) }\n\nvar _, _ = kgo.NewClient()\n",
		"internal/sink/reader.go":  "package sink\n\nimport franz \"github.com/twmb/franz-go/pkg/kgo\"\n\nvar _, _ = franz.NewClient()\n",
		"internal/sink/dial.go":    "package sink\n\nimport \"go.temporal.io/sdk/client\"\n\nvar _, _ = client.Dial(client.Options{})\n",
		"cli/main.go":              "package main\n\nfunc main() { panic(1) }\n",
		"internal/telemetry/f.go":  "package telemetry\n\nimport \"github.com/prometheus/client_golang/prometheus/promauto\"\n\nvar _ = promauto.With\n",
		"internal/clients/k.go":    "package clients\n\nimport \"github.com/twmb/franz-go/pkg/kgo\"\n\nvar _, _ = kgo.NewClient()\n",
		"internal/clients/t/t.go":  "package t\n\nimport \"go.temporal.io/sdk/client\"\n\nvar _, _ = client.Dial(client.Options{})\n",
		"internal/sink/doc.go":     "package sink\n\n// panic(\"in a comment\"), kgo.NewClient() and promauto.With(reg) in prose are not calls.\nconst s = \"panic(\"\n",
		"internal/sink/dlq.go":     "package sink\n\nconst why = \"shopstream.dlq.reason\"\n",
		"internal/deadletter/h.go": "package deadletter\n\nconst HeaderReason = \"shopstream.dlq.reason\"\n",
		"internal/sink/web.go":     "package sink\n\nimport nethttp \"net/http\"\n\nvar c = &nethttp.Client{}\nvar d = nethttp.DefaultClient\n",
		"internal/clients/h.go":    "package clients\n\nimport \"net/http\"\n\nvar c = &http.Client{}\n",
		"internal/imagefetch/f.go": "package imagefetch\n\nimport \"net/http\"\n\nvar c = &http.Client{}\n",
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	found, err := sourceRuleViolations(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"internal/sink/dial.go:5: client.Dial builds a client",
		"internal/sink/dlq.go:3 names dead-letter header",
		"internal/sink/metrics.go imports promauto",
		"internal/sink/open.go:4 calls panic",
		"internal/sink/reader.go:5: franz.NewClient builds a client",
		"internal/sink/web.go:5: an HTTP client built here",
		"internal/sink/web.go:6: an HTTP client built here",
	}
	if len(found) != len(want) {
		t.Fatalf("found %d violations, want %d:\n%s", len(found), len(want), strings.Join(found, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(found[i], w) {
			t.Errorf("violation #%d is %q, want it to start with %q", i, found[i], w)
		}
	}
}

// clientConstructors are the calls that create a Kafka, schema registry or
// Temporal client, by import path.
var clientConstructors = map[string][]string{
	"github.com/twmb/franz-go/pkg/kgo": {"NewClient", "NewGroupTransactSession"},
	"github.com/twmb/franz-go/pkg/sr":  {"NewClient"},
	"go.temporal.io/sdk/client":        {"Dial", "DialContext", "NewLazyClient", "NewClient"},
}

// sourceRuleViolations walks the module at root and reports, file by file
// in walk order, every non-test Go file that imports promauto outside
// internal/telemetry, calls panic outside package main, calls a client
// constructor outside internal/clients, or spells a dead-letter header name
// outside internal/deadletter. Import names are resolved, so an alias does
// not hide a constructor.
func sourceRuleViolations(root string) ([]string, error) {
	const promauto = "github.com/prometheus/client_golang/prometheus/promauto"
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		dir := path.Dir(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", rel, err)
		}
		constructors := map[string]string{} // local name -> import path
		httpName := ""                      // the local name of net/http
		for _, imp := range f.Imports {
			v, _ := strconv.Unquote(imp.Path.Value)
			if v == promauto && !within(dir, "internal/telemetry") {
				found = append(found, rel+" imports promauto: build metrics with telemetry.With(reg) and return its Err(), which does not panic on a name collision")
			}
			if v == "net/http" && !within(dir, "internal/clients") && !httpClientExempt(dir) {
				httpName = "http"
				if imp.Name != nil {
					httpName = imp.Name.Name
				}
			}
			if _, ok := clientConstructors[v]; ok && !within(dir, "internal/clients") {
				name := path.Base(v)
				if imp.Name != nil {
					name = imp.Name.Name
				}
				constructors[name] = v
			}
		}
		inMain := f.Name.Name == "main"
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if v, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING &&
					strings.HasPrefix(v, deadLetterHeaderPrefix) && !within(dir, "internal/deadletter") {
					found = append(found, fmt.Sprintf("%s:%d names dead-letter header %q: use the deadletter.Header constants", rel, fset.Position(n.Pos()).Line, v))
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "panic" && !inMain {
					found = append(found, fmt.Sprintf("%s:%d calls panic outside package main: return an error to the caller", rel, fset.Position(n.Pos()).Line))
				}
			case *ast.CompositeLit:
				if sel, ok := n.Type.(*ast.SelectorExpr); ok && httpName != "" && sel.Sel.Name == "Client" {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == httpName {
						found = append(found, fmt.Sprintf("%s:%d: an HTTP client built here: build it with clients.NewHTTPClient, so its TLS and timeouts are decided in one place", rel, fset.Position(n.Pos()).Line))
					}
				}
			case *ast.SelectorExpr:
				x, ok := n.X.(*ast.Ident)
				if !ok {
					return true
				}
				if httpName != "" && x.Name == httpName && n.Sel.Name == "DefaultClient" {
					found = append(found, fmt.Sprintf("%s:%d: an HTTP client built here: build it with clients.NewHTTPClient, so its TLS and timeouts are decided in one place", rel, fset.Position(n.Pos()).Line))
				}
				for _, fn := range clientConstructors[constructors[x.Name]] {
					if n.Sel.Name == fn {
						found = append(found, fmt.Sprintf("%s:%d: %s.%s builds a client: build it through internal/clients instead", rel, fset.Position(n.Pos()).Line, x.Name, fn))
					}
				}
			}
			return true
		})
		return nil
	})
	return found, err
}

// httpClientExempt are the packages whose HTTP clients are not a service
// connection: the image fetcher fetches untrusted URLs through its own
// guarded dialer, and the load generator's connection pool is part of what
// it measures.
func httpClientExempt(dir string) bool {
	return within(dir, "internal/imagefetch") || within(dir, "internal/loadgen")
}

// deadLetterHeaderPrefix starts every dead-letter header name.
const deadLetterHeaderPrefix = "shopstream.dlq."

// within says whether dir is pkg or below it.
func within(dir, pkg string) bool { return dir == pkg || strings.HasPrefix(dir, pkg+"/") }

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	return strings.Fields(goListOut(t, args...))
}

func goListOut(t *testing.T, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}
