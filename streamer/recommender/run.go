package recommender

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/sync/errgroup"

	"github.com/shopstream/shopstream/internal/clock"
	"github.com/shopstream/shopstream/internal/component"
	"github.com/shopstream/shopstream/internal/records"
)

// DefaultGroup is the consumer group of the recommender's instances.
const DefaultGroup = "shopstream-recommender"

// Options configure one recommender instance: what every component is
// built with (Deps; its Topics name the filtered products, read whole into
// the table, the prompts, consumed as a group, the recommendations, written
// and read back to restore users, and the dead-letter topic), and the
// recommender's own settings.
type Options struct {
	component.Deps

	// Group is the consumer group; DefaultGroup when empty.
	Group string
	// InstanceID names this instance; its transactional id is
	// Group-InstanceID. Keep it stable across restarts (the default is the
	// host name), so a restarted instance fences its predecessor's open
	// transaction at once instead of waiting for it to time out; and make it
	// unique among live instances.
	InstanceID string
	// TransactionTimeout bounds how long a crashed instance's transaction
	// can hold back readers; 30s when zero.
	TransactionTimeout time.Duration
	// OnCaughtUp, when set, is called once the table has read the filtered
	// topic to the end offsets it found at start, just before prompts are
	// joined.
	OnCaughtUp func(products int)
	// TopicWait is how long Run waits for missing topics to be created
	// (by `shopstream bootstrap`) before it gives up; 0 does not wait.
	TopicWait time.Duration
	// MaxUsers bounds the users whose recommendations the instance holds
	// (DefaultMaxUsers). Past it, the users idle longest are forgotten; a
	// prompt of a forgotten user reads the user's recommendation back from
	// the compacted recommendations topic.
	MaxUsers int

	hooks *testHooks
}

// testHooks let tests crash an instance at chosen points.
type testHooks struct {
	// afterProduce runs after a batch's records are written, before the
	// transaction ends; an error makes the instance stop at once, as if it
	// crashed, leaving the transaction open.
	afterProduce func() error
	// onTable receives the instance's table, to watch it catch up.
	onTable func(*Table)
}

func (c *Options) setDefaults() error {
	if err := c.Check("recommender"); err != nil {
		return err
	}
	if c.MaxUsers <= 0 {
		c.MaxUsers = DefaultMaxUsers
	}
	for _, t := range []struct{ what, name string }{
		{"filtered", c.Topics.Filtered}, {"find", c.Topics.Find},
		{"recommendations", c.Topics.Recommendations}, {"dead-letter", c.Topics.DLQ},
	} {
		if t.name == "" {
			return fmt.Errorf("recommender: the %s topic has no name", t.what)
		}
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.InstanceID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "instance"
		}
		c.InstanceID = host
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 30 * time.Second
	}
	return nil
}

// StopWithin bounds how long Run takes to return once its context ends: a
// batch that is committing gets up to 10 s to end its transaction, then the
// instance leaves the group; usually it is a matter of milliseconds.
const StopWithin = 12 * time.Second

// Recommender is one instance of the join. Run returns within StopWithin of
// its context's end.
type Recommender struct {
	cfg     Options
	m       *metrics
	ready   chan struct{}
	joined  sync.Once
	started atomic.Bool
}

// New checks o, fills in its defaults and registers the metrics; it starts
// nothing.
func New(o Options) (*Recommender, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Recommender{cfg: o, m: m, ready: make(chan struct{})}, nil
}

// StopWithin is how long Run takes to return once its context ends.
func (r *Recommender) StopWithin() time.Duration { return StopWithin }

// InstanceID is the instance's name, its defaults filled in.
func (r *Recommender) InstanceID() string { return r.cfg.InstanceID }

// Ready is closed once the table has caught up with the filtered topic and
// the instance has joined the prompts' group (its first partition
// assignment, even an empty one).
func (r *Recommender) Ready() <-chan struct{} { return r.ready }

// Run joins prompts with the table of filtered products until ctx ends; it
// may be called once. It first reads the filtered topic up to its end
// offsets, then joins prompts as a member of the group. It returns nil
// after a clean stop.
func (r *Recommender) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("recommender: Run called twice")
	}
	cfg, m := r.cfg, r.m
	admCl, err := cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	defer admCl.Close()
	admin := kadm.NewClient(admCl)
	parts, err := waitTopics(ctx, admin, &cfg)
	if err != nil {
		return err
	}
	table := NewTable()
	if cfg.hooks != nil && cfg.hooks.onTable != nil {
		cfg.hooks.onTable(table)
	}
	ld := newLoader(&cfg, table, m)
	defer ld.close()

	g, gctx := errgroup.WithContext(ctx)
	caughtUp := make(chan struct{})
	g.Go(func() error { return ld.run(gctx, caughtUp) })
	g.Go(func() error {
		select {
		case <-caughtUp:
		case <-gctx.Done():
			return nil
		}
		j := newJoiner(&cfg, table, admin, m, parts)
		j.onJoined = func() { r.joined.Do(func() { close(r.ready) }) }
		return j.run(gctx)
	})
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

// waitTopics checks the topics, waiting up to cfg.TopicWait for missing
// ones to appear.
func waitTopics(ctx context.Context, admin *kadm.Client, cfg *Options) (topicPartitions, error) {
	deadline := time.Now().Add(cfg.TopicWait)
	lastLog := time.Time{}
	for {
		parts, err := checkTopics(ctx, admin, cfg.Topics)
		var missing *missingTopicError
		if err == nil || !errors.As(err, &missing) || time.Now().After(deadline) {
			return parts, err
		}
		if time.Since(lastLog) > 10*time.Second {
			cfg.Logger.Warn("waiting for the recommender's topics", "missing", missing.topic, "hint", "run `shopstream bootstrap`")
			lastLog = time.Now()
		}
		if err := clock.Sleep(ctx, 500*time.Millisecond); err != nil {
			return parts, err
		}
	}
}

type missingTopicError struct {
	topic string
	err   error
}

func (e *missingTopicError) Error() string {
	return fmt.Sprintf("topic %s does not exist (%v): create the topics with `shopstream bootstrap`", e.topic, e.err)
}

// topicPartitions are the partition counts Run checked at start.
type topicPartitions struct {
	find, recommendations, dlq int32
}

// checkTopics makes sure every topic exists, and that prompts and
// recommendations are co-partitioned: a user's recommendations are written
// to, and restored from, the partition number of the user's prompts.
func checkTopics(ctx context.Context, admin *kadm.Client, t records.Topics) (topicPartitions, error) {
	names := []string{t.Filtered, t.Find, t.Recommendations, t.DLQ}
	details, err := admin.ListTopics(ctx, names...)
	if err != nil {
		return topicPartitions{}, fmt.Errorf("describe topics %v: %w", names, err)
	}
	n := map[string]int32{}
	for _, name := range names {
		d, ok := details[name]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return topicPartitions{}, &missingTopicError{name, d.Err}
		}
		n[name] = int32(len(d.Partitions))
	}
	if n[t.Find] != n[t.Recommendations] {
		return topicPartitions{}, fmt.Errorf("topics %s (%d partitions) and %s (%d partitions) must have the same number of partitions: "+
			"the recommender restores each user's recommendations from the partition that matches the user's prompts "+
			"(run `shopstream bootstrap --force` to reconcile them)", t.Find, n[t.Find], t.Recommendations, n[t.Recommendations])
	}
	return topicPartitions{find: n[t.Find], recommendations: n[t.Recommendations], dlq: n[t.DLQ]}, nil
}
