package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
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

// clientConstructors are the calls that create a Kafka, schema registry or
// Temporal client, by import path.
var clientConstructors = map[string][]string{
	"github.com/twmb/franz-go/pkg/kgo": {"NewClient", "NewGroupTransactSession"},
	"github.com/twmb/franz-go/pkg/sr":  {"NewClient"},
	"go.temporal.io/sdk/client":        {"Dial", "DialContext", "NewLazyClient", "NewClient"},
}

// Every client is built in internal/clients (and its subpackage for
// Temporal), so how a process connects (and, next, its TLS and SASL) is
// decided in one place. Tests may build their own.
func TestClientsAreBuiltOnlyInInternalClients(t *testing.T) {
	for _, v := range clientConstructorCalls(t, "..") {
		t.Errorf("%s: build the client through internal/clients instead", v)
	}
}

// clientConstructorCalls lists, as file:line: pkg.Func, every use of a
// client constructor in the non-test Go files under root, outside
// internal/clients. Import names are resolved, so an alias does not hide one.
func clientConstructorCalls(t *testing.T, root string) []string {
	t.Helper()
	allowed := filepath.Join(root, "internal", "clients")
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == allowed || (path != root && strings.HasPrefix(d.Name(), ".")) || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		names := map[string]string{} // local name -> import path
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if _, ok := clientConstructors[p]; !ok {
				continue
			}
			name := p[strings.LastIndex(p, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			names[name] = p
		}
		if len(names) == 0 {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			p, ok := names[x.Name]
			if !ok {
				return true
			}
			for _, fn := range clientConstructors[p] {
				if sel.Sel.Name == fn {
					found = append(found, fset.Position(sel.Pos()).String()+": "+x.Name+"."+fn)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

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
