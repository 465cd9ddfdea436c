package activities

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// The Kafka Connect and ksqlDB credentials stay with the worker. A bootstrap
// runs through a real Temporal dev server, the worker's URLs carrying a user
// and password each; the connectors and migrations are applied with them,
// and the recorded history (input, activity inputs and results, failures)
// holds neither password, not even when a step fails on its URL. Before,
// the URLs travelled in the workflow's input, and so did the passwords.
// Connect and ksqlDB are the recorded-contract fakes of connect_test.go and
// ksql_test.go: neither can run here.
func TestBootstrapHistoryHoldsNoCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal dev server")
	}
	cliPath, err := environment.FindTemporalCLI("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cliPath, LogLevel: "error", Stdout: io.Discard, Stderr: io.Discard,
		ClientOptions: &client.Options{Logger: quiet},
	})
	if err != nil {
		t.Fatalf("start the Temporal dev server: %v", err)
	}
	t.Cleanup(func() { dev.Stop() })
	tc := dev.Client()

	const connectPass, ksqlPass = "connect-pw-4f1d", "ksql-pw-9c2e"
	connect, connectSrv := newFakeConnect(t)
	ksqlFake, _ := newFakeKsqlDB(t)
	var mu sync.Mutex
	var ksqlAuth string
	ksqlSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok {
			mu.Lock()
			ksqlAuth = u + ":" + p
			mu.Unlock()
		}
		ksqlFake.serve(w, r)
	}))
	t.Cleanup(ksqlSrv.Close)
	serde := kafkatest.NewSerde(t)
	if _, err := serde.Registry().CreateSchema(ctx, "recom-value", sr.Schema{Schema: serde.Schemas().Text(records.KindRecommendation)}); err != nil {
		t.Fatal(err)
	}
	withUser := func(u, user, pass string) string {
		return strings.Replace(u, "http://", "http://"+user+":"+pass+"@", 1)
	}

	// run runs the connectors and ksql steps on a worker of its own with
	// the given URLs, and returns the error and the history as text.
	run := func(id, connectURL, ksqlURL string) (workflows.BootstrapResult, error, string) {
		b := connectBootstrap(t, connectURL)
		b.KsqlURL, b.Registry, b.Schemas = ksqlURL, serde.Registry(), serde.Schemas()
		w := worker.New(tc, id, worker.Options{})
		w.RegisterWorkflow(workflows.Bootstrap)
		w.RegisterActivity(b)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		in := workflows.BootstrapInput{
			Steps:      []string{workflows.StepConnectors, workflows.StepKsql},
			Connectors: workflows.ApplyConnectorsInput{Vars: testVars},
			Ksql:       workflows.ApplyKsqlInput{Vars: map[string]string{"filtered_topic": "filtered", "find_topic": "find", "recom_topic": "recom"}},
		}
		wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: id}, workflows.Bootstrap, in)
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.BootstrapResult
		runErr := wr.Get(ctx, &res)
		var hist strings.Builder
		it := tc.GetWorkflowHistory(ctx, id, wr.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			// Text format writes a payload's bytes as a quoted string, so
			// the JSON inside is searchable as it is.
			hist.WriteString(prototext.Format(ev))
		}
		return res, runErr, hist.String()
	}

	res, err, hist := run("history-ok", withUser(connectSrv.URL, "admin", connectPass), withUser(ksqlSrv.URL, "ksql", ksqlPass))
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if len(res.Steps) != 2 || len(res.Steps[0].Items) != 5 || len(res.Steps[1].Items) == 0 {
		t.Fatalf("steps %+v, want the 5 connectors and the migrations applied", res.Steps)
	}
	mu.Lock()
	gotKsqlAuth := ksqlAuth
	mu.Unlock()
	if connect.auth != "admin:"+connectPass || gotKsqlAuth != "ksql:"+ksqlPass {
		t.Fatalf("Connect saw %q and ksqlDB %q: want the worker's credentials", connect.auth, gotKsqlAuth)
	}
	// The history is readable here: it holds the step results.
	if !strings.Contains(hist, "shopstream-products-sink") {
		t.Fatalf("the history does not show the connectors applied; the search below would prove nothing:\n%.2000s", hist)
	}
	for _, secret := range []string{connectPass, ksqlPass} {
		if strings.Contains(hist, secret) {
			t.Errorf("the workflow history holds a password of the worker's URLs (%s)", secret)
		}
	}

	// A URL the worker refuses fails the step; the reason, kept in the
	// history, names the URL with its password masked.
	_, err, hist = run("history-bad-url", "ftp://admin:"+connectPass+"@connect:8083", "")
	if err == nil || !strings.Contains(hist, "KAFKA_CONNECT_URL") || !strings.Contains(hist, "ftp://admin:*****@connect:8083") {
		t.Fatalf("bootstrap with an ftp:// Connect URL: %v, want a failure naming the masked URL in the history", err)
	}
	if strings.Contains(hist, connectPass) {
		t.Errorf("the failure in the history holds the Connect password")
	}
}
