package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/streamer"
	"github.com/shopstream/shopstream/workers"
)

// devComponent is one long-running part that `shopstream dev` runs beside
// the stack. run blocks until ctx ends and must return within a few seconds
// after that.
type devComponent struct {
	name string
	run  func(ctx context.Context, e *env) error
	// ready, when not nil, closes once the component works; dev prints its
	// ready line only after that, so a command run at once finds it working.
	ready chan struct{}
}

func devComponents() []devComponent {
	streamerReady := make(chan struct{})
	return []devComponent{
		{name: "temporal worker", run: func(ctx context.Context, e *env) error {
			acts, err := e.activities()
			if err != nil {
				return err
			}
			return workers.Run(ctx, e.temporal, e.cfg.TaskQueue, acts, worker.Options{WorkerStopTimeout: 5 * time.Second})
		}},
		{name: "product api", run: devProductAPI}, {name: "image collector", run: devCollector},
		// The streamer process: the filter and the built-in recommender.
		{name: "streamer", ready: streamerReady, run: func(ctx context.Context, e *env) error {
			parts, err := streamerParts(e, streamerOptions{group: streamer.DefaultGroup, recommender: true})
			if err != nil {
				return err
			}
			go func() {
				select {
				case <-parts[0].ready:
					close(streamerReady)
				case <-ctx.Done():
				}
			}()
			return runParts(ctx, parts)
		}},
		{name: "kafka metrics", run: func(ctx context.Context, e *env) error { return registerKafkaView(e) }},
		{name: "sink", run: func(ctx context.Context, e *env) error {
			if e.cfg.DatabaseDSN == "" {
				return nil // no PostgreSQL: dev said so at start
			}
			return runSink(ctx, e, sinkSettings{group: sink.DefaultGroup, batchSize: 5000}, io.Discard)
		}},
	}
}

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run the embedded stack: Kafka (kfake), a schema registry (srfake), the Temporal dev server with its Web UI, and every shopstream component",
		Description: "No Docker needed. State is kept under --data-dir (.data), so a restart keeps topics, records,\n" +
			"offsets, schemas and workflow history. Any part whose address points elsewhere (KAFKA_BROKERS,\n" +
			"SCHEMA_REGISTRY_URL, TEMPORAL_ADDRESS) is used instead of started. Ctrl-C stops everything.\n\n" +
			"Example:\n  shopstream dev            # then, in another terminal: shopstream bootstrap",
		Flags: withFlags(append(topicFlags(), logFlag,
			&cli.BoolFlag{Name: "no-bootstrap", Usage: "do not run the bootstrap workflow once the stack is up"},
			&cli.StringFlag{Name: "temporal-cli", EnvVars: []string{"TEMPORAL_CLI"}, Usage: "path of the Temporal CLI (default: ./bin/temporal, built by `make temporal`)"},
			&cli.BoolFlag{Name: "untuned-temporal", Hidden: true, Usage: "leave the dev server's dynamic config at its defaults (to measure what the tuning buys)"},
		)...),
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	t0 := time.Now()
	cfg, err := readConfig(c)
	if err != nil {
		return err
	}
	ts, err := readTopicSettings(c)
	if err != nil {
		return err
	}
	logger, err := commandLogger(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	def := config.Default()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	temporalLog, err := os.OpenFile(filepath.Join(cfg.DataDir, "temporal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the Temporal dev server's log: %w", err)
	}
	defer temporalLog.Close()

	fmt.Fprintln(out, "shopstream dev: starting the embedded stack")
	stack, err := environment.Start(c.Context, environment.Options{
		DataDir:         cfg.DataDir,
		StartKafka:      sameList(cfg.KafkaBrokers, def.KafkaBrokers),
		KafkaPort:       environment.KafkaPort,
		KafkaBrokers:    cfg.KafkaBrokers,
		StartRegistry:   cfg.SchemaRegistryURL == def.SchemaRegistryURL,
		RegistryPort:    environment.RegistryPort,
		RegistryURL:     cfg.SchemaRegistryURL,
		StartTemporal:   cfg.TemporalAddress == def.TemporalAddress,
		TemporalPort:    environment.TemporalPort,
		TemporalUIPort:  environment.TemporalUIPort,
		TemporalAddress: cfg.TemporalAddress,
		TemporalUIURL:   cfg.TemporalUIURL,
		TemporalCLI:     c.String("temporal-cli"),
		UntunedTemporal: c.Bool("untuned-temporal"),
		Log:             temporalLog,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "shopstream dev: stopping the stack")
		if err := stack.Close(); err != nil {
			logger.Warn("stop stack", "err", err)
		}
	}()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = stack.KafkaBrokers, stack.RegistryURL
	cfg.TemporalAddress, cfg.TemporalUIURL = stack.TemporalAddress, stack.TemporalUIURL
	pg, err := startDevPostgres(c.Context, cfg, out)
	if err != nil {
		return err
	}
	defer pg.stop()

	e, err := connectWith(c.Context, cfg, logger, true, true)
	if err != nil {
		return err
	}
	defer e.close()
	metricsAddr, err := telemetry.Serve(c.Context, cfg.MetricsAddrFor("dev"), e.metrics, nil)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	comps := devComponents()
	for _, comp := range comps {
		comp := comp
		g.Go(func() error {
			if err := comp.run(gctx, e); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", comp.name, err)
			}
			return nil
		})
	}

	if !c.Bool("no-bootstrap") {
		bctx, bcancel := context.WithTimeout(gctx, 2*time.Minute)
		_, err := runBootstrap(bctx, e.temporal, cfg, bootstrapInput(cfg, ts, nil), out, false)
		bcancel()
		if err != nil {
			cancel()
			// A component that failed (a taken port, say) cancelled the
			// bootstrap: report the cause, not the cancellation.
			if werr := g.Wait(); werr != nil {
				return werr
			}
			return err
		}
	}

	for _, comp := range comps {
		if comp.ready == nil {
			continue
		}
		select {
		case <-comp.ready:
		case <-gctx.Done():
			cancel()
			return errors.Join(g.Wait(), fmt.Errorf("%s stopped before it was ready", comp.name))
		case <-time.After(time.Minute):
			logger.Warn("component not ready after a minute; going on", "component", comp.name)
		}
	}

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  Kafka\t%s\t%s\n", joinAddrs(cfg.KafkaBrokers), startedNote(stack, "kafka", filepath.Join(cfg.DataDir, "kafka")))
	fmt.Fprintf(tw, "  Schema registry\t%s\t%s\n", config.Mask(cfg.SchemaRegistryURL), startedNote(stack, "schema registry", filepath.Join(cfg.DataDir, "schema-registry.json")))
	fmt.Fprintf(tw, "  Temporal\t%s\t%s\n", cfg.TemporalAddress, startedNote(stack, "temporal", filepath.Join(cfg.DataDir, "temporal.db")))
	fmt.Fprintf(tw, "  Temporal Web UI\t%s\t\n", cfg.TemporalUIURL)
	pgAddr, pgNote := pg.note(cfg)
	fmt.Fprintf(tw, "  PostgreSQL\t%s\t%s\n", pgAddr, pgNote)
	if metricsAddr != "" {
		fmt.Fprintf(tw, "  Metrics\thttp://%s/metrics\t\n", metricsAddr)
	}
	tw.Flush()
	fmt.Fprintf(out, "shopstream dev: ready in %s (Ctrl-C stops everything)\n", time.Since(t0).Round(10*time.Millisecond))

	<-gctx.Done()
	cancel()
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err = <-done:
	case <-time.After(8 * time.Second):
		err = errors.New("components did not stop within 8s")
	}
	if c.Context.Err() != nil && err == nil {
		return nil // a clean Ctrl-C / SIGTERM
	}
	return err
}

func startedNote(s *environment.Stack, part, state string) string {
	d, ok := s.Started[part]
	if !ok {
		return "(external)"
	}
	return fmt.Sprintf("(embedded, up in %s, state in %s)", d.Round(time.Millisecond), state)
}

func sameList(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func joinAddrs(a []string) string {
	s := ""
	for i, v := range a {
		if i > 0 {
			s += ","
		}
		s += v
	}
	return s
}
