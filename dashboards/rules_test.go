// Package dashboards holds no Go code: its tests check the Grafana
// dashboards and Prometheus rule files beside them with promtool.
// (cli/dashboards_test.go checks that they name metrics the processes
// expose.)
package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shopstream/shopstream/internal/testtool"
)

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// The rule files pass `promtool check rules`, their tests pass `promtool
// test rules`, and every alert has a test in which it fires and one in
// which it does not.
func TestAlertRules(t *testing.T) {
	bin := testtool.Promtool(t)
	all, _ := filepath.Glob("*.yml")
	rules := slices.DeleteFunc(slices.Clone(all), func(p string) bool { return strings.HasSuffix(p, "_test.yml") })
	tests := slices.DeleteFunc(slices.Clone(all), func(p string) bool { return !strings.HasSuffix(p, "_test.yml") })
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("want rule files and their promtool tests in dashboards/, have %v", all)
	}
	if out, err := run(t, bin, append([]string{"check", "rules"}, rules...)...); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := run(t, bin, append([]string{"test", "rules"}, tests...)...); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	fires, quiet := map[string]bool{}, map[string]bool{}
	tested := map[string]bool{}
	for _, f := range tests {
		var rt ruleTests
		testtool.ReadYAML(t, f, &rt)
		for _, rf := range rt.RuleFiles {
			tested[rf] = true
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTests {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	for _, f := range rules {
		if !tested[f] {
			t.Errorf("%s: no *_test.yml loads it", f)
		}
		var rf testtool.AlertRules
		testtool.ReadYAML(t, f, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if !fires[r.Alert] || !quiet[r.Alert] {
					t.Errorf("%s: alert %s needs a test where it fires and one where it does not (fires %v, quiet %v)", f, r.Alert, fires[r.Alert], quiet[r.Alert])
				}
			}
		}
	}
}

// The checks above fail on a broken rule or a failing test: promtool's exit
// status is what they read.
func TestPromtoolCatchesBrokenRules(t *testing.T) {
	bin := testtool.Promtool(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m])\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, bin, "check", "rules", bad); err == nil {
		t.Fatalf("promtool check rules accepted an unbalanced expression:\n%s", out)
	}
	good := filepath.Join(dir, "good.yml")
	if err := os.WriteFile(good, []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "good_test.yml")
	if err := os.WriteFile(wrong, []byte("rule_files: [good.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: x\n        values: 0x5\n"+
		"    alert_rule_test:\n      - eval_time: 5m\n        alertname: A\n        exp_alerts: [{exp_labels: {}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, bin, "test", "rules", wrong); err == nil {
		t.Fatalf("promtool test rules passed a test that expects an alert that cannot fire:\n%s", out)
	}
}

var grafanaVariable = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{[^}]*\}|\$[a-zA-Z_]\w*`)

// Every dashboard's PromQL parses: the expressions, with Grafana's interval
// variables set to 5m, pass `promtool check rules` as recording rules.
func TestDashboardQueriesParse(t *testing.T) {
	bin := testtool.Promtool(t)
	paths, _ := filepath.Glob("*.json")
	if len(paths) == 0 {
		t.Fatal("no dashboards")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n")
	n := 0
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		fmt.Fprintf(&rules, "  - name: %q\n    rules:\n", p)
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if e, ok := v["expr"].(string); ok {
					n++
					e = grafanaVariable.ReplaceAllStringFunc(e, func(s string) string {
						if strings.HasPrefix(s, "$__") {
							return "5m"
						}
						return ".*"
					})
					q, _ := json.Marshal(e) // a JSON string is a YAML string
					fmt.Fprintf(&rules, "      - record: dashboard_expr_%d\n        expr: %s\n", n, q)
				}
				for _, c := range v {
					walk(c)
				}
			case []any:
				for _, c := range v {
					walk(c)
				}
			}
		}
		walk(doc)
	}
	f := filepath.Join(t.TempDir(), "dashboards.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, bin, "check", "rules", f); err != nil {
		t.Fatalf("promtool check rules over the dashboards' %d expressions: %v\n%s", n, err, out)
	}
}

// The external stack's Prometheus configuration is valid and loads these
// rules (its rule file path is the container's; here it points at
// alerts.yml).
func TestPrometheusConfigLoadsTheRules(t *testing.T) {
	bin := testtool.Promtool(t)
	raw, err := os.ReadFile("../environment/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "/etc/prometheus/alerts.yml", abs, 1)
	if cfg == string(raw) {
		t.Fatal("prometheus.yml does not load /etc/prometheus/alerts.yml, where compose.yaml mounts dashboards/alerts.yml")
	}
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, bin, "check", "config", f)
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	if !strings.Contains(out, "rule files found") && !strings.Contains(out, "rules found") {
		t.Fatalf("promtool did not check the rules:\n%s", out)
	}
}
