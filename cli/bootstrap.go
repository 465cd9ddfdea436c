package main

import (
	"context"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/bootstrap"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/workflows"
)

func topicFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "partitions", EnvVars: []string{"TOPIC_PARTITIONS"}, Value: 6, Usage: "partitions of each data topic (the control topics have 1)", Category: "Topics"},
		&cli.IntFlag{Name: "replication-factor", EnvVars: []string{"TOPIC_REPLICATION_FACTOR"}, Value: 1, Usage: "replication factor of every topic (3 on the external stack)", Category: "Topics"},
	}
}

func readTopicSettings(c *cli.Context) (bootstrap.Topics, error) {
	p, rf := c.Int("partitions"), c.Int("replication-factor")
	if p < 1 || p > 10000 {
		return bootstrap.Topics{}, usageErr("--partitions %d: want 1 to 10000", p)
	}
	if rf < 1 || rf > 32 {
		return bootstrap.Topics{}, usageErr("--replication-factor %d: want 1 to 32 (and no more than the brokers)", rf)
	}
	return bootstrap.Topics{Partitions: int32(p), ReplicationFactor: int16(rf), Force: c.Bool("force")}, nil
}

func bootstrapCommand() *cli.Command {
	return &cli.Command{
		Name:  "bootstrap",
		Usage: "create or reconcile topics, schemas, connectors and ksqlDB migrations (a Temporal workflow)",
		Description: "Runs the Bootstrap workflow (fixed id " + workflows.BootstrapWorkflowID + ", so concurrent runs are one) and\n" +
			"prints each step's outcome: created, changed, unchanged, drift or skipped. A second run changes nothing.\n" +
			"Existing topics are never deleted unless --force is given.\n\n" +
			"Examples:\n  shopstream bootstrap\n  shopstream bootstrap --only topics --partitions 12\n  shopstream bootstrap --only schemas",
		Flags: withFlags(append(topicFlags(),
			&cli.StringSliceFlag{Name: "only", Usage: "run only these steps: " + strings.Join(workflows.BootstrapSteps, ", ") + " (repeat or comma-separate)"},
			&cli.BoolFlag{Name: "force", Usage: "repair drift: add partitions, reset configs, recreate a topic that has too many partitions (deletes its data)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long to wait for the workflow"},
			&cli.BoolFlag{Name: "acls", Usage: "first apply the Kafka ACLs of each component's principal (environment/acls.md) as this command's principal, an admin; drift is reported, deleted only with --force"},
			&cli.StringSliceFlag{Name: "acl-users", EnvVars: []string{"ACL_USERS"}, Usage: "component=user pairs naming the SASL users of the ACL table (default: shopstream-<component>)"},
		)...),
		Action: func(c *cli.Context) error {
			ts, err := readTopicSettings(c)
			if err != nil {
				return err
			}
			var steps []string
			for _, s := range c.StringSlice("only") {
				steps = append(steps, config.SplitList(s)...)
			}
			users, err := acls.ParseUsers(c.StringSlice("acl-users"))
			if err != nil {
				return usageErr("--acl-users %v", err)
			}
			needs := process.NeedTemporal
			if c.Bool("acls") {
				needs |= process.NeedKafka
			}
			e, err := connect(c, needs)
			if err != nil {
				return err
			}
			defer e.Close()
			in := bootstrap.Input(e.Config, ts, steps)
			if err := in.Validate(); err != nil {
				return usageErr("%v", err)
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			if c.Bool("acls") {
				if _, err := bootstrap.ApplyACLs(ctx, e.Admin, e.Config, users, ts.Force, c.App.Writer); err != nil {
					return err
				}
			}
			_, err = bootstrap.Run(ctx, e.Temporal, e.Config, in, c.App.Writer, true)
			return err
		},
	}
}
