package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/devstack"
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run the embedded stack: Kafka (kfake), a schema registry (srfake), the Temporal dev server with its Web UI, and every shopstream component",
		Description: "No Docker needed. State is kept under --data-dir (.data), so a restart keeps topics, records,\n" +
			"offsets, schemas and workflow history. Any part whose address points elsewhere (KAFKA_BROKERS,\n" +
			"SCHEMA_REGISTRY_URL, TEMPORAL_ADDRESS) is used instead of started. Ctrl-C stops everything.\n\n" +
			"Examples:\n  shopstream dev            # then, in another terminal: shopstream bootstrap\n" +
			"  shopstream dev --secure   # then: . .data/secure.env && shopstream status",
		Flags: withFlags(append(topicFlags(), logFlag,
			&cli.BoolFlag{Name: "no-bootstrap", Usage: "do not run the bootstrap workflow once the stack is up"},
			&cli.StringFlag{Name: "temporal-cli", EnvVars: []string{"TEMPORAL_CLI"}, Usage: "path of the Temporal CLI (default: ./bin/temporal, built by `make temporal`)"},
			&cli.BoolFlag{Name: "secure", Usage: "Kafka on TLS with SASL/SCRAM-SHA-512 and ACLs (one user per component, an admin for bootstrap), the registry on HTTPS with basic auth; writes <data-dir>/secure.env for the other commands"},
			&cli.BoolFlag{Name: "untuned-temporal", Hidden: true, Usage: "leave the dev server's dynamic config at its defaults (to measure what the tuning buys)"},
			&cli.StringFlag{Name: "fetch-allow-hosts", EnvVars: []string{"IMAGE_FETCH_ALLOW_HOSTS"}, Usage: "comma-separated host:port that image URLs may name although they are on loopback, besides dev's own image server"},
		)...),
		Action: func(c *cli.Context) error {
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			ts, err := readTopicSettings(c)
			if err != nil {
				return err
			}
			return devstack.Run(c.Context, devstack.Options{
				Config: cfg, Logger: logger, Topics: ts, NoBootstrap: c.Bool("no-bootstrap"),
				TemporalCLI: c.String("temporal-cli"), UntunedTemporal: c.Bool("untuned-temporal"), Secure: c.Bool("secure"),
				FetchAllowHosts: config.SplitList(c.String("fetch-allow-hosts")),
			}, c.App.Writer)
		},
	}
}
