package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/workflows"
)

// ErrTypeConnectorFailed marks a connector or task that Kafka Connect
// reports FAILED; the error carries the task's trace. Retrying the step
// cannot fix it: the configuration or the database must be fixed first.
const ErrTypeConnectorFailed = "ConnectorFailed"

// ConnectorConfig is one connector as environment/connect holds it.
type ConnectorConfig struct {
	Name   string            `json:"name"`
	Config map[string]string `json:"config"`
}

// LoadConnectorConfigs reads every *.json file of fsys, in name order.
func LoadConnectorConfigs(fsys fs.FS) ([]ConnectorConfig, error) {
	files, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	out := make([]ConnectorConfig, 0, len(files))
	for _, f := range files {
		raw, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read connector config %s: %w", f, err)
		}
		var c ConnectorConfig
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("parse connector config %s: %w (want {\"name\": ..., \"config\": {...}} with string values)", f, err)
		}
		if c.Name == "" || len(c.Config) == 0 {
			return nil, fmt.Errorf("connector config %s: name and config are required", f)
		}
		out = append(out, c)
	}
	return out, nil
}

// placeholder matches ${NAME}; Connect's own ${provider:path:key} and
// Debezium's ${topic} are left alone.
var placeholder = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)

// Resolve fills the ${NAME} placeholders from vars.
func (c ConnectorConfig) Resolve(vars map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(c.Config))
	var missing []string
	for k, v := range c.Config {
		out[k] = placeholder.ReplaceAllStringFunc(v, func(m string) string {
			name := m[2 : len(m)-1]
			val, ok := vars[name]
			if !ok {
				missing = append(missing, name)
			}
			return val
		})
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("connector %s: no value for %s", c.Name, strings.Join(missing, ", "))
	}
	return out, nil
}

// applyConnectors creates or updates each connector (PUT
// /connectors/{name}/config), restarts what Connect reports FAILED, and
// waits until every connector and its tasks are RUNNING.
func (b *Bootstrap) applyConnectors(ctx context.Context, in workflows.ApplyConnectorsInput) (workflows.StepResult, error) {
	if b.Connectors == nil {
		return workflows.StepResult{}, temporal.NewNonRetryableApplicationError("no connector configs were given to the worker", workflows.ErrTypeInvalidInput, nil)
	}
	configs, err := LoadConnectorConfigs(b.Connectors)
	if err != nil {
		return workflows.StepResult{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, err)
	}
	cc, err := newConnectClient(b.ConnectURL, b.HTTP)
	if err != nil {
		return workflows.StepResult{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, err)
	}
	if b.connectPoll > 0 {
		cc.poll = b.connectPoll
	}
	var res workflows.StepResult
	for _, c := range configs {
		want, err := c.Resolve(in.Vars)
		if err != nil {
			return res, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrTypeInvalidInput, err)
		}
		item, err := cc.apply(ctx, c.Name, want)
		if err != nil {
			return res, err
		}
		res.Items = append(res.Items, item)
	}
	for i, c := range configs {
		detail, err := cc.waitRunning(ctx, c.Name)
		if err != nil {
			return res, err
		}
		res.Items[i].Detail = detail
		activity.GetLogger(ctx).Info("connector reconciled", "connector", c.Name, "outcome", res.Items[i].Outcome, "detail", detail)
	}
	return res, nil
}

// connectClient speaks Kafka Connect's REST API.
type connectClient struct {
	base       *url.URL
	user, pass string
	http       *http.Client
	poll       time.Duration
}

func newConnectClient(raw string, hc *http.Client) (*connectClient, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Masked: the error ends up in the workflow's history.
		return nil, fmt.Errorf("KAFKA_CONNECT_URL %q: want an http:// or https:// URL", config.Mask(raw))
	}
	c := &connectClient{base: u, http: hc, poll: 500 * time.Millisecond}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		u.User = nil
	}
	if c.http == nil {
		c.http = clients.NewHTTPClient(nil, 30*time.Second)
	}
	return c, nil
}

// connectError is an error response: {"error_code": 409, "message": "..."}.
type connectError struct {
	Status  int
	Code    int    `json:"error_code"`
	Message string `json:"message"`
	Method  string
	Path    string
}

func (e *connectError) Error() string {
	return fmt.Sprintf("kafka connect: %s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// do sends one request; a 409 (Connect rebalancing, or a concurrent config
// change) is retried with backoff until ctx ends. out receives a 2xx body.
func (c *connectClient) do(ctx context.Context, method, p string, body, out any) (int, error) {
	wait := 200 * time.Millisecond
	for {
		status, err := c.once(ctx, method, p, body, out)
		var ce *connectError
		if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
			return status, err
		}
		activity.GetLogger(ctx).Info("kafka connect is rebalancing: retrying", "method", method, "path", p, "in", wait)
		select {
		case <-ctx.Done():
			return status, fmt.Errorf("%w (gave up waiting for the rebalance: %v)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (c *connectClient) once(ctx context.Context, method, p string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	u := *c.base
	u.Path = path.Join(u.Path, p)
	if i := strings.IndexByte(p, '?'); i >= 0 {
		u.Path, u.RawQuery = path.Join(c.base.Path, p[:i]), p[i+1:]
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("kafka connect at %s: %s %s: %w", config.Mask(c.base.String()), method, p, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("kafka connect: %s %s: read the response: %w", method, p, err)
	}
	if resp.StatusCode >= 300 {
		ce := &connectError{Status: resp.StatusCode, Method: method, Path: p}
		if json.Unmarshal(raw, ce) != nil || ce.Message == "" {
			ce.Message = strings.TrimSpace(string(raw))
		}
		return resp.StatusCode, ce
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("kafka connect: %s %s: unexpected response %q: %w", method, p, truncate(string(raw), 200), err)
		}
	}
	return resp.StatusCode, nil
}

// apply creates the connector or updates its config when it differs.
func (c *connectClient) apply(ctx context.Context, name string, want map[string]string) (workflows.ItemResult, error) {
	item := workflows.ItemResult{Name: name}
	esc := "/connectors/" + url.PathEscape(name)
	var have map[string]string
	_, err := c.do(ctx, http.MethodGet, esc+"/config", nil, &have)
	var ce *connectError
	switch {
	case errors.As(err, &ce) && ce.Status == http.StatusNotFound:
		item.Outcome = workflows.OutcomeCreated
	case err != nil:
		return item, err
	case sameConfig(have, want, name):
		item.Outcome = workflows.OutcomeUnchanged
		return item, c.restartFailed(ctx, name)
	default:
		item.Outcome = workflows.OutcomeChanged
	}
	status, err := c.do(ctx, http.MethodPut, esc+"/config", want, nil)
	if errors.As(err, &ce) && (ce.Status == http.StatusBadRequest || ce.Status == http.StatusNotFound ||
		(ce.Status == http.StatusInternalServerError && strings.Contains(ce.Message, "Failed to find any class"))) {
		// An invalid config or a missing plugin: retrying cannot help.
		return item, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("kafka connect refused connector %s: %s (fix environment/connect/ or install the plugin on the Connect workers)", name, ce.Message),
			workflows.ErrTypeInvalidInput, err)
	}
	if err != nil {
		return item, fmt.Errorf("put config of connector %s: %w", name, err)
	}
	if item.Outcome == workflows.OutcomeCreated && status != http.StatusCreated {
		item.Outcome = workflows.OutcomeChanged // created concurrently by someone else
	}
	return item, nil
}

// sameConfig compares configs; Connect adds the connector's name to it.
func sameConfig(have, want map[string]string, name string) bool {
	h := make(map[string]string, len(have))
	for k, v := range have {
		h[k] = v
	}
	if _, ok := want["name"]; !ok && h["name"] == name {
		delete(h, "name")
	}
	return reflect.DeepEqual(h, want)
}

type connectorStatus struct {
	Connector struct {
		State string `json:"state"`
		Trace string `json:"trace"`
	} `json:"connector"`
	Tasks []struct {
		ID    int    `json:"id"`
		State string `json:"state"`
		Trace string `json:"trace"`
	} `json:"tasks"`
}

func (c *connectClient) status(ctx context.Context, name string) (connectorStatus, error) {
	var st connectorStatus
	_, err := c.do(ctx, http.MethodGet, "/connectors/"+url.PathEscape(name)+"/status", nil, &st)
	return st, err
}

// restartFailed restarts a connector whose config is unchanged but which
// (or a task of which) is FAILED: a PUT of the same config would not.
func (c *connectClient) restartFailed(ctx context.Context, name string) error {
	st, err := c.status(ctx, name)
	if err != nil {
		return err
	}
	failed := st.Connector.State == "FAILED"
	for _, t := range st.Tasks {
		failed = failed || t.State == "FAILED"
	}
	if !failed {
		return nil
	}
	activity.GetLogger(ctx).Warn("connector FAILED with an unchanged config: restarting it", "connector", name)
	_, err = c.do(ctx, http.MethodPost, "/connectors/"+url.PathEscape(name)+"/restart?includeTasks=true&onlyFailed=true", nil, nil)
	if err != nil {
		return fmt.Errorf("restart connector %s: %w", name, err)
	}
	return nil
}

// waitRunning polls the connector's status until it and its tasks are
// RUNNING, failing on FAILED with the trace that Connect reports.
func (c *connectClient) waitRunning(ctx context.Context, name string) (string, error) {
	last := "no status yet"
	for {
		st, err := c.status(ctx, name)
		var ce *connectError
		switch {
		case errors.As(err, &ce) && ce.Status == http.StatusNotFound:
			// Just created: the status appears after the next rebalance.
		case err != nil:
			return "", err
		default:
			if st.Connector.State == "FAILED" {
				return "", failedError(name, "the connector", st.Connector.Trace)
			}
			running := st.Connector.State == "RUNNING" && len(st.Tasks) > 0
			states := make([]string, 0, len(st.Tasks))
			for _, t := range st.Tasks {
				if t.State == "FAILED" {
					return "", failedError(name, fmt.Sprintf("task %d", t.ID), t.Trace)
				}
				running = running && t.State == "RUNNING"
				states = append(states, t.State)
			}
			last = fmt.Sprintf("connector %s, tasks %v", st.Connector.State, states)
			if running {
				activity.RecordHeartbeat(ctx, name)
				return fmt.Sprintf("RUNNING, %d task(s) RUNNING", len(st.Tasks)), nil
			}
		}
		activity.RecordHeartbeat(ctx, name)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("connector %s is not RUNNING (%s): %w", name, last, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

func failedError(name, what, trace string) error {
	msg := fmt.Sprintf("kafka connect reports %s of connector %s FAILED:\n%s", what, name, truncate(trace, 4000))
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeConnectorFailed, nil)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "\n…"
	}
	return s
}
