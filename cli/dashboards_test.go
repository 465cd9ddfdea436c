package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/testtool"
)

// vocabulary is every metric name a panel or an alert may use, with the
// labels each series carries.
type vocabulary struct {
	labels map[string]map[string]bool
	// targetLabels are the labels Prometheus adds to every scraped series
	// (job, instance, and the static labels of environment/prometheus).
	targetLabels map[string]bool
}

func (v vocabulary) add(name string, labels ...string) {
	if v.labels[name] == nil {
		v.labels[name] = map[string]bool{}
	}
	for _, l := range labels {
		v.labels[name][l] = true
	}
}

// exposedVocabulary is what the processes expose (exposedMetrics), the
// series Prometheus derives from a histogram or summary, and the series of
// the stack's other exporters that the rules and dashboards may use:
// Prometheus' own up per target and Kafka Connect's JMX exporter
// (environment/kafka-connect/jmx-exporter.yml, whose literal metric names
// are read from that file).
func exposedVocabulary(t *testing.T) vocabulary {
	t.Helper()
	v := vocabulary{labels: map[string]map[string]bool{}, targetLabels: map[string]bool{"job": true, "instance": true}}
	for _, p := range exposedMetrics(t) {
		for name, d := range p.descs {
			v.add(name, d.labels...)
		}
		for _, mf := range p.families {
			name := mf.GetName()
			v.add(name)
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					v.add(name, l.GetName())
				}
			}
		}
		for name, kind := range p.kinds() {
			labels := keys(v.labels[name])
			switch kind {
			case telemetry.KindHistogram:
				v.add(name+"_bucket", append(labels, "le")...)
				v.add(name+"_sum", labels...)
				v.add(name+"_count", labels...)
			case telemetry.KindSummary:
				v.add(name, "quantile")
				v.add(name+"_sum", labels...)
				v.add(name+"_count", labels...)
			}
		}
	}

	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	testtool.ReadYAML(t, "../environment/prometheus/prometheus.yml", &prom)
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for l := range st.Labels {
				v.targetLabels[l] = true
			}
		}
	}
	v.add("up")

	var jmx struct {
		Rules []struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	}
	testtool.ReadYAML(t, "../environment/kafka-connect/jmx-exporter.yml", &jmx)
	for _, r := range jmx.Rules {
		if r.Name != "" && !strings.Contains(r.Name, "$") {
			v.add(r.Name)
			for l := range r.Labels {
				v.add(r.Name, l)
			}
		}
	}
	return v
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// check returns what is wrong with an expression: a metric no process
// exposes, or a matcher on a label the metric does not have.
func (v vocabulary) check(expr string) []error {
	sels, err := promqlSelectors(expr)
	if err != nil {
		return []error{err}
	}
	if len(sels) == 0 {
		return []error{fmt.Errorf("%q selects no metric", expr)}
	}
	var errs []error
	for _, sel := range sels {
		if sel.nameRegex != "" {
			re, err := regexp.Compile("^(?:" + sel.nameRegex + ")$")
			if err != nil {
				errs = append(errs, fmt.Errorf("%q: __name__ regexp: %v", expr, err))
				continue
			}
			matched := false
			for name := range v.labels {
				matched = matched || re.MatchString(name)
			}
			if !matched {
				errs = append(errs, fmt.Errorf("%q: no exposed metric matches __name__=~%q", expr, sel.nameRegex))
			}
			continue
		}
		labels, ok := v.labels[sel.name]
		if !ok {
			errs = append(errs, fmt.Errorf("%q names %s, which no shopstream process exposes", expr, sel.name))
			continue
		}
		for _, l := range sel.labels {
			if !labels[l] && !v.targetLabels[l] {
				errs = append(errs, fmt.Errorf("%q matches label %s, which %s does not have (it has %v)", expr, l, sel.name, keys(labels)))
			}
		}
	}
	return errs
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID    string           `json:"uid"`
	Title  string           `json:"title"`
	Panels []map[string]any `json:"panels"`
}

var labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// dashboardExprs returns every PromQL expression of a dashboard: each
// target's expr at any depth (panels inside rows too), and each template
// variable's query (label_values(expr, label) counts as expr with a matcher
// on label).
func dashboardExprs(raw []byte) ([]string, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var out []string
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if e, ok := n["expr"].(string); ok {
				out = append(out, e)
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	walk(doc["panels"])
	walk(doc["annotations"])
	if tpl, ok := doc["templating"].(map[string]any); ok {
		list, _ := tpl["list"].([]any)
		for _, item := range list {
			vr, _ := item.(map[string]any)
			if vr["type"] != "query" {
				continue
			}
			q, _ := vr["query"].(string)
			if m, ok := vr["query"].(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
				q = m[1]
				if !strings.Contains(q, "{") {
					q += "{" + m[2] + `=~".*"}`
				} else {
					q = strings.Replace(q, "{", "{"+m[2]+`=~".*",`, 1)
				}
			}
			if q != "" && !strings.HasPrefix(q, "label_values(") {
				out = append(out, q)
			}
		}
	}
	return out, nil
}

// checkDashboard parses a dashboard and checks every expression in it.
func (v vocabulary) checkDashboard(raw []byte) []error {
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return []error{err}
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		return []error{fmt.Errorf("want a uid, a title and panels; have uid %q, title %q, %d panels", d.UID, d.Title, len(d.Panels))}
	}
	exprs, err := dashboardExprs(raw)
	if err != nil {
		return []error{err}
	}
	if len(exprs) == 0 {
		return []error{fmt.Errorf("dashboard %s queries nothing", d.UID)}
	}
	var errs []error
	for _, e := range exprs {
		errs = append(errs, v.check(e)...)
	}
	return errs
}

// Every panel of every dashboard queries metrics that the processes
// expose, with labels they have; and the check fails on a dashboard that
// does not.
func TestDashboardsQueryExposedMetrics(t *testing.T) {
	v := exposedVocabulary(t)
	paths, err := filepath.Glob("../dashboards/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no dashboards in dashboards/ (%v)", err)
	}
	uids := map[string]string{}
	covered := map[string]bool{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range v.checkDashboard(raw) {
			t.Errorf("%s: %v", filepath.Base(p), err)
		}
		var d dashboard
		_ = json.Unmarshal(raw, &d)
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share the uid %s", other, filepath.Base(p), d.UID)
		}
		uids[d.UID] = filepath.Base(p)
		exprs, _ := dashboardExprs(raw)
		for _, e := range exprs {
			sels, _ := promqlSelectors(e)
			for _, s := range sels {
				covered[s.name] = true
			}
		}
	}
	// The dashboards: each part of the pipeline has one.
	for _, uid := range []string{"shopstream-overview", "shopstream-streamer", "shopstream-sink", "shopstream-collector", "shopstream-api", "shopstream-temporal"} {
		if _, ok := uids[uid]; !ok {
			t.Errorf("no dashboard with uid %s", uid)
		}
	}
	for _, name := range []string{"shopstream_kafka_consumer_lag_records", "shopstream_filter_desired_version", "shopstream_streamer_filter_applied_version",
		"temporal_activity_execution_failed_total", "temporal_workflow_task_execution_latency_seconds_bucket", "shopstream_api_requests_total"} {
		if !covered[name] {
			t.Errorf("no panel shows %s", name)
		}
	}

	t.Run("a panel naming a metric no process exposes fails", func(t *testing.T) {
		bad := func(exprs ...string) []byte {
			var targets []map[string]any
			for _, e := range exprs {
				targets = append(targets, map[string]any{"refId": "A", "expr": e})
			}
			raw, _ := json.Marshal(map[string]any{"uid": "synthetic", "title": "synthetic", "panels": []any{
				map[string]any{"type": "row", "panels": []any{map[string]any{"type": "timeseries", "targets": targets}}},
			}})
			return raw
		}
		for i, c := range []struct {
			raw  []byte
			want string // in the error; empty: no error
		}{
			{bad(`sum(rate(shopstream_streamer_records_in_total[5m]))`), ""},
			{bad(`sum(rate(shopstream_streamer_records_inn_total[5m]))`), "shopstream_streamer_records_inn_total, which no shopstream process exposes"},
			{bad(`histogram_quantile(0.9, sum by (le) (rate(shopstream_api_request_seconds_buckets[5m])))`), "shopstream_api_request_seconds_buckets"},
			{bad(`sum(shopstream_kafka_consumer_lag_records{rolee="dlq"})`), "matches label rolee"},
			{bad(`{__name__=~"shopstream_nothing_.*"}`), "no exposed metric matches"},
			{bad(`sum(rate(shopstream_api_requests_total[5m])) / sum(rate(shopstream_api_request_total[5m]))`), "shopstream_api_request_total"},
			{[]byte(`{"uid": "t", "title": "t", "panels": [{"targets": [{"expr": "up"}]}],
			  "templating": {"list": [{"type": "query", "query": {"query": "label_values(shopstream_kafka_consumer_lags, group)"}}]}}`), "shopstream_kafka_consumer_lags"},
			{[]byte(`{"uid": "t", "title": "t", "panels": [{"targets": [{"expr": "up"}]}],
			  "templating": {"list": [{"type": "query", "query": "label_values(shopstream_kafka_consumer_lag_records, grup)"}]}}`), "matches label grup"},
		} {
			errs := v.checkDashboard(c.raw)
			got := fmt.Sprint(errs)
			switch {
			case c.want == "" && len(errs) > 0:
				t.Errorf("#%d: %v, want no error", i, errs)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("#%d: %v, want an error saying %q", i, errs, c.want)
			}
		}
	})
}

// Every alert rule selects metrics that exist, with labels they have.
func TestAlertRulesSelectExposedMetrics(t *testing.T) {
	v := exposedVocabulary(t)
	files := ruleFiles(t)
	alerts := 0
	for _, f := range files {
		var rules testtool.AlertRules
		testtool.ReadYAML(t, f, &rules)
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				alerts++
				for _, err := range v.check(r.Expr) {
					t.Errorf("%s: alert %s: %v", filepath.Base(f), r.Alert, err)
				}
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alert rules in dashboards/")
	}
}

// ruleFiles are dashboards/*.yml except the promtool tests beside them.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob("../dashboards/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(p string) bool { return strings.HasSuffix(p, "_test.yml") })
}

func TestPromQLSelectors(t *testing.T) {
	for i, c := range []struct {
		expr string
		want string // name{labels} ...
	}{
		{`up`, `up{}`},
		{`sum by (le, route) (rate(shopstream_api_request_seconds_bucket{route!~"/metrics", code=~"5.."}[$__rate_interval]))`,
			`shopstream_api_request_seconds_bucket{route,code}`},
		{`histogram_quantile(0.99, sum(rate(a_bucket[5m])) by (le))`, `a_bucket{}`},
		{`max(a) - on() group_right() b{x="1"} > bool 0`, `a{} b{x}`},
		{`label_replace(up, "dst", "$1", "instance", "(.*):.*")`, `up{}`},
		{`sum without (instance) (x offset 5m) and on(job) y unless z`, `x{} y{} z{}`},
		{`count_values("version", shopstream_streamer_filter_applied_version)`, `shopstream_streamer_filter_applied_version{}`},
		{`{__name__=~"shopstream_.+_dead_letters_total", job="shopstream"}`, `~shopstream_.+_dead_letters_total{job}`},
		{`time() - t @ end()`, `t{}`},
		{"a # a comment naming b\n+ 1.5e3", `a{}`},
		{`sum(rate(x{a="}{[",b='q'}[1m:30s]))`, `x{a,b}`},
	} {
		sels, err := promqlSelectors(c.expr)
		if err != nil {
			t.Errorf("#%d %q: %v", i, c.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			name := s.name
			if s.nameRegex != "" {
				name = "~" + s.nameRegex
			}
			got = append(got, name+"{"+strings.Join(s.labels, ",")+"}")
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("#%d %q: %v, want %s", i, c.expr, got, c.want)
		}
	}
	for i, bad := range []string{`rate(x[5m]`, `x{a="1}`, `x{a}`, `{a="b"}`} {
		if _, err := promqlSelectors(bad); err == nil {
			t.Errorf("#%d %q: no error, want one", i, bad)
		}
	}
}
