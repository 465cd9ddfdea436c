package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// Bootstrap implements the bootstrap workflow's activities.
type Bootstrap struct {
	Kafka    *kgo.Client
	Registry *sr.Client
	Schemas  *records.Schemas
	HTTP     *http.Client

	ksqlFiles fs.FS            // the ksqlDB migrations; nil: those built in (ksql.Files)
	now       func() time.Time // nil: time.Now
	// Connectors holds the Kafka Connect configs (environment.ConnectorConfigs).
	Connectors fs.FS
	// ConnectURL and KsqlURL are the worker's own endpoints (KAFKA_CONNECT_URL,
	// KSQLDB_URL), credentials included; empty skips the step. They never
	// travel in workflow input, which Temporal keeps in the history.
	ConnectURL string
	KsqlURL    string

	connectPoll time.Duration // how often to poll a connector's status; tests shorten it
}

func (b *Bootstrap) admin() *kadm.Client { return kadm.NewClient(b.Kafka) }

// EnsureTopics creates missing topics and reports drift on existing ones;
// with Force it repairs the drift.
func (b *Bootstrap) EnsureTopics(ctx context.Context, in workflows.EnsureTopicsInput) (workflows.StepResult, error) {
	names := make([]string, len(in.Topics))
	for i, t := range in.Topics {
		names[i] = t.Name
	}
	// The client caches topic metadata for admin requests for a few seconds;
	// a reconcile must see the topics as they are now, not as a run a moment
	// ago saw them.
	b.Kafka.PurgeTopicsFromClient(names...)
	details, err := b.admin().ListTopics(ctx, names...)
	if err != nil {
		return workflows.StepResult{}, fmt.Errorf("list topics %v: %w", names, err)
	}
	configs, err := b.describeConfigs(ctx, details)
	if err != nil {
		return workflows.StepResult{}, err
	}
	var res workflows.StepResult
	for _, want := range in.Topics {
		item, err := b.ensureTopic(ctx, want, details[want.Name], configs[want.Name], in.Force)
		if err != nil {
			return res, err
		}
		activity.GetLogger(ctx).Info("topic reconciled", "topic", want.Name, "outcome", item.Outcome, "detail", item.Detail)
		res.Items = append(res.Items, item)
	}
	return res, nil
}

func (b *Bootstrap) describeConfigs(ctx context.Context, details kadm.TopicDetails) (map[string]map[string]string, error) {
	var existing []string
	for name, d := range details {
		if d.Err == nil {
			existing = append(existing, name)
		}
	}
	out := make(map[string]map[string]string, len(existing))
	if len(existing) == 0 {
		return out, nil
	}
	rcs, err := b.admin().DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return nil, fmt.Errorf("describe configs of topics %v: %w", existing, err)
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("describe configs of topic %s: %w", rc.Name, rc.Err)
		}
		m := make(map[string]string, len(rc.Configs))
		for _, c := range rc.Configs {
			if c.Value != nil {
				m[c.Key] = *c.Value
			}
		}
		out[rc.Name] = m
	}
	return out, nil
}

func (b *Bootstrap) ensureTopic(ctx context.Context, want workflows.TopicSpec, have kadm.TopicDetail, haveCfg map[string]string, force bool) (workflows.ItemResult, error) {
	item := workflows.ItemResult{Name: want.Name}
	if errors.Is(have.Err, kerr.UnknownTopicOrPartition) || (have.Topic == "" && have.Err == nil) {
		if err := b.createTopic(ctx, want); err != nil {
			return item, err
		}
		item.Outcome, item.Detail = workflows.OutcomeCreated, fmt.Sprintf("%d partitions, replication factor %d%s", want.Partitions, want.ReplicationFactor, describeConfigs(want.Configs))
		return item, nil
	}
	if have.Err != nil {
		return item, fmt.Errorf("describe topic %s: %w", want.Name, have.Err)
	}
	var drift []string
	partitions := int32(len(have.Partitions))
	if partitions != want.Partitions {
		drift = append(drift, fmt.Sprintf("has %d partitions, want %d", partitions, want.Partitions))
	}
	var alter []kadm.AlterConfig
	for _, k := range sortedKeys(want.Configs) {
		if v := want.Configs[k]; haveCfg[k] != v {
			drift = append(drift, fmt.Sprintf("%s is %q, want %q", k, haveCfg[k], v))
			v := v
			alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
		}
	}
	if len(drift) == 0 {
		item.Outcome = workflows.OutcomeUnchanged
		return item, nil
	}
	if !force {
		item.Outcome = workflows.OutcomeDrift
		item.Detail = joinDetail(drift) + " (left as is; --force repairs it, recreating the topic if partitions must shrink)"
		return item, nil
	}
	switch {
	case partitions > want.Partitions:
		// Kafka cannot remove partitions: the only repair is a new topic.
		if _, err := b.admin().DeleteTopics(ctx, want.Name); err != nil {
			return item, fmt.Errorf("delete topic %s to recreate it: %w", want.Name, err)
		}
		if err := b.createTopic(ctx, want); err != nil {
			return item, err
		}
		item.Outcome, item.Detail = workflows.OutcomeChanged, "recreated (--force): "+joinDetail(drift)
		return item, nil
	case partitions < want.Partitions:
		resp, err := b.admin().UpdatePartitions(ctx, int(want.Partitions), want.Name)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return item, fmt.Errorf("add partitions to topic %s: %w", want.Name, err)
		}
	}
	if len(alter) > 0 {
		resp, err := b.admin().AlterTopicConfigs(ctx, alter, want.Name)
		if err == nil {
			for _, r := range resp {
				if r.Err != nil {
					err = r.Err
				}
			}
		}
		if err != nil {
			return item, fmt.Errorf("alter configs of topic %s: %w", want.Name, err)
		}
	}
	item.Outcome, item.Detail = workflows.OutcomeChanged, "repaired (--force): "+joinDetail(drift)
	return item, nil
}

func (b *Bootstrap) createTopic(ctx context.Context, t workflows.TopicSpec) error {
	cfg := make(map[string]*string, len(t.Configs))
	for k, v := range t.Configs {
		v := v
		cfg[k] = &v
	}
	resp, err := b.admin().CreateTopic(ctx, t.Partitions, t.ReplicationFactor, cfg, t.Name)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil // created concurrently; the next run reconciles it
	}
	if errors.Is(err, kerr.InvalidReplicationFactor) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("create topic %s: replication factor %d is more than the brokers can hold: lower --replication-factor", t.Name, t.ReplicationFactor),
			workflows.ErrTypeInvalidInput, err)
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", t.Name, err)
	}
	return nil
}

// RegisterSchemas registers each kind's schema under its subject with
// BACKWARD compatibility. The new schema is checked against the latest
// registered one with hamba/avro's own resolver first, because a registry
// such as srfake accepts anything; an incompatible change stops here and
// names the field.
func (b *Bootstrap) RegisterSchemas(ctx context.Context, in workflows.RegisterSchemasInput) (workflows.StepResult, error) {
	var res workflows.StepResult
	for _, spec := range in.Schemas {
		item, err := b.registerSchema(ctx, spec)
		if err != nil {
			return res, err
		}
		activity.GetLogger(ctx).Info("schema reconciled", "subject", spec.Subject, "outcome", item.Outcome, "detail", item.Detail)
		res.Items = append(res.Items, item)
	}
	return res, nil
}

func (b *Bootstrap) registerSchema(ctx context.Context, spec workflows.SchemaSpec) (workflows.ItemResult, error) {
	item := workflows.ItemResult{Name: spec.Subject}
	ours := b.Schemas.Schema(records.Kind(spec.Kind))
	if ours == nil {
		return item, temporal.NewNonRetryableApplicationError(fmt.Sprintf("subject %s: unknown record kind %q", spec.Subject, spec.Kind), workflows.ErrTypeInvalidInput, nil)
	}
	latest, err := b.Registry.SchemaByVersion(ctx, spec.Subject, -1)
	existed := err == nil
	switch {
	case isNotFound(err):
		// A new subject: nothing to be compatible with yet.
	case err != nil:
		return item, fmt.Errorf("read latest schema of subject %s: %w", spec.Subject, err)
	default:
		theirs, perr := avro.Parse(latest.Schema.Schema)
		if perr != nil {
			return item, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("subject %s version %d does not parse as Avro: %v", spec.Subject, latest.Version, perr), workflows.ErrTypeIncompatibleSchema, perr)
		}
		if theirs.Fingerprint() == ours.Fingerprint() {
			item.Outcome, item.Detail = workflows.OutcomeUnchanged, fmt.Sprintf("version %d, id %d", latest.Version, latest.ID)
			return item, b.ensureBackward(ctx, spec.Subject)
		}
		// BACKWARD: consumers with the new schema must read data written
		// with the latest registered one.
		if cerr := avro.NewSchemaCompatibility().Compatible(ours, theirs); cerr != nil {
			return item, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("schema %s is not BACKWARD compatible with subject %s version %d: %v (add new fields with a default, never remove or retype one)",
					spec.Kind, spec.Subject, latest.Version, cerr), workflows.ErrTypeIncompatibleSchema, cerr)
		}
	}
	if err := b.ensureBackward(ctx, spec.Subject); err != nil {
		return item, err
	}
	ss, err := b.Registry.CreateSchema(ctx, spec.Subject, sr.Schema{Schema: b.Schemas.Text(records.Kind(spec.Kind)), Type: sr.TypeAvro})
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.ErrorCode == 409 {
			return item, temporal.NewNonRetryableApplicationError(fmt.Sprintf("the registry refused schema %s under subject %s as incompatible: %s", spec.Kind, spec.Subject, re.Message), workflows.ErrTypeIncompatibleSchema, err)
		}
		return item, fmt.Errorf("register schema %s under subject %s: %w", spec.Kind, spec.Subject, err)
	}
	item.Outcome = workflows.OutcomeCreated
	if existed {
		item.Outcome = workflows.OutcomeChanged
	}
	item.Detail = fmt.Sprintf("version %d, id %d", ss.Version, ss.ID)
	return item, nil
}

func (b *Bootstrap) ensureBackward(ctx context.Context, subject string) error {
	for _, r := range b.Registry.Compatibility(ctx, subject) {
		if r.Err == nil && r.Level == sr.CompatBackward {
			return nil
		}
	}
	for _, r := range b.Registry.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject) {
		if r.Err != nil {
			return fmt.Errorf("set BACKWARD compatibility on subject %s: %w", subject, r.Err)
		}
	}
	return nil
}

// ApplyConnectors applies the Kafka Connect sink configs when a Connect URL
// is set.
func (b *Bootstrap) ApplyConnectors(ctx context.Context, in workflows.ApplyConnectorsInput) (workflows.StepResult, error) {
	if b.ConnectURL == "" {
		return workflows.StepResult{Skipped: "KAFKA_CONNECT_URL not set on the worker"}, nil
	}
	return b.applyConnectors(ctx, in)
}

// ApplyKsqlMigrations applies the ksqlDB migrations of ksql/ when a ksqlDB
// URL is set: in version order, each once, recorded with its checksum (see
// ksql.go).
func (b *Bootstrap) ApplyKsqlMigrations(ctx context.Context, in workflows.ApplyKsqlInput) (workflows.StepResult, error) {
	if b.KsqlURL == "" {
		return workflows.StepResult{Skipped: "KSQLDB_URL not set on the worker"}, nil
	}
	return b.applyKsql(ctx, in)
}

func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || re.ErrorCode == 40401 || re.ErrorCode == 40402)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describeConfigs(m map[string]string) string {
	s := ""
	for _, k := range sortedKeys(m) {
		s += ", " + k + "=" + m[k]
	}
	return s
}

func joinDetail(parts []string) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += "; "
		}
		s += p
	}
	return s
}
