package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/ksql"
	"github.com/shopstream/shopstream/workflows"
)

// fakeKsqlDB stands in for ksqlDB, which cannot run here. It answers the
// way ksqlDB's REST API documents (confluentinc/ksql
// docs/developer-guide/ksqldb-rest-api: ksql-endpoint.md, query-endpoint.md,
// status-endpoint.md): POST /ksql takes {"ksql", "streamsProperties",
// "commandSequenceNumber"} and answers an array of currentStatus entities
// (an empty array for INSERT ... VALUES) or, for a refused statement, a 400
// statement_error; POST /query answers a pull query with a header and rows;
// GET /status/{commandId} answers a command's status. It keeps the
// migration record (the INSERTed events, latest per version key) so pull
// queries read back what was written. It is a recorded contract, not a SQL
// engine: it checks the calls and their order, never what the SQL means.
type fakeKsqlDB struct {
	mu       sync.Mutex
	sources  map[string]bool
	versions map[string]map[string]string // version key -> column -> value
	sent     []sentStatement              // every statement but the record's own
	seq      int64
	queued   map[string]bool // command ids answered QUEUED, SUCCESS on /status
	badSeq   []string        // requests whose commandSequenceNumber was not the last one given
}

type sentStatement struct {
	SQL   string
	Props map[string]string
}

func newFakeKsqlDB(t *testing.T) (*fakeKsqlDB, *httptest.Server) {
	f := &fakeKsqlDB{sources: map[string]bool{}, versions: map[string]map[string]string{}, queued: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

var (
	createRe = regexp.MustCompile(`(?s)^CREATE (STREAM|TABLE) IF NOT EXISTS (\w+)`)
	insertRe = regexp.MustCompile(`(?s)^INSERT INTO ` + ksqlEventsStream + ` \(([^)]*)\) VALUES \((.*)\);$`)
	pullRe   = regexp.MustCompile(`^SELECT STATE, CHECKSUM, COMPLETED_ON FROM ` + ksqlVersionsTable + ` WHERE VERSION_KEY = '([^']*)';$`)
	valueRe  = regexp.MustCompile(`'((?:[^']|'')*)'`)
)

func (f *fakeKsqlDB) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", ksqlContentType)
	if r.Header.Get("Accept") != ksqlContentType {
		http.Error(w, `{"@type":"generic_error","error_code":40600,"message":"not acceptable"}`, http.StatusNotAcceptable)
		return
	}
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/status/") {
		id := strings.TrimPrefix(r.URL.Path, "/status/")
		if !f.queued[id] {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"@type":"generic_error","error_code":40400,"message":"command %s not found"}`, id)
			return
		}
		fmt.Fprint(w, `{"status":"SUCCESS","message":"Created query"}`)
		return
	}
	if r.Header.Get("Content-Type") != ksqlContentType {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	var req struct {
		Ksql   string            `json:"ksql"`
		Props  map[string]string `json:"streamsProperties"`
		CmdSeq *int64            `json:"commandSequenceNumber"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/ksql" && f.seq > 0 && (req.CmdSeq == nil || *req.CmdSeq != f.seq) {
		f.badSeq = append(f.badSeq, req.Ksql)
	}
	refuse := func(msg string) {
		w.WriteHeader(http.StatusBadRequest)
		b, _ := json.Marshal(map[string]any{"@type": "statement_error", "error_code": 40001, "message": msg, "statementText": req.Ksql, "entities": []any{}})
		w.Write(b)
	}
	switch r.URL.Path {
	case "/query":
		m := pullRe.FindStringSubmatch(req.Ksql)
		if m == nil {
			refuse("the fake answers only the migration record's pull query")
			return
		}
		if !f.sources[ksqlVersionsTable] {
			refuse(ksqlVersionsTable + " does not exist.")
			return
		}
		out := []any{map[string]any{"header": map[string]any{"queryId": "query_1", "schema": "`STATE` STRING, `CHECKSUM` STRING, `COMPLETED_ON` STRING"}}}
		if row, ok := f.versions[m[1]]; ok {
			out = append(out, map[string]any{"row": map[string]any{"columns": []any{row["STATE"], row["CHECKSUM"], row["COMPLETED_ON"]}}})
		}
		json.NewEncoder(w).Encode(out)
	case "/ksql":
		stmt := strings.TrimSpace(req.Ksql)
		if m := insertRe.FindStringSubmatch(stmt); m != nil {
			cols := strings.Split(m[1], ", ")
			vals := valueRe.FindAllStringSubmatch(m[2], -1)
			if len(cols) != len(vals) {
				refuse("columns and values do not match")
				return
			}
			row := map[string]string{}
			for i, c := range cols {
				row[c] = strings.ReplaceAll(vals[i][1], "''", "'")
			}
			f.versions[row["VERSION_KEY"]] = row
			fmt.Fprint(w, "[]")
			return
		}
		if !strings.HasSuffix(stmt, ";") {
			refuse("missing semicolon")
			return
		}
		if !strings.Contains(stmt, "SHOPSTREAM_MIGRATION") {
			f.sent = append(f.sent, sentStatement{SQL: strings.TrimSuffix(stmt, ";"), Props: req.Props})
		}
		if strings.Contains(stmt, "BOOM") {
			refuse("line 1:1: mismatched input 'BOOM' expecting {'CREATE', 'INSERT', ...}")
			return
		}
		m := createRe.FindStringSubmatch(stmt)
		if m == nil {
			refuse("the fake knows only CREATE ... IF NOT EXISTS and INSERT INTO the record")
			return
		}
		kind, name := strings.ToLower(m[1]), m[2]
		status, msg := "SUCCESS", strings.Title(kind)+" created"
		id := kind + "/" + name + "/create"
		if f.sources[name] {
			msg = fmt.Sprintf("Cannot add %s %s: A %s with the same name already exists.", kind, name, kind)
		} else if strings.Contains(stmt, " AS\n") || strings.Contains(stmt, " AS SELECT") {
			// A query takes a moment to start: answer QUEUED, /status says SUCCESS.
			status, msg = "QUEUED", "Statement written to command topic"
			f.queued[id] = true
		}
		f.sources[name] = true
		f.seq++
		b, _ := json.Marshal([]any{map[string]any{
			"@type": "currentStatus", "statementText": req.Ksql, "commandId": id,
			"commandStatus": map[string]any{"status": status, "message": msg}, "commandSequenceNumber": f.seq, "warnings": []any{},
		}})
		w.Write(b)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *fakeKsqlDB) statements() []sentStatement {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sent
	f.sent = nil
	return out
}

func (f *fakeKsqlDB) state(version string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.versions[version]
}

// ksqlEnv is a Bootstrap over the fake, with a registry that holds the
// Recommendation schema, run in Temporal's activity test environment.
type ksqlEnv struct {
	t     *testing.T
	b     *Bootstrap
	url   string
	fake  *fakeKsqlDB
	suite testsuite.WorkflowTestSuite
	vars  map[string]string
}

func newKsqlEnv(t *testing.T, files fstest.MapFS) *ksqlEnv {
	t.Helper()
	fake, srv := newFakeKsqlDB(t)
	serde := kafkatest.NewSerde(t)
	rc, schemas := serde.Registry(), serde.Schemas()
	if _, err := rc.CreateSchema(context.Background(), "recom-value", sr.Schema{Schema: schemas.Text(records.KindRecommendation)}); err != nil {
		t.Fatal(err)
	}
	b := &Bootstrap{Registry: rc, Schemas: schemas, HTTP: srv.Client(), now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }}
	if files != nil {
		b.ksqlFiles = files
	}
	return &ksqlEnv{t: t, b: b, url: srv.URL, fake: fake,
		vars: map[string]string{"filtered_topic": "filtered", "find_topic": "find", "recom_topic": "recom"}}
}

func (e *ksqlEnv) apply() (workflows.StepResult, error) {
	e.t.Helper()
	env := e.suite.NewTestActivityEnvironment()
	e.b.KsqlURL = e.url
	env.RegisterActivity(e.b)
	v, err := env.ExecuteActivity(workflows.ActivityApplyKsqlMigrations, workflows.ApplyKsqlInput{Vars: e.vars})
	var res workflows.StepResult
	if err == nil {
		err = v.Get(&res)
	}
	return res, err
}

func outcomeList(res workflows.StepResult) string {
	var out []string
	for _, it := range res.Items {
		out = append(out, it.Name+"="+it.Outcome)
	}
	return strings.Join(out, " ")
}

// wantNonRetryable checks that err is an InvalidInput error saying want.
func wantNonRetryable(t *testing.T, err error, want string) {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeInvalidInput || !ae.NonRetryable() || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want a non-retryable InvalidInput error saying %q", err, want)
	}
}

// The migrations of ksql/ are sent in order, with the topics and the
// Recommendation schema id filled in, each once.
func TestKsqlMigrationsApplyInOrderOnce(t *testing.T) {
	e := newKsqlEnv(t, nil)
	res, err := e.apply()
	if err != nil {
		t.Fatal(err)
	}
	migs, err := ksql.Load(ksql.Files())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var wantOutcomes []string
	for _, m := range migs {
		stmts, err := ksql.Statements(m.Text)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if strings.HasPrefix(s, "SET ") {
				continue // carried as streamsProperties, not sent
			}
			s, err := ksql.Substitute(s, map[string]string{"filtered_topic": "filtered", "find_topic": "find", "recom_topic": "recom", "recom_schema_id": "1"})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, s)
		}
		wantOutcomes = append(wantOutcomes, m.File+"=created")
		sum := sha256.Sum256([]byte(m.Text))
		st := e.fake.state(fmt.Sprint(m.Version))
		if st["STATE"] != "MIGRATED" || st["CHECKSUM"] != hex.EncodeToString(sum[:]) || st["NAME"] != m.Name {
			t.Errorf("%s recorded as %v, want MIGRATED with its checksum", m.File, st)
		}
	}
	sent := e.fake.statements()
	var got []string
	for _, s := range sent {
		got = append(got, s.SQL)
		if strings.Contains(s.SQL, "${") {
			t.Errorf("a variable was left in %.80q", s.SQL)
		}
	}
	if strings.Join(got, "\n;\n") != strings.Join(want, "\n;\n") {
		t.Errorf("statements sent:\n%s\nwant:\n%s", strings.Join(got, "\n;\n"), strings.Join(want, "\n;\n"))
	}
	// SET 'auto.offset.reset' in a file reaches the file's later statements.
	for _, s := range sent {
		earliest := s.Props["ksql.streams.auto.offset.reset"] == "earliest"
		if strings.Contains(s.SQL, " AS\n") != earliest {
			t.Errorf("%.50q sent with properties %v", s.SQL, s.Props)
		}
	}
	if !strings.Contains(strings.Join(got, "\n"), "KAFKA_TOPIC = 'recom'") || !strings.Contains(strings.Join(got, "\n"), "VALUE_SCHEMA_ID = 1") {
		t.Errorf("personal_recom is not written to topic recom with the registered schema id")
	}
	if outcomeList(res) != strings.Join(wantOutcomes, " ") {
		t.Errorf("outcomes %s, want %s", outcomeList(res), strings.Join(wantOutcomes, " "))
	}
	if len(e.fake.badSeq) > 0 {
		t.Errorf("requests without the last commandSequenceNumber: %q", e.fake.badSeq)
	}
	if cur := e.fake.state("CURRENT"); cur["VERSION"] != fmt.Sprint(migs[len(migs)-1].Version) || cur["STATE"] != "MIGRATED" {
		t.Errorf("CURRENT = %v, want the last version, MIGRATED", cur)
	}

	// A second run changes nothing and says so.
	res, err = e.apply()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.statements()); n != 0 {
		t.Errorf("the second run sent %d migration statements, want none", n)
	}
	if strings.Contains(outcomeList(res), "=created") || res.Changed() {
		t.Errorf("second run: %s, want every migration unchanged", outcomeList(res))
	}
}

func TestKsqlMigrationChangedAfterApplyIsRefused(t *testing.T) {
	files := fstest.MapFS{
		"V000001__one.sql": {Data: []byte("CREATE STREAM IF NOT EXISTS ONE (X STRING) WITH (KAFKA_TOPIC = '${find_topic}', VALUE_FORMAT = 'JSON');\n")},
		"V000002__two.sql": {Data: []byte("CREATE STREAM IF NOT EXISTS TWO AS SELECT * FROM ONE EMIT CHANGES;\n")},
	}
	e := newKsqlEnv(t, files)
	if res, err := e.apply(); err != nil || outcomeList(res) != "V000001__one.sql=created V000002__two.sql=created" {
		t.Fatalf("first run: %s, %v", outcomeList(res), err)
	}
	e.fake.statements()

	// Editing an applied file is refused before anything is sent, even a
	// new migration.
	files["V000001__one.sql"] = &fstest.MapFile{Data: []byte("CREATE STREAM IF NOT EXISTS ONE (X STRING, Y INT) WITH (KAFKA_TOPIC = '${find_topic}', VALUE_FORMAT = 'JSON');\n")}
	files["V000003__three.sql"] = &fstest.MapFile{Data: []byte("CREATE STREAM IF NOT EXISTS THREE AS SELECT * FROM TWO EMIT CHANGES;\n")}
	_, err := e.apply()
	wantNonRetryable(t, err, "ksql/V000001__one.sql was changed after it was applied")
	if !strings.Contains(err.Error(), "V000004__<name>.sql") {
		t.Errorf("the error does not say what to do instead: %v", err)
	}
	if n := len(e.fake.statements()); n != 0 {
		t.Errorf("%d statements sent after the refusal, want none", n)
	}

	// Restored, the file is accepted again and only the new one is applied.
	files["V000001__one.sql"] = &fstest.MapFile{Data: []byte("CREATE STREAM IF NOT EXISTS ONE (X STRING) WITH (KAFKA_TOPIC = '${find_topic}', VALUE_FORMAT = 'JSON');\n")}
	res, err := e.apply()
	if err != nil || outcomeList(res) != "V000001__one.sql=unchanged V000002__two.sql=unchanged V000003__three.sql=created" {
		t.Fatalf("after restoring: %s, %v", outcomeList(res), err)
	}
	if sent := e.fake.statements(); len(sent) != 1 || !strings.HasPrefix(sent[0].SQL, "CREATE STREAM IF NOT EXISTS THREE") {
		t.Errorf("sent %v, want only V3's statement", sent)
	}
}

// A statement ksqlDB refuses stops the step, is recorded as ERROR with the
// reason, and the fixed file is applied by the next run.
func TestKsqlMigrationFailureIsRecorded(t *testing.T) {
	files := fstest.MapFS{
		"V000001__one.sql": {Data: []byte("CREATE STREAM IF NOT EXISTS ONE (X STRING) WITH (KAFKA_TOPIC = 'x', VALUE_FORMAT = 'JSON');\nBOOM;\nCREATE STREAM IF NOT EXISTS NEVER AS SELECT * FROM ONE EMIT CHANGES;\n")},
	}
	e := newKsqlEnv(t, files)
	_, err := e.apply()
	wantNonRetryable(t, err, "ksql/V000001__one.sql statement 2: ksqlDB refused the statement (error 40001): line 1:1: mismatched input 'BOOM'")
	st := e.fake.state("1")
	if st["STATE"] != "ERROR" || !strings.Contains(st["ERROR_REASON"], "mismatched input 'BOOM'") {
		t.Errorf("recorded %v, want ERROR with the reason", st)
	}
	for _, s := range e.fake.statements() {
		if strings.Contains(s.SQL, "NEVER") {
			t.Errorf("a statement after the failing one was sent")
		}
	}
	files["V000001__one.sql"] = &fstest.MapFile{Data: []byte("CREATE STREAM IF NOT EXISTS ONE (X STRING) WITH (KAFKA_TOPIC = 'x', VALUE_FORMAT = 'JSON');\nCREATE STREAM IF NOT EXISTS NEVER AS SELECT * FROM ONE EMIT CHANGES;\n")}
	res, err := e.apply()
	if err != nil || outcomeList(res) != "V000001__one.sql=created" || e.fake.state("1")["STATE"] != "MIGRATED" {
		t.Fatalf("after the fix: %s, %v, recorded %v", outcomeList(res), err, e.fake.state("1"))
	}
}

func TestKsqlMigrationRefusals(t *testing.T) {
	one := "CREATE STREAM IF NOT EXISTS ONE (X STRING) WITH (KAFKA_TOPIC = '${find_topic}', VALUE_FORMAT = 'JSON');\n"
	for i, c := range []struct {
		files fstest.MapFS
		vars  map[string]string
		want  string
	}{
		{fstest.MapFS{"V1__bad.sql": {Data: []byte(one)}}, nil, "want the name V<six digits>__<name>.sql"},
		{fstest.MapFS{"V000001__one.sql": {Data: []byte("CREATE STREAM IF NOT EXISTS X (A STRING)")}}, nil, "ksql/V000001__one.sql: the last statement has no closing semicolon"},
		{fstest.MapFS{"V000001__one.sql": {Data: []byte("CREATE STREAM IF NOT EXISTS X WITH (KAFKA_TOPIC = '${nope}');")}}, nil, "no value for ${nope}"},
		{fstest.MapFS{"V000001__one.sql": {Data: []byte(one)}}, map[string]string{"find_topic": "x'; DROP STREAM ONE; --"}, "ksqlDB variable find_topic"},
		{fstest.MapFS{"V000001__one.sql": {Data: []byte("CREATE TABLE IF NOT EXISTS R WITH (VALUE_SCHEMA_ID = ${recom_schema_id}) AS SELECT * FROM X;")}},
			map[string]string{"recom_topic": "unregistered"}, "subject unregistered-value has no schema yet: run the schemas step first"},
	} {
		e := newKsqlEnv(t, c.files)
		if c.vars != nil {
			e.vars = c.vars
		}
		_, err := e.apply()
		if err == nil {
			t.Errorf("#%d: applied, want an error saying %q", i, c.want)
			continue
		}
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || !ae.NonRetryable() || !strings.Contains(err.Error(), c.want) {
			t.Errorf("#%d: got %v, want a non-retryable error saying %q", i, err, c.want)
		}
	}
}

func TestKsqlUnreachable(t *testing.T) {
	e := newKsqlEnv(t, nil)
	srv := httptest.NewServer(http.NotFoundHandler())
	e.url = srv.URL
	srv.Close() // nothing listens there now
	_, err := e.apply()
	var ae *temporal.ApplicationError
	if err == nil || !strings.Contains(err.Error(), "cannot reach ksqlDB at "+srv.URL) || (errors.As(err, &ae) && ae.NonRetryable()) {
		t.Fatalf("got %v, want a retryable error naming the address", err)
	}
}

// A file slipped in below the last applied version is refused: ksqlDB's
// state would no longer follow the files' order.
func TestKsqlMigrationBelowTheAppliedIsRefused(t *testing.T) {
	files := fstest.MapFS{
		"V000001__one.sql":   {Data: []byte("CREATE STREAM IF NOT EXISTS ONE (X STRING) WITH (KAFKA_TOPIC = 'x', VALUE_FORMAT = 'JSON');")},
		"V000003__three.sql": {Data: []byte("CREATE STREAM IF NOT EXISTS THREE AS SELECT * FROM ONE EMIT CHANGES;")},
	}
	e := newKsqlEnv(t, files)
	if _, err := e.apply(); err != nil {
		t.Fatal(err)
	}
	files["V000002__two.sql"] = &fstest.MapFile{Data: []byte("CREATE STREAM IF NOT EXISTS TWO AS SELECT * FROM ONE EMIT CHANGES;")}
	_, err := e.apply()
	wantNonRetryable(t, err, "ksql/V000002__two.sql is not applied but the later ksql/V000003__three.sql is")
}
