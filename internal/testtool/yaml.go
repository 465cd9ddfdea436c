package testtool

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ReadYAML decodes the YAML file at path into v.
func ReadYAML(t testing.TB, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// AlertRules is what the tests read of a Prometheus rule file
// (dashboards/alerts.yml): each group's alerts and their expressions.
type AlertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}
