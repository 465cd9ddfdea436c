package workflows

import (
	"os/exec"
	"strings"
	"testing"
)

// Workflows must stay deterministic: no Kafka client, no database driver,
// not even linked.
func TestWorkflowsLinkNoKafkaOrDatabase(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/twmb/franz-go") || strings.HasPrefix(dep, "github.com/jackc/pgx") {
			t.Errorf("workflows depends on %s", dep)
		}
	}
}
