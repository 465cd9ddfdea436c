// Package process is what one shopstream process holds and runs: its
// configuration, logger and metrics registry, the clients built once and
// shared by its parts (Kafka, the schema registry, Temporal, PostgreSQL),
// and the long-running components a command runs over them under
// supervise, with /metrics and /readyz. A command parses its flags and
// calls one function here.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/clients/temporalclient"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/pgstore"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/internal/telemetry"
	"github.com/shopstream/shopstream/internal/telemetry/temporalmetrics"
)

// Registry is what a process's components register their metrics on and
// what its /metrics serves.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Needs says which clients Connect connects at once.
type Needs uint8

const (
	// NeedKafka connects a Kafka client (Env.Client) and an admin over it.
	NeedKafka Needs = 1 << iota
	// NeedTemporal dials Temporal (Env.Temporal).
	NeedTemporal
)

// Env is what a process has connected to; Close releases it.
type Env struct {
	Config *config.Config
	Logger *slog.Logger
	// Kafka makes every Kafka client of the process; Client is the
	// connected one its parts share, Admin an admin client over it.
	Kafka    *clients.Kafka
	Client   *kgo.Client
	Admin    *kadm.Client
	Serde    *records.Serde
	Temporal client.Client
	Metrics  Registry
	// Principals give components a Kafka principal of their own (by
	// acls component name); the others use Kafka.
	Principals map[string]*clients.Kafka
	// principalClients are the connected clients of Principals.
	principalMu      sync.Mutex
	principalClients map[string]*kgo.Client

	closers []io.Closer

	dbMu sync.Mutex // dev's components open the database together
	db   *pgstore.Store
	// dbApplied are the migrations that opening db applied.
	dbApplied []int
}

// Connect builds the process's clients from cfg and connects what needs
// asks for, so an unreachable service is an error now, naming its address.
// Components register their metrics on reg (telemetry.NewRegistry(), or a
// test's registry that watches them).
func Connect(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg Registry, needs Needs) (*Env, error) {
	e := &Env{Config: cfg, Logger: logger, Metrics: reg}
	var err error
	if e.Serde, err = clients.NewSerdeWith(clients.RegistryFromConfig(cfg)); err != nil {
		return nil, err
	}
	if e.Kafka, err = clients.KafkaFromConfig(cfg, logger); err != nil {
		return nil, err
	}
	if needs&NeedKafka != 0 {
		if e.Client, err = e.Kafka.Connect(ctx); err != nil {
			return nil, err
		}
		e.Admin = kadm.NewClient(e.Client)
	}
	if needs&NeedTemporal != 0 {
		// The SDK logs routine worker events at info; keep them for debug.
		sdkLogger := logger
		if !logger.Enabled(ctx, slog.LevelDebug) {
			sdkLogger = telemetry.AtLeast(logger, slog.LevelWarn)
		}
		handler, closer := temporalmetrics.Handler(e.Metrics)
		e.closers = append(e.closers, closer)
		o := temporalclient.FromConfig(cfg, sdkLogger)
		o.MetricsHandler = handler
		if e.Temporal, err = temporalclient.Dial(ctx, o); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// Close releases every client the process connected.
func (e *Env) Close() {
	for _, c := range e.closers {
		c.Close()
	}
	if e.db != nil {
		e.db.Close()
	}
	if e.Temporal != nil {
		e.Temporal.Close()
	}
	for _, cl := range e.principalClients {
		cl.Close()
	}
	if e.Client != nil {
		e.Client.Close()
	}
}

// ConnectKafka connects the shared Kafka client on first use, for a command
// (status) that reports an unreachable Kafka as a problem instead of
// failing before it prints anything.
func (e *Env) ConnectKafka(ctx context.Context) (*kgo.Client, error) {
	if e.Client == nil {
		cl, err := e.Kafka.Connect(ctx)
		if err != nil {
			return nil, err
		}
		e.Client, e.Admin = cl, kadm.NewClient(cl)
	}
	return e.Client, nil
}

// Database returns the process's one PostgreSQL pool, opened on first use
// from DATABASE_DSN with the migrations applied: the sink, the collector,
// the product API and status share it.
func (e *Env) Database(ctx context.Context) (*pgstore.Store, error) {
	e.dbMu.Lock()
	defer e.dbMu.Unlock()
	if e.db == nil {
		db, applied, err := pgstore.Open(ctx, e.Config.DatabaseDSN)
		if err != nil {
			return nil, err
		}
		e.db, e.dbApplied = db, applied
	}
	return e.db, nil
}

// DevDSN reads the DSN that `shopstream dev` saved for its own PostgreSQL
// under dataDir.
func DevDSN(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "pg", "dsn")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist (no `shopstream dev` PostgreSQL)", p)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
