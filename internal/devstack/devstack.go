// Package devstack is `shopstream dev`: the embedded stack (Kafka, the
// schema registry, the Temporal dev server, PostgreSQL when installed) and
// every shopstream component over it in one process, bootstrapped, with
// one ready line once all of them work and one bounded stop.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/apiauth"
	"github.com/shopstream/shopstream/internal/bootstrap"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/productapi"
	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/supervise"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/streamer"
)

// Options configure the dev stack. Config says what to connect to: a part
// whose address is the default one is started here, any other is used as
// it is.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Topics shape the topics of the first bootstrap.
	Topics bootstrap.Topics
	// NoBootstrap skips the bootstrap once the stack is up.
	NoBootstrap bool
	// TemporalCLI is the Temporal CLI's path (./bin/temporal when empty).
	TemporalCLI string
	// UntunedTemporal leaves the dev server's dynamic config at its defaults.
	UntunedTemporal bool
	// Secure runs Kafka with TLS, SASL/SCRAM-SHA-512 and ACLs, the
	// registry with TLS and basic auth, and every component as its own
	// principal, and writes <data-dir>/secure.env for the other commands.
	Secure bool
	// FetchAllowHosts are image hosts the API and the collector accept
	// although they are on loopback, besides the embedded image server.
	FetchAllowHosts []string
}

// StopWithin is how long the components get to stop once dev is told to,
// unless one states a longer bound of its own (supervise.Bounded).
const StopWithin = 8 * time.Second

// Run starts the stack and every component, bootstraps, prints each
// endpoint and a ready line on out once every component is ready, and runs
// until ctx ends; it returns nil after a clean stop.
func Run(ctx context.Context, o Options, out io.Writer) error {
	t0 := time.Now()
	cfg, logger := o.Config, o.Logger
	def := config.Default()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	temporalLog, err := os.OpenFile(filepath.Join(cfg.DataDir, "temporal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the Temporal dev server's log: %w", err)
	}
	defer temporalLog.Close()

	var sec *secureSetup
	var stackSecure *environment.Secure
	startRegistry := cfg.SchemaRegistryURL == def.SchemaRegistryURL
	if o.Secure {
		if sec, err = prepareSecure(cfg.DataDir); err != nil {
			return err
		}
		if stackSecure, err = sec.stackOptions(); err != nil {
			return err
		}
		// The URL secure.env gives, when dev runs with it sourced.
		startRegistry = startRegistry || cfg.SchemaRegistryURL == strings.Replace(def.SchemaRegistryURL, "http:", "https:", 1)
	}

	fmt.Fprintln(out, "shopstream dev: starting the embedded stack")
	stack, err := environment.Start(ctx, environment.Options{
		DataDir:         cfg.DataDir,
		Secure:          stackSecure,
		StartKafka:      slices.Equal(cfg.KafkaBrokers, def.KafkaBrokers),
		KafkaPort:       environment.KafkaPort,
		KafkaBrokers:    cfg.KafkaBrokers,
		StartRegistry:   startRegistry,
		RegistryPort:    environment.RegistryPort,
		RegistryURL:     cfg.SchemaRegistryURL,
		StartTemporal:   cfg.TemporalAddress == def.TemporalAddress,
		TemporalPort:    environment.TemporalPort,
		TemporalUIPort:  environment.TemporalUIPort,
		TemporalAddress: cfg.TemporalAddress,
		TemporalUIURL:   cfg.TemporalUIURL,
		TemporalCLI:     o.TemporalCLI,
		UntunedTemporal: o.UntunedTemporal,
		Log:             temporalLog,
	})
	if err != nil {
		return err
	}
	// Before anything connects, Start repaired what an unclean stop left.
	stack.KafkaRecovery.Print(out)
	defer func() {
		fmt.Fprintln(out, "shopstream dev: stopping the stack")
		if err := stack.Close(); err != nil {
			logger.Warn("stop stack", "err", err)
		}
	}()
	cfg.KafkaBrokers, cfg.SchemaRegistryURL = stack.KafkaBrokers, stack.RegistryURL
	cfg.TemporalAddress, cfg.TemporalUIURL = stack.TemporalAddress, stack.TemporalUIURL
	if sec != nil {
		// dev itself connects as the admin; its components as themselves.
		cfg.KafkaSecurity, cfg.Registry = sec.kafka(secureAdmin), sec.registry()
	}
	pg, err := startPostgres(ctx, cfg, out)
	if err != nil {
		return err
	}
	defer pg.stop()

	token, err := devToken(cfg)
	if err != nil {
		return err
	}
	e, err := process.Connect(ctx, cfg, logger, telemetry.NewRegistry(), process.NeedKafka|process.NeedTemporal)
	if err != nil {
		return err
	}
	defer e.Close()
	if sec != nil {
		if err := secureComponents(ctx, e, sec, out); err != nil {
			return err
		}
	}
	g, err := components(ctx, e, o.FetchAllowHosts)
	if err != nil {
		return err
	}
	metricsAddr, err := telemetry.Serve(ctx, cfg.MetricsAddrFor("dev"), e.Metrics, g)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	// stop ends the components and reports the first failure, which (a
	// taken port, say) explains what went wrong better than what saw it.
	stop := func(cause error) error {
		cancel()
		return errors.Join(<-done, cause)
	}

	if !o.NoBootstrap {
		bctx, bcancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := bootstrap.Run(bctx, e.Temporal, cfg, bootstrap.Input(cfg, o.Topics, nil), out, false)
		bcancel()
		if err != nil {
			if gerr := stop(nil); gerr != nil {
				return gerr
			}
			return err
		}
	}
	// dev prints its ready line only once every component works, so a
	// command run at once finds it working.
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	err = g.WaitReady(wctx)
	wcancel()
	switch {
	case err == nil:
	case ctx.Err() != nil: // told to stop (Ctrl-C) while waiting
		return stop(nil)
	case errors.Is(err, context.DeadlineExceeded):
		logger.Warn("components not ready after a minute; going on", "err", err)
	default: // a component stopped before it was ready
		return stop(err)
	}

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  Kafka\t%s\t%s\n", strings.Join(cfg.KafkaBrokers, ","), startedNote(stack, "kafka", filepath.Join(cfg.DataDir, "kafka")))
	fmt.Fprintf(tw, "  Schema registry\t%s\t%s\n", config.Mask(cfg.SchemaRegistryURL), startedNote(stack, "schema registry", filepath.Join(cfg.DataDir, "schema-registry.json")))
	fmt.Fprintf(tw, "  Temporal\t%s\t%s\n", cfg.TemporalAddress, startedNote(stack, "temporal", filepath.Join(cfg.DataDir, "temporal.db")))
	fmt.Fprintf(tw, "  Temporal Web UI\t%s\t\n", cfg.TemporalUIURL)
	pgAddr, pgNote := pg.note(cfg)
	fmt.Fprintf(tw, "  PostgreSQL\t%s\t%s\n", pgAddr, pgNote)
	if metricsAddr != "" {
		fmt.Fprintf(tw, "  Metrics\thttp://%s/metrics\t\n", metricsAddr)
	}
	fmt.Fprintf(tw, "  Product API\thttp://%s/api/v1/\t(token in %s; more with `shopstream api token create`)\n", productapi.DefaultAddr, tokenFile(cfg))
	fmt.Fprintf(tw, "  API token\t%s\t(write, every mall: Authorization: Bearer …)\n", token)
	tw.Flush()
	if sec != nil {
		envFile, err := sec.writeEnv(cfg.DataDir, cfg)
		if err != nil {
			return stop(err)
		}
		printSecureUsage(out, envFile)
	}
	fmt.Fprintf(out, "shopstream dev: ready in %s (Ctrl-C stops everything)\n", time.Since(t0).Round(10*time.Millisecond))
	return <-done
}

// components are what dev runs beside the stack: the Temporal worker (and
// the Kafka view on /metrics that a worker exports), the product API, the
// streamer with the built-in recommender, and, with PostgreSQL, the image
// collector and the sink.
func components(ctx context.Context, e *process.Env, allowHosts []string) (*supervise.Group, error) {
	g := supervise.New(StopWithin)
	if err := e.RegisterKafkaView(); err != nil {
		return nil, err
	}
	w, err := e.Worker(5 * time.Second)
	if err != nil {
		return nil, err
	}
	api, err := e.API(ctx, process.APISettings{Addr: productapi.DefaultAddr, MaxBody: productapi.DefaultMaxBody,
		Images: true, AllowHosts: process.DevImageHosts(allowHosts...)}, g)
	if err != nil {
		return nil, err
	}
	go func() {
		select {
		case <-api.Ready():
			e.Logger.Info("product API serving", "url", "http://"+api.Addr()+"/api/v1/", "images", "http://"+api.Addr()+"/images/{name}.png")
		case <-ctx.Done():
		}
	}()
	if err := errors.Join(g.Add("temporal worker", w), g.Add("product api", api)); err != nil {
		return nil, err
	}
	if err := e.AddStreamer(g, process.StreamerSettings{Group: streamer.DefaultGroup, Recommender: true}); err != nil {
		return nil, err
	}
	if e.Config.DatabaseDSN == "" {
		// startPostgres said why at start.
		e.Logger.Warn("image collector not started: it needs PostgreSQL; set DATABASE_DSN or install PostgreSQL (make postgres)")
		return g, nil
	}
	col, err := e.Collector(ctx, process.DevCollectorSettings(allowHosts...))
	if err != nil {
		return nil, err
	}
	sk, err := e.Sink(ctx, process.SinkSettings{Group: sink.DefaultGroup, BatchSize: 5000})
	if err != nil {
		return nil, err
	}
	return g, errors.Join(g.Add("image collector", col), g.Add("sink", sk))
}

// secureComponents applies the ACL table as the admin (the worker needs its
// ACLs to create the topics) and gives every component its own principal.
func secureComponents(ctx context.Context, e *process.Env, sec *secureSetup, out io.Writer) error {
	if _, err := bootstrap.ApplyACLs(ctx, e.Admin, e.Config, nil, false, out); err != nil {
		return err
	}
	e.Principals = map[string]*clients.Kafka{}
	for _, c := range acls.Components {
		user := acls.DefaultUser(c)
		if c == acls.Recommender {
			// dev's recommender runs in the streamer's process, as it does
			// in `shopstream streamer`.
			user = acls.DefaultUser(acls.Streamer)
		}
		k, err := e.Kafka.As(user, sec.passwords[user])
		if err != nil {
			return err
		}
		e.Principals[c] = k
	}
	return nil
}

func startedNote(s *environment.Stack, part, state string) string {
	d, ok := s.Started[part]
	if !ok {
		return "(external)"
	}
	return fmt.Sprintf("(embedded, up in %s, state in %s)", d.Round(time.Millisecond), state)
}

// tokenFile is where dev keeps its API token in the clear, for the
// commands and scripts run beside it (scripts/run.sh reads it).
func tokenFile(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "api-token") }

// devToken returns dev's write token for the product API, creating it (and
// the tokens file) on the first start; a token no longer in the tokens file
// is replaced.
func devToken(cfg *config.Config) (string, error) {
	path := tokenFile(cfg)
	if b, err := os.ReadFile(path); err == nil {
		token := strings.TrimSpace(string(b))
		if keys, err := apiauth.Open(cfg.TokensFile(), nil); err == nil {
			if _, err := keys.Authenticate("Bearer " + token); err == nil {
				return token, nil
			}
		}
	}
	// A generous limit: `shopstream loadtest` sends hundreds a second with it.
	token, _, err := apiauth.Create(cfg.TokensFile(), apiauth.Options{Scope: apiauth.ScopeWrite, Name: "shopstream dev", Rate: 5000, Burst: 5000, Now: time.Now()})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save dev's API token: %w", err)
	}
	return token, nil
}
