package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// parts is a Readiness whose answer a test changes.
type parts map[string]string

func (p parts) NotReady() map[string]string { return p }

// /healthz says the process answers; /readyz says whether every part is
// ready, naming those that are not, as a probe and a person read it.
func TestServeAnswersLivenessAndReadiness(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := parts{"streamer": "starting", "sink": "stopped"}
	addr, err := Serve(ctx, "127.0.0.1:0", prometheus.NewRegistry(), ready)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	code, body := get("/readyz")
	var got struct {
		Ready    bool              `json:"ready"`
		NotReady map[string]string `json:"not_ready"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || got.Ready || got.NotReady["streamer"] != "starting" || got.NotReady["sink"] != "stopped" {
		t.Errorf("/readyz with two parts not ready = %d %q, want 503 naming streamer and sink", code, body)
	}
	clear(ready)
	if code, body := get("/readyz"); code != http.StatusOK || body != "{\"ready\":true}\n" {
		t.Errorf("/readyz with every part ready = %d %q, want 200 {\"ready\":true}", code, body)
	}
}
