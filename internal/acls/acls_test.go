package acls_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/workflows"
)

func outcomes(res workflows.StepResult) map[string]int {
	out := map[string]int{}
	for _, it := range res.Items {
		out[it.Outcome]++
	}
	return out
}

// Applying the table creates every rule once; a second run changes
// nothing; an ACL nobody asked for is drift, reported and left alone until
// --force deletes it.
func TestApplyCreatesReportsDriftAndDeletesOnlyWhenForced(t *testing.T) {
	kc := kafkatest.Start(t, kafkatest.Secured(kafkatest.Secure{Mechanism: config.MechanismScram512, ACLs: true}))
	adm := kc.Admin()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rules := acls.All(nil, records.DefaultTopics())
	res, err := acls.Apply(ctx, adm, rules, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := outcomes(res); o[workflows.OutcomeCreated] != len(rules) || len(o) != 1 {
		t.Fatalf("first apply: %v, want %d created", o, len(rules))
	}
	res, err = acls.Apply(ctx, adm, rules, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := outcomes(res); o[workflows.OutcomeUnchanged] != len(rules) || len(o) != 1 {
		t.Fatalf("second apply: %v, want all unchanged", o)
	}
	extra := kadm.NewACLs().Allow("User:shopstream-api").Topics("shop_products_dlq").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := adm.CreateACLs(ctx, extra); err != nil {
		t.Fatal(err)
	}
	res, err = acls.Apply(ctx, adm, rules, false)
	if err != nil {
		t.Fatal(err)
	}
	var drift []string
	for _, it := range res.Items {
		if it.Outcome == workflows.OutcomeDrift {
			drift = append(drift, it.Name+" "+it.Detail)
		}
	}
	if len(drift) != 1 || !strings.Contains(drift[0], "User:shopstream-api READ topic shop_products_dlq") || !strings.Contains(drift[0], "--force") {
		t.Fatalf("drift %v, want the one extra ACL", drift)
	}
	if _, err := acls.Apply(ctx, adm, rules, true); err != nil {
		t.Fatal(err)
	}
	res, err = acls.Apply(ctx, adm, rules, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := outcomes(res); o[workflows.OutcomeDrift] != 0 {
		t.Fatalf("after --force: %v, want no drift", o)
	}
}

// A principal that lacks one ACL fails its check at start with a message
// naming the operation and the resource; one that has its rules passes.
func TestCheckNamesTheMissingOperationAndResource(t *testing.T) {
	topics := records.DefaultTopics()
	kc := kafkatest.Start(t, kafkatest.Secured(kafkatest.Secure{TLS: true, Mechanism: config.MechanismScram256, ACLs: true, Users: []string{"shopstream-collector"}}),
		kafkatest.SeedTopics(3, topics.Products, topics.CompleteProducts, topics.DLQ))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rules := acls.Own(acls.Collector, "shopstream-collector", topics)
	var granted []acls.Rule
	for _, r := range rules {
		// Everything but writing the complete-products topic.
		if !(r.Resource == kmsg.ACLResourceTypeTopic && r.Name == topics.CompleteProducts && r.Operation == kmsg.ACLOperationWrite) {
			granted = append(granted, r)
		}
	}
	if _, err := acls.Apply(ctx, kc.Admin(), granted, false); err != nil {
		t.Fatal(err)
	}
	cl, err := kc.As("shopstream-collector").Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = acls.Check(ctx, cl, "collector", rules)
	var m *acls.MissingError
	if !errors.As(err, &m) {
		t.Fatalf("check: %v, want a MissingError", err)
	}
	for _, want := range []string{"collector: principal User:shopstream-collector may not WRITE topic products_with_full_img_set", "bootstrap --acls"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if _, err := acls.Apply(ctx, kc.Admin(), rules, false); err != nil {
		t.Fatal(err)
	}
	if err := acls.Check(ctx, cl, "collector", rules); err != nil {
		t.Fatalf("with every rule granted: %v", err)
	}

	// A transactional id outside the granted prefix is refused when used,
	// and Explain names the rule.
	p, err := kc.As("shopstream-collector").NewClient(kgo.TransactionalID("someone-else-1"), kgo.DefaultProduceTopic(topics.CompleteProducts))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	perr := p.BeginTransaction()
	if perr == nil {
		perr = p.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	got := acls.Explain("collector", rules, perr)
	if !strings.Contains(got.Error(), "may not WRITE transactional id shopstream-collector-*") {
		t.Fatalf("explained %v as %v", perr, got)
	}
}

// environment/acls.md is the table, as Markdown renders it.
func TestTheDocumentedTableIsTheTable(t *testing.T) {
	doc, err := os.ReadFile("../../environment/acls.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := acls.Markdown(records.DefaultTopics()); !strings.Contains(string(doc), want) {
		t.Fatalf("environment/acls.md does not hold the table; paste:\n%s", want)
	}
}

// --acl-users reads component=user pairs, repeated or comma-separated; a
// pair that names no component is refused with the components listed.
func TestParseUsers(t *testing.T) {
	got, err := acls.ParseUsers([]string{"sink=pg-writer, streamer=filter", "api=web"})
	if err != nil || len(got) != 3 || got[acls.Sink] != "pg-writer" || got[acls.Streamer] != "filter" || got[acls.API] != "web" {
		t.Errorf("ParseUsers = %v, %v; want the three pairs", got, err)
	}
	for i, in := range []string{"sinker=x", "sink=", "sink"} {
		if _, err := acls.ParseUsers([]string{in}); err == nil || !strings.Contains(err.Error(), "want component=user with a component of worker, streamer") {
			t.Errorf("#%d: acls.ParseUsers(%q) = %v, want a refusal listing the components", i, in, err)
		}
	}
}
