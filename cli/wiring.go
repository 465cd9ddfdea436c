package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/clients/temporalclient"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/telemetry/temporalmetrics"
	"github.com/shopstream/shopstream/workers"
)

// logFlag is shared by the long-running commands.
var logFlag = &cli.StringFlag{Name: "log-level", EnvVars: []string{"LOG_LEVEL"}, Value: "info", Usage: "debug, info, warn or error"}

func withFlags(extra ...cli.Flag) []cli.Flag { return append(configFlags(), extra...) }

// env is what a command has connected to; close releases it.
type env struct {
	cfg *config.Config
	log *slog.Logger
	// kafkaClients makes every Kafka client of the command; kafka is the
	// connected one the command shares.
	kafkaClients *clients.Kafka
	kafka        *kgo.Client
	admin        *kadm.Client
	serde        *records.Serde
	temporal     client.Client
	metrics      metricsRegistry
	closers      []io.Closer
	// metricsURLs are where status reads freshness (its --metrics-url).
	metricsURLs []string

	dbMu sync.Mutex // dev's components open the database together
	db   *pgstore.Store
	// dbApplied are the migrations that opening db applied.
	dbApplied []int
}

// metricsRegistry is what a process's components register their metrics on
// and what its /metrics serves.
type metricsRegistry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

func (e *env) close() {
	for _, c := range e.closers {
		c.Close()
	}
	if e.db != nil {
		e.db.Close()
	}
	if e.temporal != nil {
		e.temporal.Close()
	}
	if e.kafka != nil {
		e.kafka.Close()
	}
}

// database returns the process's one PostgreSQL pool, opened on first use
// from DATABASE_DSN with the migrations applied: the sink, the collector,
// the product API and status share it.
func (e *env) database(ctx context.Context) (*pgstore.Store, error) {
	e.dbMu.Lock()
	defer e.dbMu.Unlock()
	if e.db == nil {
		db, applied, err := pgstore.Open(ctx, e.cfg.DatabaseDSN)
		if err != nil {
			return nil, err
		}
		e.db, e.dbApplied = db, applied
	}
	return e.db, nil
}

// connect reads the configuration and connects to what the command needs.
func connect(c *cli.Context, needKafka, needTemporal bool) (*env, error) {
	cfg, err := readConfig(c)
	if err != nil {
		return nil, err
	}
	logger, err := commandLogger(c)
	if err != nil {
		return nil, err
	}
	return connectWith(c.Context, cfg, logger, needKafka, needTemporal)
}

// commandLogger logs at --log-level for commands that have the flag, and
// only warnings for one-shot commands, whose output is their result.
func commandLogger(c *cli.Context) (*slog.Logger, error) {
	level := "warn"
	if c.IsSet("log-level") || (c.Command != nil && c.Command.HasName("dev")) || (c.Command != nil && c.Command.HasName("worker")) {
		level = c.String("log-level")
	}
	if level == "" {
		level = "info"
	}
	logger, err := telemetry.NewLogger(c.App.ErrWriter, level)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return logger, nil
}

func connectWith(ctx context.Context, cfg *config.Config, logger *slog.Logger, needKafka, needTemporal bool) (*env, error) {
	return connectOn(ctx, cfg, logger, telemetry.NewRegistry(), needKafka, needTemporal)
}

// connectOn is connectWith on a given registry, so a test can watch every
// metric the process's components register.
func connectOn(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg metricsRegistry, needKafka, needTemporal bool) (*env, error) {
	e := &env{cfg: cfg, log: logger, metrics: reg}
	var err error
	if e.serde, err = clients.NewSerde(cfg.SchemaRegistryURL); err != nil {
		return nil, err
	}
	if e.kafkaClients, err = clients.KafkaFromConfig(cfg); err != nil {
		return nil, err
	}
	if needKafka {
		if e.kafka, err = e.kafkaClients.Connect(ctx); err != nil {
			return nil, err
		}
		e.admin = kadm.NewClient(e.kafka)
	}
	if needTemporal {
		// The SDK logs routine worker events at info; keep them for debug.
		sdkLogger := logger
		if !logger.Enabled(ctx, slog.LevelDebug) {
			sdkLogger = telemetry.AtLeast(logger, slog.LevelWarn)
		}
		handler, closer := temporalmetrics.Handler(e.metrics)
		e.closers = append(e.closers, closer)
		o := temporalclient.FromConfig(cfg, sdkLogger)
		o.MetricsHandler = handler
		if e.temporal, err = temporalclient.Dial(ctx, o); err != nil {
			e.close()
			return nil, err
		}
	}
	return e, nil
}

// activities builds every activity family over the env's clients.
func (e *env) activities() (workers.Activities, error) {
	emulate, err := activities.NewEmulate(e.kafkaClients, e.admin, e.serde, e.metrics)
	if err != nil {
		e.log.Error("emulation activities not registered", "err", err)
	}
	connectors, err := environment.ConnectorConfigs()
	if err != nil {
		return workers.Activities{}, err
	}
	ops, err := workers.NewOperations(e.kafkaClients, e.admin, e.serde, e.cfg.Topics, e.metrics)
	if err != nil {
		return workers.Activities{}, err
	}
	return workers.Activities{
		Emulate: emulate,
		Bootstrap: &activities.Bootstrap{
			Kafka:      e.kafka,
			Registry:   e.serde.Registry(),
			Schemas:    e.serde.Schemas(),
			HTTP:       &http.Client{Timeout: 30 * time.Second},
			Connectors: connectors,
		},
		Filter:   &activities.Filter{Kafka: e.kafkaClients, Serde: e.serde, Topic: e.cfg.Topics.Filter},
		Backfill: ops.Backfill,
		Replay:   ops.Replay,
	}, nil
}
