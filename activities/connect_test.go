package activities

// Kafka Connect cannot run here (no JVM, no Docker), so these tests talk to
// an httptest server that answers as Connect's REST API is documented to
// (Apache Kafka "Kafka Connect REST API", Confluent "Kafka Connect REST
// Interface"): PUT /connectors/{name}/config answers 201 with the connector
// info when it creates and 200 when it updates, 409 {"error_code":409,...}
// while the workers rebalance, 400 for an invalid config; GET .../config and
// .../status answer 404 {"error_code":404,"message":"Connector X not
// found"} for an unknown connector; status carries connector and task states
// (UNASSIGNED, RUNNING, FAILED with a "trace"); POST
// .../restart?includeTasks=true&onlyFailed=true answers 202.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/workflows"
)

type fakeTask struct {
	state, trace string
}

type fakeConnector struct {
	config map[string]string
	// polls counts status reads; the first ones report UNASSIGNED, as a
	// new connector is until the workers rebalance.
	polls int
	tasks []fakeTask
}

type fakeConnect struct {
	mu         sync.Mutex
	connectors map[string]*fakeConnector
	conflicts  int               // PUTs to answer 409 before accepting
	failWith   map[string]string // connector -> trace its task fails with
	puts       []string
	restarts   []string
	auth       string
}

func newFakeConnect(t *testing.T) (*fakeConnect, *httptest.Server) {
	f := &fakeConnect{connectors: map[string]*fakeConnector{}, failWith: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, name string) {
	writeJSON(w, 404, map[string]any{"error_code": 404, "message": fmt.Sprintf("Connector %s not found", name)})
}

func (f *fakeConnect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, p, ok := r.BasicAuth(); ok {
		f.auth = u + ":" + p
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "connectors" {
		writeJSON(w, 404, map[string]any{"error_code": 404, "message": "HTTP 404 Not Found"})
		return
	}
	name, what := parts[1], parts[2]
	c := f.connectors[name]
	switch {
	case r.Method == http.MethodGet && what == "config":
		if c == nil {
			notFound(w, name)
			return
		}
		cfg := map[string]string{"name": name} // Connect adds the name
		for k, v := range c.config {
			cfg[k] = v
		}
		writeJSON(w, 200, cfg)
	case r.Method == http.MethodPut && what == "config":
		if f.conflicts > 0 {
			f.conflicts--
			writeJSON(w, 409, map[string]any{"error_code": 409, "message": "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)"})
			return
		}
		var cfg map[string]string
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &cfg); err != nil {
			writeJSON(w, 500, map[string]any{"error_code": 500, "message": err.Error()})
			return
		}
		if cfg["connector.class"] != "io.debezium.connector.jdbc.JdbcSinkConnector" {
			writeJSON(w, 400, map[string]any{"error_code": 400, "message": "Connector configuration is invalid and contains the following 1 error(s):\nInvalid value for configuration connector.class\nYou can also find the above list of errors at the endpoint `/connector-plugins/{connectorType}/config/validate`"})
			return
		}
		f.puts = append(f.puts, name)
		status := 200
		if c == nil {
			status = 201
			c = &fakeConnector{}
			f.connectors[name] = c
		}
		c.config, c.polls = cfg, 0
		c.tasks = []fakeTask{{state: "RUNNING"}}
		if trace, ok := f.failWith[name]; ok {
			c.tasks[0] = fakeTask{state: "FAILED", trace: trace}
		}
		writeJSON(w, status, map[string]any{"name": name, "config": cfg, "tasks": []any{}, "type": "sink"})
	case r.Method == http.MethodGet && what == "status":
		if c == nil {
			notFound(w, name)
			return
		}
		c.polls++
		st := map[string]any{"name": name, "type": "sink"}
		if c.polls <= 2 {
			st["connector"] = map[string]any{"state": "UNASSIGNED", "worker_id": "connect-1:8083"}
			st["tasks"] = []any{}
		} else {
			st["connector"] = map[string]any{"state": "RUNNING", "worker_id": "connect-1:8083"}
			var tasks []any
			for i, t := range c.tasks {
				task := map[string]any{"id": i, "state": t.state, "worker_id": "connect-1:8083"}
				if t.trace != "" {
					task["trace"] = t.trace
				}
				tasks = append(tasks, task)
			}
			st["tasks"] = tasks
		}
		writeJSON(w, 200, st)
	case r.Method == http.MethodPost && what == "restart":
		if c == nil {
			notFound(w, name)
			return
		}
		if r.URL.Query().Get("includeTasks") != "true" || r.URL.Query().Get("onlyFailed") != "true" {
			writeJSON(w, 400, map[string]any{"error_code": 400, "message": "want includeTasks and onlyFailed"})
			return
		}
		f.restarts = append(f.restarts, name)
		delete(f.failWith, name)
		for i := range c.tasks {
			c.tasks[i] = fakeTask{state: "RUNNING"}
		}
		writeJSON(w, 202, map[string]any{"name": name})
	default:
		writeJSON(w, 405, map[string]any{"error_code": 405, "message": "HTTP 405 Method Not Allowed"})
	}
}

var testVars = map[string]string{
	"PRODUCT_TOPIC": "p", "PRODUCT_WITH_FULL_IMG_SET_TOPIC": "c", "PRODUCT_FILTERED_TOPIC": "f",
	"PRODUCT_FIND_TOPIC": "s", "PERSONAL_RECOM_TOPIC": "r", "DLQ_TOPIC": "dlq",
}

func applyConnectors(t *testing.T, b *Bootstrap, in workflows.ApplyConnectorsInput) (workflows.StepResult, error) {
	t.Helper()
	env := activityEnv(b)
	val, err := env.ExecuteActivity(workflows.ActivityApplyConnectors, in)
	var res workflows.StepResult
	if err == nil {
		err = val.Get(&res)
	}
	return res, err
}

func connectBootstrap(t *testing.T, connectURL string) *Bootstrap {
	t.Helper()
	configs, err := environment.ConnectorConfigs()
	if err != nil {
		t.Fatal(err)
	}
	return &Bootstrap{HTTP: &http.Client{Timeout: 5 * time.Second}, Connectors: configs, connectPoll: time.Millisecond, ConnectURL: connectURL}
}

// The real configs of environment/connect are created through a rebalance's
// 409s, waited for until RUNNING, and a second run changes nothing.
func TestApplyConnectorsCreatesWaitsAndIsIdempotent(t *testing.T) {
	f, srv := newFakeConnect(t)
	f.conflicts = 3
	b := connectBootstrap(t, strings.Replace(srv.URL, "http://", "http://admin:s3cret@", 1))
	in := workflows.ApplyConnectorsInput{Vars: testVars}
	res, err := applyConnectors(t, b, in)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.Items) != 5 {
		t.Fatalf("items %+v, want the 5 connectors of environment/connect", res.Items)
	}
	for i, it := range res.Items {
		if it.Outcome != workflows.OutcomeCreated || !strings.HasPrefix(it.Detail, "RUNNING") {
			t.Errorf("#%d %s: %s %q, want created and RUNNING", i, it.Name, it.Outcome, it.Detail)
		}
	}
	if f.conflicts != 0 || len(f.puts) != 5 {
		t.Errorf("409s left %d, puts %v: want every 409 retried and 5 PUTs", f.conflicts, f.puts)
	}
	if f.auth != "admin:s3cret" {
		t.Errorf("basic auth %q, want the credentials of KAFKA_CONNECT_URL", f.auth)
	}
	products := f.connectors["shopstream-products-sink"].config
	if products["topics"] != "p" || products["errors.deadletterqueue.topic.name"] != "dlq" ||
		products["connection.password"] != "${env:SINK_JDBC_PASSWORD}" || products["insert.mode"] != "upsert" ||
		products["delete.enabled"] != "true" || products["primary.key.mode"] != "record_key" {
		t.Errorf("products connector config %v: want topics resolved, ${env:...} left to Connect, upsert by record key, delete on tombstone", products)
	}

	f.puts = nil
	res, err = applyConnectors(t, b, in)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	for i, it := range res.Items {
		if it.Outcome != workflows.OutcomeUnchanged {
			t.Errorf("second run #%d %s: %s, want unchanged", i, it.Name, it.Outcome)
		}
	}
	if len(f.puts) != 0 {
		t.Errorf("second run PUT %v, want nothing", f.puts)
	}

	// A new topic name changes every connector that reads it.
	in.Vars = map[string]string{}
	for k, v := range testVars {
		in.Vars[k] = v
	}
	in.Vars["PRODUCT_TOPIC"] = "p2"
	res, err = applyConnectors(t, b, in)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, it := range res.Items {
		if it.Outcome == workflows.OutcomeChanged {
			changed++
		}
	}
	if changed != 1 || f.connectors["shopstream-products-sink"].config["topics"] != "p2" {
		t.Errorf("after renaming the product topic %d connectors changed, want 1 (products) reading p2", changed)
	}
}

func TestApplyConnectorsReportsAFailedTaskWithItsTrace(t *testing.T) {
	f, srv := newFakeConnect(t)
	trace := "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception.\n\tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:632)\nCaused by: org.postgresql.util.PSQLException: Connection to postgres:5432 refused."
	f.failWith["shopstream-searches-sink"] = trace
	_, err := applyConnectors(t, connectBootstrap(t, srv.URL), workflows.ApplyConnectorsInput{Vars: testVars})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeConnectorFailed || !appErr.NonRetryable() {
		t.Fatalf("err = %v, want a non-retryable %s error", err, ErrTypeConnectorFailed)
	}
	if !strings.Contains(err.Error(), "shopstream-searches-sink") || !strings.Contains(err.Error(), "task 0") || !strings.Contains(err.Error(), "Connection to postgres:5432 refused") {
		t.Fatalf("err = %v, want the connector, the task and its trace", err)
	}

	// Once the cause is fixed, the next run restarts the failed task of the
	// unchanged connector instead of leaving it FAILED.
	res, err := applyConnectors(t, connectBootstrap(t, srv.URL), workflows.ApplyConnectorsInput{Vars: testVars})
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if len(f.restarts) != 1 || f.restarts[0] != "shopstream-searches-sink" {
		t.Errorf("restarts %v, want the failed searches connector", f.restarts)
	}
	for _, it := range res.Items {
		if !strings.HasPrefix(it.Detail, "RUNNING") {
			t.Errorf("%s: %q, want RUNNING", it.Name, it.Detail)
		}
	}
}

func TestApplyConnectorsBadInputIsNotRetried(t *testing.T) {
	_, srv := newFakeConnect(t)
	for i, c := range []struct {
		b    *Bootstrap
		in   workflows.ApplyConnectorsInput
		want string
	}{
		{connectBootstrap(t, srv.URL), workflows.ApplyConnectorsInput{Vars: map[string]string{"PRODUCT_TOPIC": "p"}}, "no value for DLQ_TOPIC"},
		{connectBootstrap(t, "ftp://admin:s3cret@connect"), workflows.ApplyConnectorsInput{Vars: testVars}, `KAFKA_CONNECT_URL "ftp://admin:*****@connect"`},
		{&Bootstrap{Connectors: fstest.MapFS{"x.json": {Data: []byte(`{"name":"x","config":{"connector.class":"com.example.Other","topics":"t"}}`)}}, connectPoll: time.Millisecond, ConnectURL: srv.URL},
			workflows.ApplyConnectorsInput{}, "Connector configuration is invalid"},
		{&Bootstrap{Connectors: fstest.MapFS{"x.json": {Data: []byte(`{"name":"x","config":{"tasks.max":1}}`)}}, ConnectURL: srv.URL},
			workflows.ApplyConnectorsInput{}, "string values"},
	} {
		_, err := applyConnectors(t, c.b, c.in)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !appErr.NonRetryable() || !strings.Contains(err.Error(), c.want) {
			t.Errorf("#%d: err = %v, want a non-retryable error saying %q", i, err, c.want)
		}
	}
}

func TestApplyConnectorsSkipsWithoutAURL(t *testing.T) {
	res, err := applyConnectors(t, connectBootstrap(t, ""), workflows.ApplyConnectorsInput{})
	if err != nil || res.Skipped == "" {
		t.Fatalf("res %+v, err %v; want skipped", res, err)
	}
}

// Every connector of environment/connect is a Debezium JDBC sink that upserts
// by key, and the vars the CLI passes cover every placeholder.
func TestShippedConnectorConfigs(t *testing.T) {
	configs, err := LoadConnectorConfigs(connectBootstrap(t, "").Connectors)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]bool{}
	for _, c := range configs {
		cfg, err := c.Resolve(testVars)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if cfg["connector.class"] != "io.debezium.connector.jdbc.JdbcSinkConnector" || cfg["insert.mode"] != "upsert" {
			t.Errorf("%s: class %s, insert.mode %s; want Debezium's JDBC sink upserting", c.Name, cfg["connector.class"], cfg["insert.mode"])
		}
		if cfg["primary.key.mode"] == "record_key" && cfg["delete.enabled"] != "true" {
			t.Errorf("%s: keyed by the record key but tombstones do not delete", c.Name)
		}
		for k, v := range cfg {
			if strings.Contains(v, "${") && !strings.Contains(v, "${env:") {
				t.Errorf("%s: %s = %q keeps a placeholder", c.Name, k, v)
			}
		}
		tables[cfg["table.name.format"]] = true
	}
	for _, want := range []string{"products", "filtered_products", "complete_products", "searches", "recommendations"} {
		if !tables[want] {
			t.Errorf("no connector writes table %s", want)
		}
	}
}
