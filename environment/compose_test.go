package environment_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/testtool"
)

// compose runs docker-compose in this directory with a clean environment,
// so the developer's own variables cannot make a broken file pass. No
// Docker engine runs here: the stack itself is not started by any test.
func compose(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testtool.DockerCompose(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestComposeFileIsValid(t *testing.T) {
	if out, err := compose(t, "--env-file", ".env.example", "-f", "compose.yaml", "config", "-q"); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
	// Without credentials compose refuses, and says where they come from.
	empty := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := compose(t, "--env-file", empty, "-f", "compose.yaml", "config", "-q")
	if err == nil || !strings.Contains(out, ".env.example") {
		t.Fatalf("without an .env: err %v, output %q; want a refusal naming .env.example", err, out)
	}
}

type composeFile struct {
	Services map[string]struct {
		Profiles    []string       `yaml:"profiles"`
		Image       string         `yaml:"image"`
		Command     []string       `yaml:"command"`
		Environment map[string]any `yaml:"environment"`
		Volumes     []any          `yaml:"volumes"`
		// "host_ip:published:target" (docker-compose 1.29) or the long
		// form with host_ip (the compose plugin).
		Ports []any `yaml:"ports"`
	} `yaml:"services"`
}

// The resolved file holds the whole stack; the core needs no profile, so
// `docker-compose up` starts it alone, and every other part has one.
func TestComposeStackAndProfiles(t *testing.T) {
	out, err := compose(t, "--env-file", ".env.example", "-f", "compose.yaml", "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var f composeFile
	if err := yaml.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("parse the resolved compose file: %v", err)
	}
	core := map[string]bool{"kafka-1": true, "kafka-2": true, "kafka-3": true, "schema-registry": true, "postgres": true, "temporal": true, "temporal-ui": true}
	want := []string{"akhq", "grafana", "kafka-1", "kafka-2", "kafka-3", "kafka-connect", "ksqldb", "postgres", "prometheus", "schema-registry",
		"shopstream-api", "shopstream-bootstrap", "shopstream-collector", "shopstream-sink", "shopstream-streamer", "shopstream-worker", "temporal", "temporal-ui"}
	var got []string
	for name, s := range f.Services {
		got = append(got, name)
		if core[name] && len(s.Profiles) > 0 {
			t.Errorf("core service %s has profiles %v: the core must start alone", name, s.Profiles)
		}
		if !core[name] && len(s.Profiles) == 0 {
			t.Errorf("service %s has no profile: it would start with the core", name)
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("services %v, want %v", got, want)
	}
	// Nothing answers beyond this machine: the services run without
	// authentication.
	published := 0
	for name, s := range f.Services {
		for _, p := range s.Ports {
			published++
			ok := false
			switch p := p.(type) {
			case string:
				ok = strings.HasPrefix(p, "127.0.0.1:") && strings.Count(p, ":") == 2
			case map[string]any:
				ok = p["host_ip"] == "127.0.0.1"
			}
			if !ok {
				t.Errorf("%s publishes %v, want it on 127.0.0.1 only", name, p)
			}
		}
	}
	if published < 13 {
		t.Errorf("%d ports published, want the 13 of the stack", published)
	}
	if c := f.Services["shopstream-sink"].Command; len(c) != 1 || c[0] != "sink" {
		t.Errorf("shopstream-sink runs %v, want [sink]", c)
	}
	if dsn, _ := f.Services["shopstream-sink"].Environment["DATABASE_DSN"].(string); !strings.Contains(dsn, "@postgres:5432/shopstream") {
		t.Errorf("the sink's DATABASE_DSN is %q, want the compose postgres", dsn)
	}
	// Every env var a shopstream service gets is a setting shopstream reads.
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Env] = true
	}
	known["LOG_LEVEL"] = true
	// Flags of one command (cli/cmd_collector.go), not shared settings.
	known["API_ADDR"], known["IMAGE_FETCH_ALLOW_HOSTS"] = true, true
	for _, name := range []string{"shopstream-worker", "shopstream-sink", "shopstream-streamer", "shopstream-bootstrap", "shopstream-collector", "shopstream-api"} {
		for k := range f.Services[name].Environment {
			if !known[k] && k != "TOPIC_REPLICATION_FACTOR" {
				t.Errorf("%s sets %s, which shopstream does not read", name, k)
			}
		}
	}
}

// metricNames records the names of the metrics a component registers.
type metricNames map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (m metricNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if s := fqName.FindStringSubmatch(d.String()); s != nil {
			m[s[1]] = true
		}
	}
	return nil
}
func (m metricNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = m.Register(c)
	}
}
func (m metricNames) Unregister(prometheus.Collector) bool { return false }

var metricRef = regexp.MustCompile(`\bshopstream_sink_[a-z_]+`)

// The dashboards, the alert rules and Prometheus's config parse, and every
// sink metric they name is one the sink exports.
func TestDashboardsAndAlertsNameRealMetrics(t *testing.T) {
	names := metricNames{}
	// Built, never run: nothing dials the brokers.
	kafka, err := clients.NewKafka(clients.KafkaOptions{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	deps := component.Deps{Kafka: kafka, Topics: records.DefaultTopics(), Serde: &records.Serde{}, Registerer: names}
	if _, err := sink.New(sink.Options{Deps: deps, Store: &pgstore.Store{}}); err != nil {
		t.Fatal(err)
	}
	exists := func(ref string) bool {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if strings.HasSuffix(ref, suffix) && names[strings.TrimSuffix(ref, suffix)] {
				return true
			}
		}
		return false
	}
	var texts []string
	dashboards, _ := filepath.Glob("../dashboards/*.json")
	if len(dashboards) == 0 {
		t.Fatal("no dashboard in dashboards/")
	}
	for _, p := range dashboards {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil || d.UID == "" || len(d.Panels) == 0 {
			t.Fatalf("%s: %v (uid %q, %d panels)", p, err, d.UID, len(d.Panels))
		}
		for _, pn := range d.Panels {
			for _, tg := range pn.Targets {
				texts = append(texts, tg.Expr)
			}
		}
	}
	var rules testtool.AlertRules
	testtool.ReadYAML(t, "../dashboards/alerts.yml", &rules)
	if len(rules.Groups) == 0 {
		t.Fatal("alerts.yml has no rule group")
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("alert rule %+v lacks a name or an expression", r)
			}
			texts = append(texts, r.Expr)
		}
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	testtool.ReadYAML(t, "prometheus/prometheus.yml", &prom)
	if len(prom.RuleFiles) == 0 || len(prom.ScrapeConfigs) == 0 {
		t.Fatalf("prometheus.yml names no rule file or no scrape config: %+v", prom)
	}
	refs := 0
	for _, text := range texts {
		for _, ref := range metricRef.FindAllString(text, -1) {
			refs++
			if !exists(ref) {
				t.Errorf("%q names %s, which the sink does not export (it exports %v)", text, ref, names)
			}
		}
	}
	if refs == 0 {
		t.Fatal("the dashboards and alerts name no sink metric")
	}
}

// Prometheus scrapes every long-running shopstream service at the address
// it serves /metrics on (METRICS_ADDR, or the API's own address), and Kafka
// Connect's JMX exporter; Prometheus loads the alert rules and Grafana the
// dashboards of dashboards/.
func TestPrometheusScrapesEveryShopstreamService(t *testing.T) {
	out, err := compose(t, "--env-file", ".env.example", "-f", "compose.yaml", "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var f composeFile
	if err := yaml.Unmarshal([]byte(out), &f); err != nil {
		t.Fatal(err)
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	testtool.ReadYAML(t, "prometheus/prometheus.yml", &prom)
	targets := map[string]string{} // target: component label
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = st.Labels["component"]
			}
		}
	}
	services := 0
	for name, s := range f.Services {
		if s.Image != "shopstream:local" || len(s.Command) == 0 || s.Command[0] == "bootstrap" {
			continue
		}
		services++
		addr, _ := s.Environment["METRICS_ADDR"].(string)
		if a, ok := s.Environment["API_ADDR"].(string); ok {
			addr = a
		}
		_, port, ok := strings.Cut(addr, ":")
		if !ok {
			t.Errorf("%s serves /metrics on %q: want host:port", name, addr)
			continue
		}
		want := name + ":" + port
		if c, ok := targets[want]; !ok || c != s.Command[0] {
			t.Errorf("Prometheus does not scrape %s at %s with component=%s (targets %v)", name, want, s.Command[0], targets)
		}
	}
	if services < 5 {
		t.Errorf("%d long-running shopstream services in compose.yaml, want worker, streamer, sink, collector and api", services)
	}
	if _, ok := targets["kafka-connect:9404"]; !ok {
		t.Error("Prometheus does not scrape Kafka Connect's JMX exporter (kafka-connect:9404)")
	}
	if opts, _ := f.Services["kafka-connect"].Environment["KAFKA_OPTS"].(string); !strings.Contains(opts, "jmx_prometheus_javaagent.jar=9404:") {
		t.Errorf("kafka-connect's KAFKA_OPTS %q does not start the JMX exporter on 9404", opts)
	}
	mounts := func(service string) string { return fmt.Sprint(f.Services[service].Volumes) }
	if len(prom.RuleFiles) != 1 || !strings.Contains(mounts("prometheus"), "dashboards/alerts.yml") || !strings.Contains(mounts("prometheus"), prom.RuleFiles[0]) {
		t.Errorf("Prometheus loads %v; mounts %s; want dashboards/alerts.yml mounted there", prom.RuleFiles, mounts("prometheus"))
	}
	if !strings.Contains(mounts("grafana"), "/dashboards") {
		t.Errorf("Grafana mounts %s, want the dashboards/ folder", mounts("grafana"))
	}
}
