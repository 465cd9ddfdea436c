package telemetry

import (
	"encoding/json"
	"net/http"
)

// Readiness says which parts of a process are not ready yet, each with why
// ("starting", "stopped", …); an empty answer means the process is ready.
// supervise.Group is one.
type Readiness interface {
	NotReady() map[string]string
}

// ReadyHandler answers a readiness probe from r: 200 and {"ready":true}
// when every part is ready, else 503 and a JSON body that names each part
// that is not and why. A nil r is always ready.
func ReadyHandler(r Readiness) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var notReady map[string]string
		if r != nil {
			notReady = r.NotReady()
		}
		code := http.StatusOK
		if len(notReady) > 0 {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(struct {
			Ready    bool              `json:"ready"`
			NotReady map[string]string `json:"not_ready,omitempty"`
		}{len(notReady) == 0, notReady})
	})
}
