package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// topicSettings are the bootstrap flags that shape topics.
type topicSettings struct {
	partitions        int32
	replicationFactor int16
	force             bool
}

func topicFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "partitions", EnvVars: []string{"TOPIC_PARTITIONS"}, Value: 6, Usage: "partitions of each data topic (the control topics have 1)", Category: "Topics"},
		&cli.IntFlag{Name: "replication-factor", EnvVars: []string{"TOPIC_REPLICATION_FACTOR"}, Value: 1, Usage: "replication factor of every topic (3 on the external stack)", Category: "Topics"},
	}
}

func readTopicSettings(c *cli.Context) (topicSettings, error) {
	p, rf := c.Int("partitions"), c.Int("replication-factor")
	if p < 1 || p > 10000 {
		return topicSettings{}, usageErr("--partitions %d: want 1 to 10000", p)
	}
	if rf < 1 || rf > 32 {
		return topicSettings{}, usageErr("--replication-factor %d: want 1 to 32 (and no more than the brokers)", rf)
	}
	return topicSettings{partitions: int32(p), replicationFactor: int16(rf), force: c.Bool("force")}, nil
}

// bootstrapInput derives the whole desired environment from the
// configuration: every topic with its policy, and every subject's schema.
func bootstrapInput(cfg *config.Config, ts topicSettings, steps []string) workflows.BootstrapInput {
	t := cfg.Topics
	compact := map[string]string{"cleanup.policy": "compact"}
	del := map[string]string{"cleanup.policy": "delete"}
	spec := func(name string, partitions int32, configs map[string]string) workflows.TopicSpec {
		return workflows.TopicSpec{Name: name, Partitions: partitions, ReplicationFactor: ts.replicationFactor, Configs: configs}
	}
	return workflows.BootstrapInput{
		Steps: steps,
		Topics: workflows.EnsureTopicsInput{Force: ts.force, Topics: []workflows.TopicSpec{
			spec(t.Products, ts.partitions, del),
			spec(t.CompleteProducts, ts.partitions, compact),
			spec(t.Filtered, ts.partitions, compact),
			spec(t.Find, ts.partitions, del),
			spec(t.Recommendations, ts.partitions, compact),
			spec(t.DLQ, ts.partitions, del),
			// One partition: every streamer instance reads the whole history
			// in order, and compaction keeps only the latest state.
			spec(t.Filter, 1, compact),
			spec(t.FilterApplied, 1, compact),
			spec(t.DLQReplayed, 1, compact),
		}},
		Schemas: workflows.RegisterSchemasInput{Schemas: []workflows.SchemaSpec{
			{Subject: records.Subject(t.Products), Kind: string(records.KindProduct)},
			{Subject: records.Subject(t.Filtered), Kind: string(records.KindProduct)},
			{Subject: records.Subject(t.CompleteProducts), Kind: string(records.KindCompleteProduct)},
			{Subject: records.Subject(t.Find), Kind: string(records.KindSearchPrompt)},
			{Subject: records.Subject(t.Recommendations), Kind: string(records.KindRecommendation)},
			{Subject: records.Subject(t.Filter), Kind: string(records.KindFilterState)},
		}},
		Connectors: workflows.ApplyConnectorsInput{ConnectURL: cfg.KafkaConnectURL, Vars: connectorVars(cfg)},
		Ksql: workflows.ApplyKsqlInput{KsqlURL: cfg.KsqlDBURL, Vars: map[string]string{
			"filtered_topic": t.Filtered, "find_topic": t.Find, "recom_topic": t.Recommendations,
		}},
	}
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
		)...),
		Action: func(c *cli.Context) error {
			ts, err := readTopicSettings(c)
			if err != nil {
				return err
			}
			var steps []string
			for _, s := range c.StringSlice("only") {
				for _, p := range strings.Split(s, ",") {
					if p = strings.TrimSpace(p); p != "" {
						steps = append(steps, p)
					}
				}
			}
			e, err := connect(c, false, true)
			if err != nil {
				return err
			}
			defer e.close()
			in := bootstrapInput(e.cfg, ts, steps)
			if err := in.Validate(); err != nil {
				return usageErr("%v", err)
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			_, err = runBootstrap(ctx, e.temporal, e.cfg, in, c.App.Writer, true)
			return err
		},
	}
}

// runBootstrap starts (or joins) the Bootstrap workflow, waits for it and
// prints what each step did.
func runBootstrap(ctx context.Context, tc client.Client, cfg *config.Config, in workflows.BootstrapInput, w io.Writer, warnNoWorker bool) (workflows.BootstrapResult, error) {
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.BootstrapWorkflowID,
		TaskQueue:                cfg.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionTimeout: 15 * time.Minute,
	}, workflows.Bootstrap, in)
	if err != nil {
		return workflows.BootstrapResult{}, fmt.Errorf("start the bootstrap workflow: %w", err)
	}
	fmt.Fprintf(w, "bootstrap: workflow %s run %s\n", run.GetID(), run.GetRunID())
	if warnNoWorker {
		warnIfNoWorker(ctx, tc, cfg, w)
	}
	var res workflows.BootstrapResult
	err = run.Get(ctx, &res)
	printBootstrap(w, res)
	fmt.Fprintf(w, "Web UI: %s\n", cfg.WorkflowURL(run.GetID(), run.GetRunID()))
	if err != nil {
		return res, fmt.Errorf("bootstrap failed: %w", err)
	}
	if res.Changed() {
		fmt.Fprintln(w, "bootstrap: done, the environment was changed")
	} else {
		fmt.Fprintln(w, "bootstrap: done, nothing changed")
	}
	return res, nil
}

func printBootstrap(w io.Writer, res workflows.BootstrapResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range res.Steps {
		if s.Skipped != "" {
			fmt.Fprintf(tw, "  %s\t\tskipped: %s\n", s.Step, s.Skipped)
			continue
		}
		fmt.Fprintf(tw, "  %s\t\t\n", s.Step)
		for _, it := range s.Items {
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", it.Name, it.Outcome, it.Detail)
		}
	}
	tw.Flush()
}

// warnIfNoWorker tells the user when nothing polls the task queue, instead of
// letting the command wait in silence.
func warnIfNoWorker(ctx context.Context, tc client.Client, cfg *config.Config, w io.Writer) {
	resp, err := tc.DescribeTaskQueue(ctx, cfg.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err == nil && len(resp.GetPollers()) == 0 {
		fmt.Fprintf(w, "bootstrap: no worker polls task queue %q yet: the workflow waits for `shopstream dev` or `shopstream worker`\n", cfg.TaskQueue)
	}
}
