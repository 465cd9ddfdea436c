package activities

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/sr"
	"go.temporal.io/sdk/testsuite"

	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

// newBootstrap runs kfake and srfake in process, as the embedded stack does.
func newBootstrap(t *testing.T) (*Bootstrap, *testsuite.TestActivityEnvironment) {
	t.Helper()
	kc := kafkatest.Start(t)
	b := &Bootstrap{Kafka: kc.Client(), Registry: kc.Serde.Registry(), Schemas: kc.Serde.Schemas()}
	env := activityEnv(b)
	return b, env
}

func runStep(t *testing.T, env *testsuite.TestActivityEnvironment, activity string, in any) (workflows.StepResult, error) {
	t.Helper()
	val, err := env.ExecuteActivity(activity, in)
	if err != nil {
		return workflows.StepResult{}, err
	}
	var res workflows.StepResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func outcomes(res workflows.StepResult) map[string]string {
	m := map[string]string{}
	for _, it := range res.Items {
		m[it.Name] = it.Outcome
	}
	return m
}

func TestEnsureTopicsCreatesThenChangesNothing(t *testing.T) {
	b, env := newBootstrap(t)
	in := workflows.EnsureTopicsInput{Topics: []workflows.TopicSpec{
		{Name: "products", Partitions: 4, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "delete"}},
		{Name: "filter", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"}},
	}}
	res, err := runStep(t, env, workflows.ActivityEnsureTopics, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(res); got["products"] != workflows.OutcomeCreated || got["filter"] != workflows.OutcomeCreated {
		t.Fatalf("first run: %+v", res.Items)
	}
	details, err := b.listTopics(context.Background(), "products", "filter")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["products"].Partitions); n != 4 {
		t.Fatalf("products has %d partitions, want 4", n)
	}
	res, err = runStep(t, env, workflows.ActivityEnsureTopics, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() {
		t.Fatalf("second run changed something: %+v", res.Items)
	}
	for _, it := range res.Items {
		if it.Outcome != workflows.OutcomeUnchanged {
			t.Errorf("second run: %s is %s (%s), want unchanged", it.Name, it.Outcome, it.Detail)
		}
	}
}

func TestEnsureTopicsReportsDriftAndRepairsOnlyWithForce(t *testing.T) {
	b, env := newBootstrap(t)
	ctx := context.Background()
	spec := workflows.TopicSpec{Name: "products", Partitions: 6, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"}}
	if _, err := runStep(t, env, workflows.ActivityEnsureTopics, workflows.EnsureTopicsInput{Topics: []workflows.TopicSpec{spec}}); err != nil {
		t.Fatal(err)
	}

	// Fewer partitions wanted: drift is reported, nothing is deleted.
	shrink := spec
	shrink.Partitions = 3
	res, err := runStep(t, env, workflows.ActivityEnsureTopics, workflows.EnsureTopicsInput{Topics: []workflows.TopicSpec{shrink}})
	if err != nil {
		t.Fatal(err)
	}
	if it := res.Items[0]; it.Outcome != workflows.OutcomeDrift || !strings.Contains(it.Detail, "has 6 partitions, want 3") {
		t.Fatalf("want drift naming the partitions, got %+v", it)
	}
	if d, _ := b.listTopics(ctx, "products"); len(d["products"].Partitions) != 6 {
		t.Fatalf("drift without --force changed the topic: %d partitions", len(d["products"].Partitions))
	}

	// More partitions and another policy wanted, with --force: repaired in place.
	grow := spec
	grow.Partitions = 8
	grow.Configs = map[string]string{"cleanup.policy": "delete"}
	res, err = runStep(t, env, workflows.ActivityEnsureTopics, workflows.EnsureTopicsInput{Topics: []workflows.TopicSpec{grow}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if it := res.Items[0]; it.Outcome != workflows.OutcomeChanged {
		t.Fatalf("want changed, got %+v", it)
	}
	if d, _ := b.listTopics(ctx, "products"); len(d["products"].Partitions) != 8 {
		t.Fatalf("after --force: %d partitions, want 8", len(d["products"].Partitions))
	}
	res, err = runStep(t, env, workflows.ActivityEnsureTopics, workflows.EnsureTopicsInput{Topics: []workflows.TopicSpec{grow}})
	if err != nil {
		t.Fatal(err)
	}
	if it := res.Items[0]; it.Outcome != workflows.OutcomeUnchanged {
		t.Fatalf("after repair: want unchanged, got %+v", it)
	}
}

func TestRegisterSchemas(t *testing.T) {
	b, env := newBootstrap(t)
	ctx := context.Background()
	in := workflows.RegisterSchemasInput{Schemas: []workflows.SchemaSpec{
		{Subject: "shop_products-value", Kind: string(records.KindProduct)},
		{Subject: "analytic_products_find-value", Kind: string(records.KindSearchPrompt)},
	}}
	res, err := runStep(t, env, workflows.ActivityRegisterSchemas, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(res); got["shop_products-value"] != workflows.OutcomeCreated || got["analytic_products_find-value"] != workflows.OutcomeCreated {
		t.Fatalf("first run: %+v", res.Items)
	}
	for _, r := range b.Registry.Compatibility(ctx, "shop_products-value") {
		if r.Err != nil || r.Level != sr.CompatBackward {
			t.Fatalf("subject compatibility: %v %v, want BACKWARD", r.Level, r.Err)
		}
	}
	res, err = runStep(t, env, workflows.ActivityRegisterSchemas, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() {
		t.Fatalf("second run changed something: %+v", res.Items)
	}
}

func TestRegisterSchemasEvolvesCompatiblyAndRefusesABreakingChange(t *testing.T) {
	b, env := newBootstrap(t)
	ctx := context.Background()
	// An older Product without description: ours adds it with a default, so
	// ours can read the old data (BACKWARD).
	older := `{"type":"record","name":"Product","namespace":"shopstream","fields":[
		{"name":"product_id","type":"string"},{"name":"mall_id","type":"string"},{"name":"name","type":"string"},
		{"name":"price","type":{"type":"record","name":"Price","fields":[{"name":"amount","type":"string"},{"name":"currency","type":"string"}]}},
		{"name":"created_at","type":{"type":"long","logicalType":"timestamp-millis"}},
		{"name":"updated_at","type":{"type":"long","logicalType":"timestamp-millis"}}]}`
	if _, err := b.Registry.CreateSchema(ctx, "evolving-value", sr.Schema{Schema: older, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	res, err := runStep(t, env, workflows.ActivityRegisterSchemas, workflows.RegisterSchemasInput{Schemas: []workflows.SchemaSpec{{Subject: "evolving-value", Kind: "Product"}}})
	if err != nil {
		t.Fatalf("a compatible change was refused: %v", err)
	}
	if it := res.Items[0]; it.Outcome != workflows.OutcomeChanged || !strings.Contains(it.Detail, "version 2") {
		t.Fatalf("want changed to version 2, got %+v", it)
	}

	// An older Product without mall_id: ours requires it with no default, so
	// ours cannot read the old data. srfake would accept it; we must not.
	breaking := strings.Replace(older, `{"name":"mall_id","type":"string"},`, "", 1)
	if _, err := b.Registry.CreateSchema(ctx, "broken-value", sr.Schema{Schema: breaking, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	_, err = runStep(t, env, workflows.ActivityRegisterSchemas, workflows.RegisterSchemasInput{Schemas: []workflows.SchemaSpec{{Subject: "broken-value", Kind: "Product"}}})
	if err == nil {
		t.Fatal("an incompatible schema was registered")
	}
	for _, want := range []string{"not BACKWARD compatible", "broken-value", "mall_id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if vs, _ := b.Registry.SubjectVersions(ctx, "broken-value"); len(vs) != 1 {
		t.Fatalf("subject has versions %v after a refused change, want only 1", vs)
	}
}

func TestOptionalStepsSaySkipped(t *testing.T) {
	_, env := newBootstrap(t)
	res, err := runStep(t, env, workflows.ActivityApplyConnectors, workflows.ApplyConnectorsInput{})
	if err != nil || res.Skipped != "KAFKA_CONNECT_URL not set on the worker" {
		t.Fatalf("connectors: %+v %v", res, err)
	}
	res, err = runStep(t, env, workflows.ActivityApplyKsqlMigrations, workflows.ApplyKsqlInput{})
	if err != nil || res.Skipped != "KSQLDB_URL not set on the worker" {
		t.Fatalf("ksql: %+v %v", res, err)
	}
}

func (b *Bootstrap) listTopics(ctx context.Context, names ...string) (kadm.TopicDetails, error) {
	b.Kafka.PurgeTopicsFromClient(names...)
	return b.admin().ListTopics(ctx, names...)
}
