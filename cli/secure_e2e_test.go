package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shopstream/shopstream/internal/clients/temporalclient"
)

// `shopstream dev --secure` and every command with its secure.env sourced:
// bootstrap with the ACLs, a filter change, an emulation, a search and its
// recommendation, status, config; the sink's table fills as the components
// run as their own principals. A client without credentials is refused,
// and one with a wrong password is told that authentication failed for its
// user within the dial timeout. Then every log line, every command's
// output, `shopstream config` and the workflow histories of the run are
// searched for the passwords: none holds one.
func TestSecureDevEndToEnd(t *testing.T) {
	if _, err := os.Stat("../bin/temporal"); err != nil {
		t.Skip("no Temporal CLI in ../bin (make temporal)")
	}
	dir := devDataDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	var devOut, devErr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"shopstream", "dev", "--secure", "--data-dir", dir, "--partitions", "3"}, strings.NewReader(""), &devOut, &devErr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("dev did not stop within 20s")
		}
	})
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(devOut.String(), "shopstream dev: ready"); time.Sleep(100 * time.Millisecond) {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("dev --secure exited %d:\n%s\n%s", code, devOut.String(), devErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev --secure not ready after 2 minutes:\n%s\n%s", devOut.String(), devErr.String())
		}
	}
	for _, want := range []string{"secured: Kafka speaks SASL_SSL", "secure.env", "https://127.0.0.1:8081"} {
		if !strings.Contains(devOut.String(), want) {
			t.Errorf("dev's output does not say %q", want)
		}
	}
	env := readEnvFile(t, filepath.Join(dir, "secure.env"))
	for k, v := range env {
		t.Setenv(k, v)
	}
	var outputs []string // everything a person saw
	cmd := func(args ...string) (int, string) {
		t.Helper()
		start := time.Now()
		code, out, errOut := runApp(t, context.Background(), args...)
		outputs = append(outputs, out, errOut)
		t.Logf("shopstream %s: exit %d after %s\n%s%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out, errOut)
		return code, out + errOut
	}
	mustRun := func(args ...string) string {
		t.Helper()
		code, out := cmd(args...)
		if code != 0 {
			t.Fatalf("shopstream %s exited %d:\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}

	if out := mustRun("bootstrap", "--acls", "--partitions", "3"); !strings.Contains(out, "User:shopstream-streamer WRITE topic analytic_products_filtered") || !strings.Contains(out, "nothing changed") {
		t.Errorf("bootstrap --acls on dev's stack should find every ACL and topic in place:\n%s", out)
	}
	mustRun("filter", "set", "phone", "--wait")
	mustRun("emulate", "--count", "400", "--batch-size", "100")

	dsn, err := os.ReadFile(filepath.Join(dir, "pg", "dsn"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), strings.TrimSpace(string(dsn)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows int
	for deadline := time.Now().Add(time.Minute); rows < 400 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := conn.QueryRow(context.Background(), "select count(*) from products").Scan(&rows); err != nil {
			t.Fatal(err)
		}
	}
	if rows != 400 {
		t.Fatalf("the sink's products table holds %d rows, want 400", rows)
	}
	var name string
	if err := conn.QueryRow(context.Background(), "select name from filtered_products limit 1").Scan(&name); err != nil {
		t.Fatalf("no filtered product: %v", err)
	}
	if out := mustRun("search", "--user", "alice", "--wait", name); !strings.Contains(strings.ToLower(out), strings.ToLower(name)) {
		t.Errorf("search --wait does not show the recommendation for %q:\n%s", name, out)
	}
	mustRun("recs", "--user", "alice")
	mustRun("dlq", "list")
	var code int
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if code, out = cmd("status", "--interval", "200ms"); code == 0 || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 {
		t.Fatalf("status on the secured stack exited %d:\n%s", code, out)
	}
	config := mustRun("config")
	if !strings.Contains(config, "***** (set)") && !strings.Contains(config, env["KAFKA_SASL_PASSWORD_FILE"]) {
		t.Errorf("config shows neither the masked password nor its file:\n%s", config)
	}

	// No credentials at all: the SASL listener refuses.
	t.Setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
	t.Setenv("KAFKA_SASL_MECHANISM", "")
	if code, out := cmd("status"); code == 0 || !strings.Contains(out, "requires SASL") {
		t.Errorf("status without credentials: exit %d\n%s", code, out)
	}
	// A wrong password: authentication failed, for that user, quickly.
	t.Setenv("KAFKA_SECURITY_PROTOCOL", env["KAFKA_SECURITY_PROTOCOL"])
	t.Setenv("KAFKA_SASL_MECHANISM", env["KAFKA_SASL_MECHANISM"])
	t.Setenv("KAFKA_SASL_PASSWORD", "not-the-admin-password")
	start := time.Now()
	code, out = cmd("status")
	if took := time.Since(start); code == 0 || took > 15*time.Second || !strings.Contains(out, `authentication failed`) || !strings.Contains(out, `user "admin"`) {
		t.Errorf("status with a wrong password: exit %d after %s:\n%s", code, took, out)
	}
	t.Setenv("KAFKA_SASL_PASSWORD", "")

	// The secret grep.
	var passwords map[string]string
	raw, err := os.ReadFile(filepath.Join(dir, "secure", "passwords.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &passwords); err != nil {
		t.Fatal(err)
	}
	histories := workflowHistories(t, env["TEMPORAL_ADDRESS"])
	haystacks := map[string]string{"dev's output": devOut.String(), "dev's log": devErr.String(), "the commands' output": strings.Join(outputs, "\n"), "the workflow histories": histories}
	if len(histories) < 1000 || !strings.Contains(histories, "EmulateShop") || !strings.Contains(histories, "Bootstrap") {
		t.Fatalf("the recorded histories (%d bytes) do not hold the run's workflows: the grep would prove nothing", len(histories))
	}
	for user, pw := range passwords {
		for where, text := range haystacks {
			if strings.Contains(text, pw) {
				t.Errorf("the password of %s appears in %s", user, where)
			}
		}
	}
}

// readEnvFile reads the export lines of a file written for a shell.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	if len(env) < 8 {
		t.Fatalf("%s holds %d settings: %v", path, len(env), env)
	}
	return env
}

// workflowHistories is every event of every workflow on the server, as
// JSON.
func workflowHistories(t *testing.T, addr string) string {
	t.Helper()
	ctx := context.Background()
	tc, err := temporalclient.Dial(ctx, temporalclient.Options{HostPort: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	var b strings.Builder
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", NextPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range resp.GetExecutions() {
			b.WriteString(ex.GetType().GetName() + "\n")
			it := tc.GetWorkflowHistory(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, 0)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					t.Fatal(err)
				}
				// JSON shows payloads in base64; their raw bytes are
				// written too, so a password in an input is found.
				j, _ := protojson.Marshal(ev)
				b.Write(j)
				b.WriteByte('\n')
				rawBytes(&b, ev.ProtoReflect())
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return b.String()
		}
	}
}

// rawBytes writes every bytes field of m, at any depth, as it is.
func rawBytes(b *strings.Builder, m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				rawValue(b, fd, l.Get(i))
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				rawValue(b, fd.MapValue(), mv)
				return true
			})
		default:
			rawValue(b, fd, v)
		}
		return true
	})
}

func rawValue(b *strings.Builder, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		b.Write(v.Bytes())
		b.WriteByte('\n')
	case protoreflect.MessageKind, protoreflect.GroupKind:
		rawBytes(b, v.Message())
	}
}
