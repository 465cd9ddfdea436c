package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/ksql"
	"github.com/shopstream/shopstream/workflows"
)

// The ksqlDB step keeps its own record of applied migrations inside ksqlDB,
// laid out as ksql-migrations lays out its own (a stream of events and a
// table of each version's latest state, with a CURRENT row), so the record
// lives with what it describes and survives anything that happens to the
// worker. Its own names keep it apart from a ksql-migrations project on the
// same server; its checksum is the hex SHA-256 of the file.
const (
	ksqlEventsStream  = "SHOPSTREAM_MIGRATION_EVENTS"
	ksqlEventsTopic   = "shopstream_ksql_migration_events"
	ksqlVersionsTable = "SHOPSTREAM_MIGRATION_VERSIONS"
	ksqlVersionsTopic = "shopstream_ksql_migration_versions"
	ksqlContentType   = "application/vnd.ksql.v1+json"
)

// Migration states, as ksql-migrations names them.
const (
	ksqlRunning  = "RUNNING"
	ksqlMigrated = "MIGRATED"
	ksqlError    = "ERROR"
)

var ksqlInitStatements = []string{
	`CREATE STREAM IF NOT EXISTS ` + ksqlEventsStream + ` (
  VERSION_KEY STRING KEY, VERSION STRING, NAME STRING, STATE STRING, CHECKSUM STRING,
  STARTED_ON STRING, COMPLETED_ON STRING, PREVIOUS STRING, ERROR_REASON STRING
) WITH (KAFKA_TOPIC = '` + ksqlEventsTopic + `', VALUE_FORMAT = 'JSON', PARTITIONS = 1)`,
	`CREATE TABLE IF NOT EXISTS ` + ksqlVersionsTable + ` WITH (KAFKA_TOPIC = '` + ksqlVersionsTopic + `') AS
  SELECT VERSION_KEY,
    LATEST_BY_OFFSET(VERSION) AS VERSION, LATEST_BY_OFFSET(NAME) AS NAME, LATEST_BY_OFFSET(STATE) AS STATE,
    LATEST_BY_OFFSET(CHECKSUM) AS CHECKSUM, LATEST_BY_OFFSET(STARTED_ON) AS STARTED_ON,
    LATEST_BY_OFFSET(COMPLETED_ON) AS COMPLETED_ON, LATEST_BY_OFFSET(PREVIOUS) AS PREVIOUS,
    LATEST_BY_OFFSET(ERROR_REASON) AS ERROR_REASON
  FROM ` + ksqlEventsStream + `
  GROUP BY VERSION_KEY
  EMIT CHANGES`,
}

// applied is what ksqlDB records of one version.
type applied struct {
	state, checksum, completedOn string
}

func (b *Bootstrap) applyKsql(ctx context.Context, in workflows.ApplyKsqlInput) (workflows.StepResult, error) {
	var res workflows.StepResult
	files := b.ksqlFiles
	if files == nil {
		files = ksql.Files()
	}
	migs, err := ksql.Load(files)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	// Split and check every file before anything is sent.
	stmts := make([][]string, len(migs))
	for i, m := range migs {
		if stmts[i], err = ksql.Statements(m.Text); err != nil {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("ksql/%s: %v", m.File, err), workflows.ErrTypeInvalidInput, nil)
		}
	}
	if err := checkKsqlVars(in.Vars); err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, nil)
	}
	k := &ksqlClient{url: strings.TrimRight(b.KsqlURL, "/"), http: b.HTTP}
	k.shown = config.Mask(k.url)
	if k.http == nil {
		k.http = clients.NewHTTPClient(nil, 30*time.Second)
	}
	earliest := map[string]string{"ksql.streams.auto.offset.reset": "earliest"}
	for _, s := range ksqlInitStatements {
		if err := k.run(ctx, s, earliest); err != nil {
			return res, fmt.Errorf("create the migration record (%s, %s) in ksqlDB: %w", ksqlEventsStream, ksqlVersionsTable, err)
		}
	}

	// Read every version's record first: a changed applied file stops
	// the step before anything is applied.
	state := make([]applied, len(migs))
	lastApplied := -1
	for i, m := range migs {
		if state[i], err = k.version(ctx, strconv.Itoa(m.Version)); err != nil {
			return res, fmt.Errorf("read the record of ksql/%s: %w", m.File, err)
		}
		if state[i].state != ksqlMigrated {
			continue
		}
		if state[i].checksum != m.Checksum {
			msg := fmt.Sprintf("ksql/%s was changed after it was applied on %s (recorded checksum %s, the file's is now %s): "+
				"an applied migration must not change; restore it and put the change in a new file, V%06d__<name>.sql",
				m.File, millisText(state[i].completedOn), short(state[i].checksum), short(m.Checksum), migs[len(migs)-1].Version+1)
			return res, temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeInvalidInput, nil)
		}
		lastApplied = i
	}
	for i := range lastApplied {
		if state[i].state != ksqlMigrated {
			msg := fmt.Sprintf("ksql/%s is not applied but the later ksql/%s is: a migration was added below the last applied version; give it a version above %d",
				migs[i].File, migs[lastApplied].File, migs[lastApplied].Version)
			return res, temporal.NewNonRetryableApplicationError(msg, workflows.ErrTypeInvalidInput, nil)
		}
	}

	vars := maps.Clone(in.Vars)
	if vars == nil {
		vars = map[string]string{}
	}
	previous := "<none>"
	for i, m := range migs {
		item := workflows.ItemResult{Name: m.File}
		if state[i].state == ksqlMigrated {
			item.Outcome, item.Detail = workflows.OutcomeUnchanged, "applied "+millisText(state[i].completedOn)
			res.Items = append(res.Items, item)
			previous = strconv.Itoa(m.Version)
			continue
		}
		if _, ok := vars["recom_schema_id"]; !ok && strings.Contains(m.Text, "${recom_schema_id}") {
			id, err := b.recomSchemaID(ctx, vars["recom_topic"])
			if err != nil {
				return res, err
			}
			vars["recom_schema_id"] = strconv.Itoa(id)
		}
		n, err := b.applyMigration(ctx, k, m, stmts[i], vars, previous)
		if err != nil {
			return res, err
		}
		activity.GetLogger(ctx).Info("ksqlDB migration applied", "file", m.File, "statements", n)
		item.Outcome, item.Detail = workflows.OutcomeCreated, fmt.Sprintf("%d statements, checksum %s", n, short(m.Checksum))
		res.Items = append(res.Items, item)
		previous = strconv.Itoa(m.Version)
	}
	return res, nil
}

// applyMigration runs one file's statements in order and records the
// version RUNNING, then MIGRATED (or ERROR with the reason). The files use
// IF NOT EXISTS throughout, so running a RUNNING or ERROR version again is
// safe.
func (b *Bootstrap) applyMigration(ctx context.Context, k *ksqlClient, m ksql.Migration, stmts []string, vars map[string]string, previous string) (int, error) {
	started := strconv.FormatInt(b.clock().UnixMilli(), 10)
	record := func(state, completed, reason string) error {
		return k.record(ctx, m, state, started, completed, previous, reason)
	}
	if err := record(ksqlRunning, "", "N/A"); err != nil {
		return 0, err
	}
	props := map[string]string{}
	n := 0
	for _, raw := range stmts {
		s, err := ksql.Substitute(raw, vars)
		if err != nil {
			return n, temporal.NewNonRetryableApplicationError(fmt.Sprintf("ksql/%s: %v (known: %s)", m.File, err, varNames(vars)), workflows.ErrTypeInvalidInput, nil)
		}
		// SET and UNSET hold for the rest of the file, as in ksql-migrations.
		if key, value, ok := parseSet(s); ok {
			props[ksqlProperty(key)] = value
			continue
		}
		if key, ok := parseUnset(s); ok {
			delete(props, ksqlProperty(key))
			continue
		}
		if err := k.run(ctx, s, props); err != nil {
			reason := err.Error()
			if rerr := record(ksqlError, strconv.FormatInt(b.clock().UnixMilli(), 10), reason); rerr != nil {
				err = errors.Join(err, rerr)
			}
			var se *ksqlStatementError
			if errors.As(err, &se) {
				// ksqlDB refused the statement: retrying will not help.
				return n, temporal.NewNonRetryableApplicationError(fmt.Sprintf("ksql/%s statement %d: %v", m.File, n+1, err), workflows.ErrTypeInvalidInput, nil)
			}
			return n, fmt.Errorf("ksql/%s statement %d: %w", m.File, n+1, err)
		}
		n++
	}
	if err := record(ksqlMigrated, strconv.FormatInt(b.clock().UnixMilli(), 10), "N/A"); err != nil {
		return n, err
	}
	// The record is a table fed from a stream: wait (briefly) until it
	// shows the version, so that the next run reads it.
	for try := 0; try < 20; try++ {
		a, err := k.version(ctx, strconv.Itoa(m.Version))
		if err == nil && a.state == ksqlMigrated && a.checksum == m.Checksum {
			break
		}
		if err := clock.Sleep(ctx, 250*time.Millisecond); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (b *Bootstrap) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// recomSchemaID is the id of the Recommendation schema the schemas step
// registered, which ksqlDB must write personal_recom with.
func (b *Bootstrap) recomSchemaID(ctx context.Context, topic string) (int, error) {
	if topic == "" {
		return 0, temporal.NewNonRetryableApplicationError("no recom_topic variable: the ksqlDB step needs the recommendations topic's name", workflows.ErrTypeInvalidInput, nil)
	}
	subject := records.Subject(topic)
	ss, err := b.Registry.SchemaByVersion(ctx, subject, -1)
	if isNotFound(err) {
		return 0, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("subject %s has no schema yet: run the schemas step first (shopstream bootstrap --only schemas,ksql)", subject), workflows.ErrTypeInvalidInput, err)
	}
	if err != nil {
		return 0, fmt.Errorf("read the latest schema of subject %s: %w", subject, err)
	}
	return ss.ID, nil
}

var safeVar = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// checkKsqlVars refuses values that could break out of the SQL string they
// are put in; topic names and ids never need more.
func checkKsqlVars(vars map[string]string) error {
	for key, v := range vars {
		if !safeVar.MatchString(v) {
			return fmt.Errorf("ksqlDB variable %s = %q: want letters, digits, '.', '_' or '-' (a Kafka topic name)", key, v)
		}
	}
	return nil
}

func varNames(vars map[string]string) string {
	return strings.Join(slices.Sorted(maps.Keys(vars)), ", ")
}

var (
	setStmt   = regexp.MustCompile(`(?is)^SET\s+'([^']+)'\s*=\s*'([^']*)'$`)
	unsetStmt = regexp.MustCompile(`(?is)^UNSET\s+'([^']+)'$`)
)

func parseSet(s string) (string, string, bool) {
	m := setStmt.FindStringSubmatch(s)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func parseUnset(s string) (string, bool) {
	m := unsetStmt.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// ksqlProperty turns a SET name into a streamsProperties name: the Kafka
// Streams consumer settings take the ksql.streams. prefix over REST.
func ksqlProperty(key string) string {
	if key == "auto.offset.reset" {
		return "ksql.streams." + key
	}
	return key
}

func millisText(ms string) string {
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return "(time unknown)"
	}
	return time.UnixMilli(n).UTC().Format(time.RFC3339)
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// ksqlClient speaks ksqlDB's REST API: POST /ksql for statements, POST
// /query for pull queries, GET /status/{id} for commands still running.
type ksqlClient struct {
	url   string
	shown string // url masked, for errors: they end up in the workflow's history
	http  *http.Client
	seq   int64 // the last commandSequenceNumber seen: later statements wait for it
}

// ksqlStatementError is ksqlDB refusing a statement (a 4xx answer).
type ksqlStatementError struct {
	Type          string `json:"@type"`
	Code          int    `json:"error_code"`
	Message       string `json:"message"`
	StatementText string `json:"statementText"`
}

func (e *ksqlStatementError) Error() string {
	return fmt.Sprintf("ksqlDB refused the statement (error %d): %s", e.Code, strings.TrimSpace(e.Message))
}

type ksqlCommandStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type ksqlEntity struct {
	Type                  string             `json:"@type"`
	StatementText         string             `json:"statementText"`
	CommandID             string             `json:"commandId"`
	CommandStatus         *ksqlCommandStatus `json:"commandStatus"`
	CommandSequenceNumber int64              `json:"commandSequenceNumber"`
}

// run executes one statement and waits until ksqlDB has carried it out.
func (k *ksqlClient) run(ctx context.Context, stmt string, props map[string]string) error {
	req := map[string]any{"ksql": stmt + ";", "streamsProperties": props}
	if k.seq > 0 {
		req["commandSequenceNumber"] = k.seq
	}
	var entities []ksqlEntity
	if err := k.post(ctx, "/ksql", req, &entities); err != nil {
		return err
	}
	for _, e := range entities {
		if e.CommandSequenceNumber > k.seq {
			k.seq = e.CommandSequenceNumber
		}
		if e.CommandStatus == nil {
			continue
		}
		if err := k.await(ctx, e.CommandID, *e.CommandStatus); err != nil {
			return err
		}
	}
	return nil
}

// await polls a command that ksqlDB accepted but has not finished.
func (k *ksqlClient) await(ctx context.Context, id string, st ksqlCommandStatus) error {
	deadline := time.Now().Add(time.Minute)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		switch st.Status {
		case "SUCCESS", "TERMINATED":
			return nil
		case "ERROR":
			return &ksqlStatementError{Type: "command_error", Message: st.Message}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("command %s still %s after a minute: %s", id, st.Status, st.Message)
		}
		if err := clock.Sleep(ctx, wait); err != nil {
			return err
		}
		if err := k.get(ctx, "/status/"+id, &st); err != nil {
			return err
		}
	}
}

// record appends a version's state to the events stream, under its own
// key and under CURRENT, as ksql-migrations does.
func (k *ksqlClient) record(ctx context.Context, m ksql.Migration, state, started, completed, previous, reason string) error {
	for _, key := range []string{strconv.Itoa(m.Version), "CURRENT"} {
		values := []string{key, strconv.Itoa(m.Version), m.Name, state, m.Checksum, started, completed, previous, reason}
		for i, v := range values {
			values[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		stmt := "INSERT INTO " + ksqlEventsStream +
			" (VERSION_KEY, VERSION, NAME, STATE, CHECKSUM, STARTED_ON, COMPLETED_ON, PREVIOUS, ERROR_REASON) VALUES (" +
			strings.Join(values, ", ") + ")"
		if err := k.run(ctx, stmt, nil); err != nil {
			return fmt.Errorf("record ksql/%s as %s: %w", m.File, state, err)
		}
	}
	return nil
}

// version reads one version's record with a pull query; an empty state
// means there is none.
func (k *ksqlClient) version(ctx context.Context, key string) (applied, error) {
	q := "SELECT STATE, CHECKSUM, COMPLETED_ON FROM " + ksqlVersionsTable + " WHERE VERSION_KEY = '" + key + "';"
	var rows []json.RawMessage
	// A table created a moment ago may not answer pull queries yet.
	var err error
	for try := 0; try < 20; try++ {
		rows = nil
		if err = k.post(ctx, "/query", map[string]any{"ksql": q, "streamsProperties": map[string]string{}}, &rows); err == nil {
			break
		}
		var se *ksqlStatementError
		if !errors.As(err, &se) {
			return applied{}, err
		}
		if serr := clock.Sleep(ctx, 250*time.Millisecond); serr != nil {
			return applied{}, serr
		}
	}
	if err != nil {
		return applied{}, err
	}
	for _, raw := range rows {
		var chunk struct {
			Row *struct {
				Columns []any `json:"columns"`
			} `json:"row"`
			ErrorMessage any `json:"errorMessage"`
		}
		if err := json.Unmarshal(raw, &chunk); err != nil {
			return applied{}, fmt.Errorf("read ksqlDB's answer to %q: %w", q, err)
		}
		if chunk.ErrorMessage != nil {
			return applied{}, fmt.Errorf("ksqlDB answered %q with an error: %v", q, chunk.ErrorMessage)
		}
		if chunk.Row != nil && len(chunk.Row.Columns) >= 3 {
			str := func(v any) string { s, _ := v.(string); return s }
			return applied{state: str(chunk.Row.Columns[0]), checksum: str(chunk.Row.Columns[1]), completedOn: str(chunk.Row.Columns[2])}, nil
		}
	}
	return applied{}, nil
}

func (k *ksqlClient) post(ctx context.Context, path string, body, into any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.url+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("ksqlDB URL %s: %w", k.shown, err)
	}
	req.Header.Set("Content-Type", ksqlContentType)
	return k.do(req, into)
}

func (k *ksqlClient) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url+path, nil)
	if err != nil {
		return fmt.Errorf("ksqlDB URL %s: %w", k.shown, err)
	}
	return k.do(req, into)
}

func (k *ksqlClient) do(req *http.Request, into any) error {
	req.Header.Set("Accept", ksqlContentType)
	resp, err := k.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach ksqlDB at %s (%v): start it, or unset KSQLDB_URL to skip this step", k.shown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("read ksqlDB's answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode >= 400 {
		var se ksqlStatementError
		if json.Unmarshal(body, &se) == nil && se.Message != "" && resp.StatusCode < 500 {
			return &se
		}
		return fmt.Errorf("ksqlDB answered %s %s with %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("ksqlDB's answer to %s %s is not the JSON expected: %w (%.200s)", req.Method, req.URL.Path, err, body)
	}
	return nil
}
