package helm

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestLintStrict(t *testing.T) {
	if out, err := runHelm(t, "lint", "--strict", chartDir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range valuesFiles {
		if out, err := runHelm(t, "lint", "--strict", chartDir, "-f", filepath.Join("testdata", f+".yaml")); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

// Every values file renders objects that decode strictly into their types
// and pass every check.
func TestRenderedObjectsPassEveryCheck(t *testing.T) {
	for _, f := range valuesFiles {
		t.Run(f, func(t *testing.T) {
			objs, err := decode(mustRender(t, f))
			if err != nil {
				t.Fatal(err)
			}
			vals := values(t, f)
			for _, c := range checks {
				if err := c.run(objs, vals); err != nil {
					t.Errorf("%s:\n%v", c.name, err)
				}
			}
		})
	}
}

// What must be there, whatever the checks say: a workload per component
// with its probes, and a ScaledObject for each consumer and the worker when
// KEDA is on.
func TestProductionRendersEveryComponent(t *testing.T) {
	objs, err := decode(mustRender(t, "production"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, w := range objs.workloads() {
		kinds[w.Component] = w.Kind
	}
	want := map[string]string{"api": "Deployment", "collector": "StatefulSet", "sink": "Deployment", "streamer": "StatefulSet", "worker": "Deployment", "bootstrap": "Job"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("workloads %v, want %v", kinds, want)
	}
	var scaled []string
	for _, o := range objs.of("ScaledObject") {
		so := o.Typed.(*scaledObject)
		scaled = append(scaled, fmt.Sprintf("%s(%s)", so.Labels["app.kubernetes.io/component"], so.Spec.Triggers[0].Type))
	}
	sort.Strings(scaled)
	if got, want := strings.Join(scaled, " "), "collector(prometheus) sink(prometheus) streamer(prometheus) worker(temporal)"; got != want {
		t.Errorf("ScaledObjects: %s, want %s", got, want)
	}
	if n := len(objs.of("PodMonitor")) + len(objs.of("PrometheusRule")); n != 2 {
		t.Errorf("%d PodMonitors and PrometheusRules, want one of each", n)
	}
}

// The bootstrap Job applies the ACLs of each component's own principal
// when asked, naming each user as the components run.
func TestBootstrapAppliesTheACLsOfEachPrincipal(t *testing.T) {
	out, err := render(t, "production", "--set", "bootstrap.acls=true")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- --acls", "- --acl-users=streamer=shopstream-streamer", "- --acl-users=sink=shopstream-sink"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the rendered bootstrap Job does not say %q", want)
		}
	}
	if out, err := render(t, "production"); err != nil || strings.Contains(string(out), "--acls") {
		t.Errorf("bootstrap.acls off still applies ACLs (or fails: %v)", err)
	}
}

// mistakes are planted in the rendered production release, one at a time;
// each must make its check fail (nil: the strict decode).
var mistakes = []struct {
	name     string
	from, to string
	all      bool // replace every occurrence, not the first
	check    func(objects, map[string]any) error
}{
	{"a misspelled pod field", "livenessProbe:", "livenesProbe:", false, nil},
	{"an unknown KEDA field", "maxReplicaCount:", "maxReplicaCnt:", false, nil},
	{"an unknown prometheus-operator field", "podMetricsEndpoints:", "podMetricEndpoints:", false, nil},
	{"a wrong type", "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds: twenty", false, nil},
	{"a duplicate key", "automountServiceAccountToken: false", "automountServiceAccountToken: false\nautomountServiceAccountToken: true", false, nil},
	{"a writable root filesystem", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", false, checkSecurity},
	{"root", "runAsUser: 65532", "runAsUser: 0", false, checkSecurity},
	{"a capability kept", "drop: [ALL]", "drop: [NET_RAW]", false, checkSecurity},
	{"readiness on /healthz", "path: /readyz", "path: /healthz", false, checkProbes},
	{"a grace period shorter than the drain", "terminationGracePeriodSeconds: 25", "terminationGracePeriodSeconds: 12", false, checkProbes},
	{"no preStop wait", "seconds: 5", "seconds: 0", false, checkProbes},
	{"a transactional id that is no pod name", "value: $(POD_NAME)", "value: collector", false, checkFencing},
	{"a shared ServiceAccount", "serviceAccountName: shopstream-sink", "serviceAccountName: default", false, checkPerComponent},
	{"a consumer open to connections", "port: metrics", "port: 5432", false, checkIngress},
	{"a password in the ConfigMap", `LOG_LEVEL: "info"`, `DATABASE_PASSWORD: "hunter2"`, false, checkSecrets},
	{"a literal password", "name: KAFKA_SASL_PASSWORD_FILE", "name: KAFKA_SASL_PASSWORD", false, checkSecrets},
	{"more replicas than partitions", "maxReplicaCount: 12", "maxReplicaCount: 24", false, checkAutoscaling},
	{"a misspelled trigger setting", "query:", "querry:", false, checkAutoscaling},
	{"a bootstrap on install only", "helm.sh/hook: post-install,post-upgrade", "helm.sh/hook: post-install", true, checkBootstrap},
	{"an alert that is not dashboards/alerts.yml", "expr: up == 0", "expr: up == 1", false, checkObservability},
	{"a dashboard that is not dashboards/", `"title"`, `"titel"`, false, checkObservability},
}

func TestEveryCheckFailsOnAPlantedMistake(t *testing.T) {
	base := string(mustRender(t, "production"))
	vals := values(t, "production")
	objs, err := decode([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range mistakes {
		n := 1
		if m.all {
			n = -1
		}
		if !strings.Contains(base, m.from) {
			t.Errorf("#%d %s: the release has no %q to change", i, m.name, m.from)
			continue
		}
		planted, err := decode([]byte(strings.Replace(base, m.from, m.to, n)))
		if m.check == nil {
			if err == nil {
				t.Errorf("#%d %s: the strict decode accepted it", i, m.name)
			} else {
				t.Logf("#%d %s: %v", i, m.name, firstLine(err))
			}
			continue
		}
		if err != nil {
			t.Errorf("#%d %s: the decode failed before the check could: %v", i, m.name, err)
			continue
		}
		if err := m.check(objs, vals); err != nil {
			t.Errorf("#%d %s: the check fails without the mistake: %v", i, m.name, err)
		}
		if err := m.check(planted, vals); err == nil {
			t.Errorf("#%d %s: the check passed", i, m.name)
		} else {
			t.Logf("#%d %s: %v", i, m.name, firstLine(err))
		}
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Bad values fail `helm template` with a message that names the problem.
func TestBadValuesAreRefused(t *testing.T) {
	for i, c := range []struct {
		set  string
		want string
	}{
		{"streamer.replicaz=3", "replicaz"},
		{"kafka.partitionz=12", "partitionz"},
		{"kafka.partitions=twelve", "kafka.partitions"},
		{"autoscaling.mode=auto", "autoscaling.mode"},
		{"networkPolicy.egress.kafka.port=9092", "port"},
		{"streamer.autoscaling.maxReplicas=13", "kafka.partitions=12"},
		{"sink.autoscaling.minReplicas=7", "above maxReplicas"},
		{"schemaRegistry.url=http://user:pw@registry:8081", "carries a password"},
		// What shopstream itself would refuse at start (internal/config).
		{"kafka.tls.secret=kafka-ca", "does not use TLS: set SSL or SASL_SSL"},
		{"kafka.sasl.mechanism=PLAIN", "needs kafka.securityProtocol SASL_SSL"},
		{"kafka.securityProtocol=SASL_SSL,kafka.sasl.mechanism=SCRAM-SHA-512", "needs a user and a password Secret"},
		{"kafka.securityProtocol=SASL_SSL,kafka.sasl.mechanism=OAUTHBEARER", "needs kafka.sasl.oauthbearer.tokenEndpointURL"},
		{"kafka.securityProtocol=SASL_PLAINTEXT,kafka.sasl.mechanism=AWS_MSK_IAM", "works over TLS only"},
	} {
		out, err := render(t, "", "--set", c.set)
		if err == nil {
			t.Errorf("#%d --set %s rendered %d bytes", i, c.set, len(out))
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("#%d --set %s: error does not name %q: %v", i, c.set, c.want, err)
		}
		t.Logf("#%d --set %s: %v", i, c.set, err)
	}
	// The autoscaling modes with no autoscaler check the fixed replicas.
	if _, err := render(t, "", "--set", "autoscaling.mode=off", "--set", "streamer.replicas=13"); err == nil || !strings.Contains(err.Error(), "streamer.replicas") {
		t.Errorf("13 fixed streamer replicas on 12 partitions: %v", err)
	}
}

// Every object of values.schema.json forbids keys it does not list; a map
// of free keys (labels, nodeSelector) says what type its values have.
func TestSchemaIsClosed(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	if open := openObjects(schema, "#"); len(open) > 0 {
		t.Errorf("schema objects that accept unknown keys:\n%s", strings.Join(open, "\n"))
	}
	// The walk itself finds an object left open.
	planted := map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "object", "properties": map[string]any{}}}, "additionalProperties": false}
	if open := openObjects(planted, "#"); len(open) != 1 {
		t.Errorf("a planted open object: found %v", open)
	}
}

// openObjects lists the schema paths of objects that accept any key.
func openObjects(s map[string]any, path string) []string {
	var out []string
	if s["type"] == "object" {
		switch ap := s["additionalProperties"].(type) {
		case bool:
			if ap {
				out = append(out, path)
			}
		case map[string]any:
			if ap["type"] == nil && ap["$ref"] == nil {
				out = append(out, path+" (untyped map)")
			}
		default:
			out = append(out, path)
		}
	}
	for _, key := range []string{"properties", "$defs"} {
		if props, ok := s[key].(map[string]any); ok {
			for name, sub := range props {
				if m, ok := sub.(map[string]any); ok {
					out = append(out, openObjects(m, path+"/"+key+"/"+name)...)
				}
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := s[key].(map[string]any); ok {
			out = append(out, openObjects(m, path+"/"+key)...)
		}
	}
	sort.Strings(out)
	return out
}

// `helm package` follows the files/dashboards symlink: the package carries
// the dashboards and alert rules themselves, and .helmignore keeps the rule
// tests out.
func TestPackageCarriesTheDashboards(t *testing.T) {
	dir := t.TempDir()
	if out, err := runHelm(t, "package", chartDir, "--destination", dir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "shopstream-0.1.0.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = true
	}
	for _, want := range []string{"shopstream/files/dashboards/alerts.yml", "shopstream/files/dashboards/shopstream-overview.json"} {
		if !files[want] {
			t.Errorf("the package lacks %s", want)
		}
	}
	for _, unwanted := range []string{"shopstream/files/dashboards/rules_test.go", "shopstream/files/dashboards/alerts_test.yml"} {
		if files[unwanted] {
			t.Errorf("the package carries %s", unwanted)
		}
	}
}
