package records

import "time"

// AppliedReport is what one streamer instance says about itself on the
// applied-filter topic (compacted, keyed by instance id): the filter it
// applies and when it last said so. An instance that stops cleanly deletes
// its key. The streamer writes it; `shopstream filter`, `status` and the
// health checks read it, so the type lives here, beside the topic names,
// and none of them links the streamer.
//
// The value is JSON, not registry-framed Avro: the topic is operational
// state that only shopstream reads, and kcat or AKHQ show it as is.
type AppliedReport struct {
	Instance      string    `json:"instance"`
	Group         string    `json:"group"`
	Host          string    `json:"host"`
	PID           int       `json:"pid"`
	Version       int64     `json:"version"`
	Substring     string    `json:"substring"`
	CaseSensitive bool      `json:"case_sensitive"`
	AppliedAt     time.Time `json:"applied_at"`
	HeartbeatAt   time.Time `json:"heartbeat_at"`
	// HeartbeatEvery is how often the instance reports, so a reader can tell
	// a live instance from one that died without deleting its key.
	HeartbeatEvery time.Duration `json:"heartbeat_every_ns"`
}

// Live says whether the instance reported within three heartbeats of now.
func (r AppliedReport) Live(now time.Time) bool {
	return now.Sub(r.HeartbeatAt) <= 3*r.HeartbeatEvery
}
