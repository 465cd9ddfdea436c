package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/sink"
	"github.com/shopstream/shopstream/internal/telemetry"
)

type sinkSettings struct {
	group     string
	batchSize int
}

func sinkCommand() *cli.Command {
	return &cli.Command{
		Name:  "sink",
		Usage: "materialise the topics into PostgreSQL tables, exactly once (long-running)",
		Description: "A consumer group that writes shop_products, products_with_full_img_set, analytic_products_filtered,\n" +
			"analytic_products_find and personal_recom into the tables products, complete_products,\n" +
			"filtered_products, searches and recommendations: upsert by key, delete on tombstone. Each poll is one\n" +
			"transaction that also stores the consumed offsets, and the sink resumes from them, so a crash loses and\n" +
			"repeats nothing. Records that cannot be decoded or stored go to the dead-letter topic (--dlq-topic).\n" +
			"Schema migrations are applied at start. `shopstream dev` runs one inside. Stops cleanly on SIGINT/SIGTERM.\n\n" +
			"Examples:\n  shopstream sink --database-dsn postgres://user:pass@db:5432/shopstream\n" +
			"  DATABASE_DSN=postgres://... shopstream sink --batch-size 10000",
		Flags: withFlags(logFlag,
			&cli.StringFlag{Name: "group", EnvVars: []string{"SINK_GROUP"}, Value: sink.DefaultGroup, Usage: "consumer group; its offsets are stored in PostgreSQL"},
			&cli.IntFlag{Name: "batch-size", EnvVars: []string{"SINK_BATCH_SIZE"}, Value: 5000, Usage: "most records written in one transaction"},
		),
		Action: func(c *cli.Context) error {
			cfg, err := readConfig(c)
			if err != nil {
				return err
			}
			set := sinkSettings{group: c.String("group"), batchSize: c.Int("batch-size")}
			if set.group == "" {
				return usageErr("--group (SINK_GROUP) is empty: give the sink's consumer group, e.g. %s", sink.DefaultGroup)
			}
			if set.batchSize < 1 || set.batchSize > 1_000_000 {
				return usageErr("--batch-size %d: want 1 to 1000000", set.batchSize)
			}
			if cfg.DatabaseDSN == "" {
				if cfg.DatabaseDSN, err = devDSN(cfg.DataDir); err != nil {
					return usageErr("--database-dsn (DATABASE_DSN) is not set and %v: set it to a PostgreSQL DSN, e.g. postgres://user:password@127.0.0.1:5432/shopstream, or start `shopstream dev`, which runs a sink on its own PostgreSQL", err)
				}
			}
			// A long-running command: info by default, like dev and worker.
			logger, err := telemetry.NewLogger(c.App.ErrWriter, c.String("log-level"))
			if err != nil {
				return usageErr("%v", err)
			}
			e, err := connectWith(c.Context, cfg, logger, false, false)
			if err != nil {
				return err
			}
			defer e.close()
			addr, err := telemetry.Serve(c.Context, cfg.MetricsAddrFor("sink"), e.metrics, nil)
			if err != nil {
				return err
			}
			if addr != "" {
				fmt.Fprintf(c.App.Writer, "sink: /metrics on http://%s/metrics\n", addr)
			}
			return runSink(c.Context, e, set, c.App.Writer)
		},
	}
}

// runSink opens the process's database (applying migrations), joins the
// group and writes until ctx ends.
func runSink(ctx context.Context, e *env, set sinkSettings, out io.Writer) error {
	store, err := e.database(ctx)
	if err != nil {
		return err
	}
	s, err := sink.New(sink.Options{Kafka: e.kafkaClients, Group: set.group, Topics: e.cfg.Topics, Store: store, Serde: e.serde,
		Registerer: e.metrics, Logger: e.log, BatchSize: set.batchSize})
	if err != nil {
		return err
	}
	db := store.Pool.Config().ConnConfig
	fmt.Fprintf(out, "sink: group %s writes %s into PostgreSQL at %s:%d/%s (migrations applied now: %d)\n",
		set.group, strings.Join(s.Topics(), ", "), db.Host, db.Port, db.Database, len(e.dbApplied))
	return s.Run(ctx)
}

// devDSN reads the DSN that `shopstream dev` saved for its own PostgreSQL.
func devDSN(dataDir string) (string, error) {
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
