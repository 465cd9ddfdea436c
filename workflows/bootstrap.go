package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// BootstrapWorkflowID is fixed, so two concurrent bootstraps are one
// execution (the client starts with the USE_EXISTING conflict policy).
const BootstrapWorkflowID = "shopstream-bootstrap"

// Bootstrap's steps, in the order they run; also the --only values.
const (
	StepTopics     = "topics"
	StepSchemas    = "schemas"
	StepConnectors = "connectors"
	StepKsql       = "ksql"
)

// BootstrapSteps lists every step in order.
var BootstrapSteps = []string{StepTopics, StepSchemas, StepConnectors, StepKsql}

// Activity names implemented by activities.Bootstrap.
const (
	ActivityEnsureTopics        = "EnsureTopics"
	ActivityRegisterSchemas     = "RegisterSchemas"
	ActivityApplyConnectors     = "ApplyConnectors"
	ActivityApplyKsqlMigrations = "ApplyKsqlMigrations"
)

// Outcomes of a step or of one item in it.
const (
	OutcomeCreated   = "created"
	OutcomeChanged   = "changed"
	OutcomeUnchanged = "unchanged"
	OutcomeDrift     = "drift"
	OutcomeSkipped   = "skipped"
)

// ErrTypeIncompatibleSchema marks a schema change that breaks BACKWARD
// compatibility; it is not retried.
const ErrTypeIncompatibleSchema = "IncompatibleSchema"

// ErrTypeInvalidInput marks input that retrying cannot fix.
const ErrTypeInvalidInput = "InvalidInput"

// BootstrapInput is what `shopstream bootstrap` asks for.
type BootstrapInput struct {
	// Steps to run; empty runs all of BootstrapSteps.
	Steps   []string
	Topics  EnsureTopicsInput
	Schemas RegisterSchemasInput
	// Connectors and Ksql carry what the steps apply; their endpoints are
	// the worker's own (an endpoint the worker lacks skips the step and
	// says so).
	Connectors ApplyConnectorsInput
	Ksql       ApplyKsqlInput
}

// TopicSpec is one topic as it should be.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
}

// EnsureTopicsInput asks to create missing topics and report drift on the
// others; Force also repairs drift, deleting and recreating a topic when
// nothing else can fix it.
type EnsureTopicsInput struct {
	Topics []TopicSpec
	Force  bool
}

// SchemaSpec registers one record kind's schema under one subject.
type SchemaSpec struct {
	Subject string
	Kind    string
}

// RegisterSchemasInput lists the subjects to register.
type RegisterSchemasInput struct {
	Schemas []SchemaSpec
}

// ApplyConnectorsInput is what the connectors step applies. The Kafka
// Connect endpoint is not part of it: its URL may carry credentials, and a
// workflow's input is kept in its history for anyone who can read the
// namespace; the worker takes it from its own KAFKA_CONNECT_URL.
type ApplyConnectorsInput struct {
	// Vars fill the ${NAME} placeholders of the connector configs.
	Vars map[string]string
}

// ApplyKsqlInput is what the ksqlDB step applies; the endpoint is the
// worker's own KSQLDB_URL, as for ApplyConnectorsInput.
type ApplyKsqlInput struct {
	// Vars fill the ${NAME} placeholders of the migration files (topic names).
	Vars map[string]string
}

// ItemResult is the outcome of one topic, subject, connector or migration.
type ItemResult struct {
	Name    string
	Outcome string
	Detail  string
}

// StepResult is the outcome of one step.
type StepResult struct {
	Step  string
	Items []ItemResult
	// Skipped says why the step did nothing, e.g. "KAFKA_CONNECT_URL not set
	// on the worker".
	Skipped string
}

// Changed says whether the step changed anything.
func (r StepResult) Changed() bool {
	for _, it := range r.Items {
		if it.Outcome == OutcomeCreated || it.Outcome == OutcomeChanged {
			return true
		}
	}
	return false
}

// BootstrapResult is the outcome of every step that ran.
type BootstrapResult struct {
	Steps []StepResult
}

// Changed says whether the bootstrap changed anything.
func (r BootstrapResult) Changed() bool {
	for _, s := range r.Steps {
		if s.Changed() {
			return true
		}
	}
	return false
}

// Validate checks the input before anything runs.
func (in BootstrapInput) Validate() error {
	for _, s := range in.Steps {
		if !contains(BootstrapSteps, s) {
			return fmt.Errorf("unknown bootstrap step %q: want one of %s", s, strings.Join(BootstrapSteps, ", "))
		}
	}
	for _, t := range in.Topics.Topics {
		if t.Name == "" {
			return fmt.Errorf("a topic has no name")
		}
		if t.Partitions < 1 {
			return fmt.Errorf("topic %s: partitions must be at least 1, got %d", t.Name, t.Partitions)
		}
		if t.ReplicationFactor < 1 {
			return fmt.Errorf("topic %s: replication factor must be at least 1, got %d", t.Name, t.ReplicationFactor)
		}
	}
	return nil
}

// Bootstrap reconciles the environment: topics, schemas, connectors, ksqlDB
// migrations, one activity each, in order. Every step is idempotent, so a
// second run reports that nothing changed.
func Bootstrap(ctx workflow.Context, in BootstrapInput) (BootstrapResult, error) {
	if err := in.Validate(); err != nil {
		return BootstrapResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	steps := in.Steps
	if len(steps) == 0 {
		steps = BootstrapSteps
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        15 * time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{ErrTypeIncompatibleSchema, ErrTypeInvalidInput},
		},
	})
	logger := workflow.GetLogger(ctx)
	var res BootstrapResult
	for _, step := range BootstrapSteps { // fixed order, whatever order --only gave
		if !contains(steps, step) {
			continue
		}
		var activity string
		var arg any
		switch step {
		case StepTopics:
			activity, arg = ActivityEnsureTopics, in.Topics
		case StepSchemas:
			activity, arg = ActivityRegisterSchemas, in.Schemas
		case StepConnectors:
			activity, arg = ActivityApplyConnectors, in.Connectors
		case StepKsql:
			activity, arg = ActivityApplyKsqlMigrations, in.Ksql
		}
		var out StepResult
		if err := workflow.ExecuteActivity(ctx, activity, arg).Get(ctx, &out); err != nil {
			return res, fmt.Errorf("bootstrap step %s: %w", step, err)
		}
		out.Step = step
		logger.Info("bootstrap step done", "step", step, "changed", out.Changed(), "skipped", out.Skipped)
		res.Steps = append(res.Steps, out)
	}
	return res, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
