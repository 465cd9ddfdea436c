package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/sink"
)

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
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			set := process.SinkSettings{Group: c.String("group"), BatchSize: c.Int("batch-size")}
			if set.Group == "" {
				return usageErr("--group (SINK_GROUP) is empty: give the sink's consumer group, e.g. %s", sink.DefaultGroup)
			}
			if set.BatchSize < 1 || set.BatchSize > 1_000_000 {
				return usageErr("--batch-size %d: want 1 to 1000000", set.BatchSize)
			}
			if cfg.DatabaseDSN == "" {
				if cfg.DatabaseDSN, err = process.DevDSN(cfg.DataDir); err != nil {
					return usageErr("--database-dsn (DATABASE_DSN) is not set and %v: set it to a PostgreSQL DSN, e.g. postgres://user:password@127.0.0.1:5432/shopstream, or start `shopstream dev`, which runs a sink on its own PostgreSQL", err)
				}
			}
			return process.RunSink(c.Context, cfg, logger, set, c.App.Writer)
		},
	}
}
