// Package helm holds the tests of the Helm chart in shopstream/: they render
// it with the helm binary (`make helm` installs it into ./bin) over the
// values files in testdata/ and decode every object strictly into its
// published Go type, with no cluster.
//
// It is a module of its own: k8s.io/api and its kin are needed by these
// tests alone, and in the main module they would raise a version the
// shopstream binary links (modern-go/reflect2). Here they leave the main
// module's go.mod and go.sum untouched.
package helm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const chartDir = "shopstream"

// valuesFiles are the installs the chart is checked with, each under
// testdata/.
var valuesFiles = []string{"minimal", "production", "keda-kafka-trigger", "autoscaling-off", "recommender-off"}

// helmBinary is $HELM, the repository's bin/helm, or helm on the PATH.
// `make test` installs it, so under CI=true a missing helm fails the test;
// elsewhere it skips, saying how to install it (as internal/testtool does in
// the main module).
func helmBinary(t testing.TB) string {
	t.Helper()
	name := os.Getenv("HELM")
	if name == "" {
		name = "helm"
		if p, err := filepath.Abs(filepath.Join("..", "..", "bin", "helm")); err == nil {
			if _, err := os.Stat(p); err == nil {
				name = p
			}
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("helm is needed and CI=true: install it with make helm (make test-deps)")
		}
		t.Skipf("helm is not installed (make helm)")
	}
	return p
}

// runHelm runs helm with args and returns its standard output; an error
// carries its standard error, less the notice about the dashboards symlink
// that every command prints.
func runHelm(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var msg []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if l != "" && !strings.Contains(l, "found symbolic link") {
				msg = append(msg, l)
			}
		}
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.Join(msg, "\n"))
	}
	return stdout.Bytes(), nil
}

// render is `helm template` of the chart with one values file and extra
// arguments (--set …).
func render(t testing.TB, values string, extra ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "shopstream", chartDir, "--namespace", "shop"}
	if values != "" {
		args = append(args, "-f", filepath.Join("testdata", values+".yaml"))
	}
	return runHelm(t, append(args, extra...)...)
}

// mustRender is render that fails the test on an error.
func mustRender(t testing.TB, values string, extra ...string) []byte {
	t.Helper()
	out, err := render(t, values, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// values is the chart's values.yaml with a test values file merged over it,
// as Helm merges them.
func values(t testing.TB, file string) map[string]any {
	t.Helper()
	read := func(p string) map[string]any {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		return m
	}
	v := read(filepath.Join(chartDir, "values.yaml"))
	if file != "" {
		merge(v, read(filepath.Join("testdata", file+".yaml")))
	}
	return v
}

func merge(dst, src map[string]any) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = sv
	}
}

// lookup reads a value by its dotted path ("streamer.autoscaling.maxReplicas").
func lookup(v map[string]any, path string) any {
	var cur any = v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// number is a numeric value of the values (YAML numbers decode as float64).
func number(v map[string]any, path string) int {
	f, _ := lookup(v, path).(float64)
	return int(f)
}
