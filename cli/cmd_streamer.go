package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/streamer/recommender"
)

// streamerOptions are the flags of `shopstream streamer`.
type streamerOptions struct {
	instanceID    string
	txnID         string
	group         string
	caseSensitive bool
	maxBatch      int
	// recommender runs the built-in recommender in the same process.
	recommender bool
}

func streamerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "instance-id", EnvVars: []string{"STREAMER_INSTANCE_ID"}, Usage: "this instance's id on the applied-filter topic; unique among live instances (default: host name and a random suffix)", Category: "Streamer"},
		&cli.StringFlag{Name: "transactional-id", EnvVars: []string{"STREAMER_TRANSACTIONAL_ID"}, Usage: "this instance's Kafka transactional id, stable across restarts so that a restarted instance aborts its predecessor's open transaction at once (the Helm chart gives the pod name); unique among live instances (default: from the instance id, with a random suffix)", Category: "Streamer"},
		&cli.StringFlag{Name: "group", EnvVars: []string{"STREAMER_GROUP"}, Value: streamer.DefaultGroup, Usage: "consumer group the instances share", Category: "Streamer"},
		&cli.BoolFlag{Name: "case-sensitive", EnvVars: []string{"STREAMER_CASE_SENSITIVE"}, Usage: "match case-sensitively whatever the filter says (default: as each filter state says; states are case-insensitive unless set with --case-sensitive)", Category: "Streamer"},
		&cli.IntFlag{Name: "max-batch", EnvVars: []string{"STREAMER_MAX_BATCH"}, Value: streamer.DefaultMaxBatch, Usage: "most records in one transaction", Category: "Streamer"},
		&cli.StringFlag{Name: "recommender", EnvVars: []string{"STREAMER_RECOMMENDER"}, Value: "on", Usage: "run the built-in recommender in this process: on, or off when ksqlDB builds the recommendations", Category: "Streamer"},
	}
}

func readStreamerOptions(c *cli.Context) (streamerOptions, error) {
	o := streamerOptions{
		instanceID: c.String("instance-id"), txnID: c.String("transactional-id"), group: c.String("group"),
		caseSensitive: c.Bool("case-sensitive"), maxBatch: c.Int("max-batch"),
	}
	switch c.String("recommender") {
	case "on":
		o.recommender = true
	case "off":
	default:
		return o, usageErr("--recommender %q: want on or off", c.String("recommender"))
	}
	if o.maxBatch < 1 || o.maxBatch > 1_000_000 {
		return o, usageErr("--max-batch %d: want 1 to 1000000", o.maxBatch)
	}
	if strings.ContainsAny(o.instanceID, " \t\n/") {
		return o, usageErr("--instance-id %q: use letters, digits, '-', '_' or '.'", o.instanceID)
	}
	if strings.ContainsAny(o.txnID, " \t\n") {
		return o, usageErr("--transactional-id %q: use no white space", o.txnID)
	}
	if strings.TrimSpace(o.group) == "" {
		return o, usageErr("--group is empty: give the consumer group, e.g. %s", streamer.DefaultGroup)
	}
	return o, nil
}

func streamerCommand() *cli.Command {
	return &cli.Command{
		Name:  "streamer",
		Usage: "filter products by the current substring into the filtered topic, exactly once (long-running)",
		Description: "Joins the consumer group on the product topic and forwards every product whose name contains the\n" +
			"filter's substring (case-insensitive unless the filter or --case-sensitive says otherwise) to the\n" +
			"filtered topic, unchanged, with a header naming the filter version. Deletes (tombstones) pass.\n" +
			"Records that are not Confluent-framed Avro products go to the dead-letter topic.\n" +
			"The filter comes from the control topic that `shopstream filter set` publishes to; every instance\n" +
			"reports the version it applied. Run several instances to share the partitions. `shopstream dev`\n" +
			"runs one inside. Stops cleanly on SIGINT/SIGTERM within 10 s.\n\n" +
			"Examples:\n  shopstream streamer\n  shopstream streamer --instance-id eu-1 --metrics-addr 127.0.0.1:9470",
		Flags:  withFlags(append(streamerFlags(), logFlag)...),
		Action: runStreamerCommand,
	}
}

// streamerPart is one long-running part of the `shopstream streamer`
// process; run blocks until ctx ends. The parts share one process, one set
// of clients and one /metrics.
type streamerPart struct {
	name string
	run  func(ctx context.Context) error
	// ready, when not nil, closes once the part has started its work.
	ready <-chan struct{}
}

// streamerParts lists what `shopstream streamer` runs. Another hot-path
// part (the built-in recommender) adds itself here.
func streamerParts(e *env, o streamerOptions) ([]streamerPart, error) {
	s, err := newStreamer(e, o)
	if err != nil {
		return nil, err
	}
	parts := []streamerPart{{"filter", s.Run, s.Ready()}}
	if o.recommender {
		rec, err := recommender.New(recommender.Options{
			Kafka: e.kafkaClients, Topics: e.cfg.Topics, Serde: e.serde, Registerer: e.metrics, Logger: e.log.With("component", "recommender"),
			Group: recommender.DefaultGroup,
			// One process, one id: unique when several instances share a host.
			InstanceID: s.InstanceID(),
			TopicWait:  2 * time.Minute, // `shopstream dev` bootstraps after its components start
		})
		if err != nil {
			return nil, err
		}
		parts = append(parts, streamerPart{name: "recommender", run: rec.Run, ready: rec.Ready()})
	}
	return parts, nil
}

// runParts runs the parts until ctx ends or one fails.
func runParts(ctx context.Context, parts []streamerPart) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error {
			if err := p.run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func newStreamer(e *env, o streamerOptions) (*streamer.Streamer, error) {
	return streamer.New(streamer.Options{
		Kafka: e.kafkaClients, Serde: e.serde, Topics: e.cfg.Topics,
		Group: o.group, InstanceID: o.instanceID, TransactionalID: o.txnID, CaseSensitive: o.caseSensitive, MaxBatch: o.maxBatch,
		Registerer: e.metrics, Logger: e.log.With("component", "streamer"),
	})
}

func runStreamerCommand(c *cli.Context) error {
	cfg, err := readConfig(c)
	if err != nil {
		return err
	}
	o, err := readStreamerOptions(c)
	if err != nil {
		return err
	}
	// A long-running command logs at info unless told otherwise.
	logger, err := telemetry.NewLogger(c.App.ErrWriter, c.String("log-level"))
	if err != nil {
		return usageErr("%v", err)
	}
	e, err := connectWith(c.Context, cfg, logger, true, false)
	if err != nil {
		return err
	}
	defer e.close()
	parts, err := streamerParts(e, o)
	if err != nil {
		return err
	}
	addr, err := serveStreamerMetrics(c, e)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "streamer: %s -> %s in group %s (recommender %s); /metrics on http://%s/metrics\n",
		cfg.Topics.Products, cfg.Topics.Filtered, o.group, c.String("recommender"), addr)
	return runParts(c.Context, parts)
}

// serveStreamerMetrics serves /metrics on --metrics-addr. Left at its
// default ("auto": the streamer's own port), a taken address (a second
// instance on the same machine) falls back to a free loopback port, so a
// second instance just starts.
func serveStreamerMetrics(c *cli.Context, e *env) (string, error) {
	want := e.cfg.MetricsAddrFor("streamer")
	addr, err := telemetry.Serve(c.Context, want, e.metrics, nil)
	if err != nil && !c.IsSet("metrics-addr") {
		e.log.Info("the default metrics address is not free, serving on another port", "default", want, "err", err)
		return telemetry.Serve(c.Context, "127.0.0.1:0", e.metrics, nil)
	}
	return addr, err
}
