package streamer

import (
	"os/exec"
	"strings"
	"testing"
)

// The hot path must never wait on Temporal: the package may not even link
// it. (The workflows package has the mirror-image rule; see its test.)
func TestStreamerDoesNotImportTemporal(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "go.temporal.io/") {
			t.Errorf("streamer depends on %s", dep)
		}
	}
}
