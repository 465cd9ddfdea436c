// Package bootstrap is the client's side of the Bootstrap workflow: the
// whole desired environment (topics with their policies, every subject's
// schema, connectors, ksqlDB migrations) derived from the configuration,
// the run of the workflow, and its outcome printed step by step.
package bootstrap

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// Topics are the settings that shape the topics.
type Topics struct {
	Partitions        int32
	ReplicationFactor int16
	// Force repairs drift, deleting a topic's data if it must.
	Force bool
}

// Input derives the whole desired environment from the configuration:
// every topic with its policy, and every subject's schema; steps limits
// the run to some of workflows.BootstrapSteps (all when empty).
func Input(cfg *config.Config, ts Topics, steps []string) workflows.BootstrapInput {
	t := cfg.Topics
	compact := map[string]string{"cleanup.policy": "compact"}
	del := map[string]string{"cleanup.policy": "delete"}
	spec := func(name string, partitions int32, configs map[string]string) workflows.TopicSpec {
		return workflows.TopicSpec{Name: name, Partitions: partitions, ReplicationFactor: ts.ReplicationFactor, Configs: configs}
	}
	return workflows.BootstrapInput{
		Steps: steps,
		Topics: workflows.EnsureTopicsInput{Force: ts.Force, Topics: []workflows.TopicSpec{
			spec(t.Products, ts.Partitions, del),
			spec(t.CompleteProducts, ts.Partitions, compact),
			spec(t.Filtered, ts.Partitions, compact),
			spec(t.Find, ts.Partitions, del),
			spec(t.Recommendations, ts.Partitions, compact),
			spec(t.DLQ, ts.Partitions, del),
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
		Connectors: workflows.ApplyConnectorsInput{Vars: connectorVars(t)},
		Ksql: workflows.ApplyKsqlInput{Vars: map[string]string{
			"filtered_topic": t.Filtered, "find_topic": t.Find, "recom_topic": t.Recommendations,
		}},
	}
}

// connectorVars fill the ${NAME} placeholders of environment/connect/*.json:
// the topic names as configured, under the seed's env var names.
func connectorVars(t records.Topics) map[string]string {
	return map[string]string{
		"PRODUCT_TOPIC":                   t.Products,
		"PRODUCT_WITH_FULL_IMG_SET_TOPIC": t.CompleteProducts,
		"PRODUCT_FILTERED_TOPIC":          t.Filtered,
		"PRODUCT_FIND_TOPIC":              t.Find,
		"PERSONAL_RECOM_TOPIC":            t.Recommendations,
		"DLQ_TOPIC":                       t.DLQ,
	}
}

// Run starts (or joins) the Bootstrap workflow, waits for it and prints
// what each step did; warnNoWorker first says so when no worker polls the
// task queue, instead of letting the command wait in silence.
func Run(ctx context.Context, tc client.Client, cfg *config.Config, in workflows.BootstrapInput, w io.Writer, warnNoWorker bool) (workflows.BootstrapResult, error) {
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
		WarnIfNoWorker(ctx, tc, cfg, w, "bootstrap")
	}
	var res workflows.BootstrapResult
	err = run.Get(ctx, &res)
	printResult(w, res)
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

func printResult(w io.Writer, res workflows.BootstrapResult) {
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

// WarnIfNoWorker tells the user, in the words of command, when nothing polls
// the task queue, instead of letting a workflow wait in silence.
func WarnIfNoWorker(ctx context.Context, tc client.Client, cfg *config.Config, w io.Writer, command string) {
	resp, err := tc.DescribeTaskQueue(ctx, cfg.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err == nil && len(resp.GetPollers()) == 0 {
		fmt.Fprintf(w, "%s: no worker polls task queue %q yet: the workflow waits for `shopstream dev` or `shopstream worker`\n", command, cfg.TaskQueue)
	}
}

// ApplyACLs is bootstrap's acls step: it applies the ACL table of every
// component's principal (internal/acls) with adm and prints the outcome.
// It runs in the bootstrap command itself, not as an activity: it needs an
// admin's credentials, which the worker must not hold, and the worker
// needs its own ACLs before it can create the topics.
func ApplyACLs(ctx context.Context, adm *kadm.Client, cfg *config.Config, users map[string]string, force bool, w io.Writer) (workflows.StepResult, error) {
	res, err := acls.Apply(ctx, adm, acls.All(users, cfg.Topics), force)
	printResult(w, workflows.BootstrapResult{Steps: []workflows.StepResult{res}})
	if err != nil {
		return res, fmt.Errorf("bootstrap acls: %w", err)
	}
	return res, nil
}
