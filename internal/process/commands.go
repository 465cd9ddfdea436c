package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
)

// The long-running commands: each connects what it needs, runs its
// components under one supervise.Group with /metrics and /readyz, says
// where on out, and returns once ctx ended and every component stopped.

// RunStreamer runs the streamer process: the filter and, when asked, the
// built-in recommender. Left at "auto", a taken default metrics address (a
// second instance on the same machine) falls back to a free loopback port,
// so a second instance just starts.
func RunStreamer(ctx context.Context, cfg *config.Config, logger *slog.Logger, s StreamerSettings, out io.Writer) error {
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	g := supervise.New(0)
	if err := e.AddStreamer(g, s); err != nil {
		return err
	}
	want := cfg.MetricsAddrFor("streamer")
	addr, err := telemetry.Serve(ctx, want, e.Metrics, g)
	if err != nil && cfg.MetricsAddr == "auto" {
		logger.Info("the default metrics address is not free, serving on another port", "default", want, "err", err)
		addr, err = telemetry.Serve(ctx, "127.0.0.1:0", e.Metrics, g)
	}
	if err != nil {
		return err
	}
	recs := "off"
	if s.Recommender {
		recs = "on"
	}
	fmt.Fprintf(out, "streamer: %s -> %s in group %s (recommender %s); /metrics on http://%s/metrics\n",
		cfg.Topics.Products, cfg.Topics.Filtered, s.Group, recs, addr)
	return g.Run(ctx)
}

// RunRecommender runs the built-in recommender alone.
func RunRecommender(ctx context.Context, cfg *config.Config, logger *slog.Logger, s RecommenderSettings, out io.Writer) error {
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	g := supervise.New(0)
	addr, err := telemetry.Serve(ctx, cfg.MetricsAddrFor("recommender"), e.Metrics, g)
	if err != nil {
		return err
	}
	s.OnCaughtUp = func(products int) {
		fmt.Fprintf(out, "recommender: table holds %d filtered products; joining prompts from %s as group %s; /metrics on %s\n",
			products, cfg.Topics.Find, s.Group, addr)
	}
	rec, err := e.Recommender(s)
	if err != nil {
		return err
	}
	if err := g.Add("recommender", e.Guard(acls.Recommender, rec)); err != nil {
		return err
	}
	return g.Run(ctx)
}

// RunSink runs the sink: it opens the database (applying migrations), joins
// the group and writes until ctx ends.
func RunSink(ctx context.Context, cfg *config.Config, logger *slog.Logger, s SinkSettings, out io.Writer) error {
	// Connected now, so wrong credentials are an error before the sink
	// opens the database.
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	g := supervise.New(0)
	addr, err := telemetry.Serve(ctx, cfg.MetricsAddrFor("sink"), e.Metrics, g)
	if err != nil {
		return err
	}
	if addr != "" {
		fmt.Fprintf(out, "sink: /metrics on http://%s/metrics\n", addr)
	}
	sk, err := e.Sink(ctx, s)
	if err != nil {
		return err
	}
	if err := g.Add("sink", e.Guard(acls.Sink, sk)); err != nil {
		return err
	}
	db := e.db.Pool.Config().ConnConfig
	fmt.Fprintf(out, "sink: group %s writes %s into PostgreSQL at %s:%d/%s (migrations applied now: %d)\n",
		s.Group, strings.Join(sk.Topics(), ", "), db.Host, db.Port, db.Database, len(e.dbApplied))
	return g.Run(ctx)
}

// RunCollector runs the image collector.
func RunCollector(ctx context.Context, cfg *config.Config, logger *slog.Logger, s CollectorSettings, out io.Writer) error {
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	g := supervise.New(0)
	addr, err := telemetry.Serve(ctx, cfg.MetricsAddrFor("collector"), e.Metrics, g)
	if err != nil {
		return err
	}
	images := cfg.BlobURL
	if images == "" {
		images = cfg.DataDir + "/images"
	}
	fmt.Fprintf(out, "collector: consuming %s as group %s; images in %s; /metrics on %s\n", cfg.Topics.Products, s.Group, images, addr)
	col, err := e.Collector(ctx, s)
	if err != nil {
		return err
	}
	if err := g.Add("collector", col); err != nil {
		return err
	}
	return g.Run(ctx)
}

// RunAPI serves the product API on its address, and /metrics, /healthz
// and /readyz also on the process's metrics address (127.0.0.1:9470 by
// default), where Prometheus needs no token.
func RunAPI(ctx context.Context, cfg *config.Config, logger *slog.Logger, s APISettings, out io.Writer) error {
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka)
	if err != nil {
		return err
	}
	defer e.Close()
	g := supervise.New(0)
	api, err := e.API(ctx, s, g)
	if err != nil {
		return err
	}
	if err := g.Add("api", api); err != nil {
		return err
	}
	metrics, err := telemetry.Serve(ctx, cfg.MetricsAddrFor("api"), e.Metrics, g)
	if err != nil {
		return err
	}
	auth := "no tokens: open to whoever reaches it"
	if keys, _ := e.APIKeys(); keys != nil {
		auth = fmt.Sprintf("bearer tokens from %s", keys.Path())
	}
	go func() {
		select {
		case <-api.Ready():
			fmt.Fprintf(out, "api: serving http://%s/api/v1/ (OpenAPI at /api/v1/openapi.json; %s); /metrics on %s\n", api.Addr(), auth, metrics)
		case <-ctx.Done():
		}
	}()
	return g.Run(ctx)
}

// RunWorker runs the Temporal worker with every workflow and activity, and
// exports the Kafka view (offsets and every group's lag) on its /metrics.
func RunWorker(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer) error {
	e, err := Connect(ctx, cfg, logger, telemetry.NewRegistry(), NeedKafka|NeedTemporal)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := e.RegisterKafkaView(); err != nil {
		return err
	}
	g := supervise.New(0)
	addr, err := telemetry.Serve(ctx, cfg.MetricsAddrFor("worker"), e.Metrics, g)
	if err != nil {
		return err
	}
	logger.Info("worker started", "task_queue", cfg.TaskQueue, "temporal", cfg.TemporalAddress, "metrics", addr)
	fmt.Fprintf(out, "worker: polling task queue %s on %s; /metrics on %s\n", cfg.TaskQueue, cfg.TemporalAddress, addr)
	w, err := e.Worker(0)
	if err != nil {
		return err
	}
	if err := g.Add("worker", w); err != nil {
		return err
	}
	return g.Run(ctx)
}
