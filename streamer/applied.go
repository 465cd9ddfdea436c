package streamer

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
)

// reportGrace bounds deleting the instance's report on a clean stop.
const reportGrace = 2 * time.Second

// reporter writes this instance's report whenever the filter changes and
// every heartbeat, and deletes it on a clean stop.
type reporter struct {
	cl       *kgo.Client
	topic    string
	control  *control
	every    time.Duration
	now      func() time.Time
	log      *slog.Logger
	base     records.AppliedReport
	lastSent int64
}

func newReporter(cfg *Options, cl *kgo.Client, c *control) *reporter {
	host, _ := os.Hostname()
	return &reporter{
		cl: cl, topic: cfg.Topics.FilterApplied, control: c, every: cfg.HeartbeatInterval,
		now: cfg.Now, log: cfg.Logger,
		base: records.AppliedReport{Instance: cfg.InstanceID, Group: cfg.Group, Host: host, PID: os.Getpid(), HeartbeatEvery: cfg.HeartbeatInterval},
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
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportGrace)
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
