// Package testtool holds what tests of several packages need besides the
// services they run: the command-line tools some tests drive (promtool,
// docker-compose; `make test` installs them, so under CI=true a missing one
// fails the test, and elsewhere it skips with how to install it), and a
// listener that never answers.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of the tool name, installed by script.
func Require(t testing.TB, name, script string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed and CI=true: install it with %s (make test-deps)", name, script)
		}
		t.Skipf("%s is not installed (%s, or make test-deps)", name, script)
	}
	return p
}

// Promtool is the path of Prometheus' promtool (Debian's prometheus
// package), which checks and unit-tests the alert rules.
func Promtool(t testing.TB) string {
	t.Helper()
	return Require(t, "promtool", "scripts/ensure-promtool.sh")
}

// DockerCompose is the path of Debian's docker-compose (1.29), which
// validates a compose file without a Docker engine.
func DockerCompose(t testing.TB) string {
	t.Helper()
	return Require(t, "docker-compose", "scripts/ensure-docker-compose.sh")
}
