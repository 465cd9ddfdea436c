package streamer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/topicread"
)

// AppliedReport is what one instance says about itself on the applied topic
// (compacted, keyed by instance id): the filter it applies and when it last
// said so. An instance that stops cleanly deletes its key.
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

// ReadApplied returns the newest report of every instance that did not stop
// cleanly, sorted by instance id.
func ReadApplied(ctx context.Context, k *clients.Kafka, topic string) ([]AppliedReport, error) {
	latest := map[string]*AppliedReport{}
	var bad error
	// The topic is compacted: its newest offset may be gone, so the read
	// gives up after a second without records.
	err := topicread.Read(ctx, k, topic, topicread.Options{Idle: time.Second}, func(r *kgo.Record) error {
		if r.Value == nil {
			delete(latest, string(r.Key))
			return nil
		}
		var rep AppliedReport
		if err := json.Unmarshal(r.Value, &rep); err != nil {
			bad = fmt.Errorf("topic %s partition %d offset %d is not an applied report: %w", topic, r.Partition, r.Offset, err)
			return nil
		}
		latest[string(r.Key)] = &rep
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bad != nil && len(latest) == 0 {
		return nil, bad
	}
	out := make([]AppliedReport, 0, len(latest))
	for _, r := range latest {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out, nil
}

// reporter writes this instance's report whenever the filter changes and
// every heartbeat, and deletes it on a clean stop.
type reporter struct {
	cl       *kgo.Client
	topic    string
	control  *control
	every    time.Duration
	now      func() time.Time
	log      *slog.Logger
	base     AppliedReport
	lastSent int64
}

func newReporter(cfg *Config, cl *kgo.Client, c *control) *reporter {
	host, _ := os.Hostname()
	return &reporter{
		cl: cl, topic: cfg.Topics.FilterApplied, control: c, every: cfg.HeartbeatInterval,
		now: cfg.Now, log: cfg.Logger,
		base: AppliedReport{Instance: cfg.InstanceID, Group: cfg.Group, Host: host, PID: os.Getpid(), HeartbeatEvery: cfg.HeartbeatInterval},
	}
}

func (r *reporter) run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	r.send(ctx)
	for {
		select {
		case <-ctx.Done():
			// A clean stop deletes the key, so `filter get` and `filter set
			// --wait` stop counting this instance at once.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			rec := &kgo.Record{Topic: r.topic, Key: []byte(r.base.Instance)}
			if err := r.cl.ProduceSync(dctx, rec).FirstErr(); err != nil {
				r.log.Warn("delete this instance's applied report", "topic", r.topic, "err", err)
			}
			return nil
		case <-r.control.changed:
		case <-t.C:
		}
		r.send(ctx)
	}
}

func (r *reporter) send(ctx context.Context) {
	f := r.control.current.Load()
	rep := r.base
	rep.Version, rep.Substring, rep.CaseSensitive = f.Version, f.Substring, f.CaseSensitive
	rep.AppliedAt, rep.HeartbeatAt = f.AppliedAt, r.now()
	v, err := json.Marshal(rep)
	if err != nil {
		r.log.Error("encode the applied report", "err", err)
		return
	}
	rec := &kgo.Record{Topic: r.topic, Key: []byte(rep.Instance), Value: v}
	if err := r.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("write the applied report", "topic", r.topic, "err", err)
		}
		return
	}
	if rep.Version != r.lastSent {
		r.log.Debug("applied report written", "version", rep.Version)
		r.lastSent = rep.Version
	}
}
