// Package acls is least privilege on a secured Kafka: the ACLs each
// component's principal needs (the topics it reads and writes, its
// consumer group, its transactional id prefix), derived from the
// configured topic names; their application with kadm (`shopstream
// bootstrap --acls`), which reports drift and deletes nothing unless
// forced; and the check a component makes at start, so a missing ACL is an
// error naming the operation and the resource instead of a stalled
// consumer. environment/acls.md documents the same table, and a test keeps
// the two equal.
package acls

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/records"
)

// Components that run as a principal of their own.
const (
	Worker      = "worker"
	Streamer    = "streamer"
	Recommender = "recommender"
	Sink        = "sink"
	Collector   = "collector"
	API         = "api"
)

// Components lists them in the order the table is printed.
var Components = []string{Worker, Streamer, Recommender, Sink, Collector, API}

// DefaultUser is the SASL user of a component's principal, as `shopstream
// dev --secure` creates it and the Helm chart's examples name it.
func DefaultUser(component string) string { return "shopstream-" + component }

// ParseUsers reads component=user pairs (each item may hold several,
// comma-separated) into the SASL users of the ACL table.
func ParseUsers(items []string) (map[string]string, error) {
	users := map[string]string{}
	for _, item := range items {
		for _, p := range strings.Split(item, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			comp, user, ok := strings.Cut(p, "=")
			if !ok || !slices.Contains(Components, comp) || user == "" {
				return nil, fmt.Errorf("%q: want component=user with a component of %s", p, strings.Join(Components, ", "))
			}
			users[comp] = user
		}
	}
	return users, nil
}

// Rule is one ALLOW ACL.
type Rule struct {
	Principal string
	Resource  kmsg.ACLResourceType
	Name      string
	Prefixed  bool
	Operation kmsg.ACLOperation
}

// String is the rule as the table and the reports show it.
func (r Rule) String() string {
	return fmt.Sprintf("%s %s %s", r.Principal, Operation(r.Operation), r.Resource2())
}

// Resource2 names the resource: "topic shop_products", "group
// shopstream-sink", "transactional id shopstream-streamer-*".
func (r Rule) Resource2() string {
	name := r.Name
	if r.Prefixed {
		name += "*"
	}
	return ResourceType(r.Resource) + " " + name
}

// ResourceType names a resource type in words.
func ResourceType(t kmsg.ACLResourceType) string {
	switch t {
	case kmsg.ACLResourceTypeTopic:
		return "topic"
	case kmsg.ACLResourceTypeGroup:
		return "group"
	case kmsg.ACLResourceTypeTransactionalId:
		return "transactional id"
	case kmsg.ACLResourceTypeCluster:
		return "cluster"
	}
	return strings.ToLower(t.String())
}

// Operation names an operation as Kafka's tools do.
func Operation(op kmsg.ACLOperation) string {
	return strings.ReplaceAll(strings.ToUpper(op.String()), "-", "_")
}

// need is what a component does to one resource.
type need struct {
	resource kmsg.ACLResourceType
	name     string
	prefixed bool
	ops      []kmsg.ACLOperation
}

var (
	read     = []kmsg.ACLOperation{kmsg.ACLOperationRead}
	write    = []kmsg.ACLOperation{kmsg.ACLOperationWrite}
	readRite = []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationWrite}
)

func topic(name string, ops []kmsg.ACLOperation) need {
	return need{kmsg.ACLResourceTypeTopic, name, false, ops}
}

func group(name string) need { return need{kmsg.ACLResourceTypeGroup, name, false, read} }

func txnPrefix(prefix string) need {
	return need{kmsg.ACLResourceTypeTransactionalId, prefix, true, write}
}

// needs are what component does, by resource. The group and transactional
// id names are the components' defaults (streamer.DefaultGroup, …); the
// Helm chart's pod names start with the same prefixes.
func needs(component string, t records.Topics) []need {
	switch component {
	case Worker:
		// Bootstrap's topics step creates and reconciles every topic.
		// Emulation writes products in transactions whose commit marker is a
		// consumer group's offsets on the products topic (committing them
		// needs READ on it), deleted once the run recorded its batches; a
		// filter backfill reads products and writes filtered ones the same
		// way; a dead-letter replay reads the dead-letter topic and its
		// ledger and writes each letter back to the topic it came from,
		// which may be any topic a component consumes. The filter activity
		// publishes the filter; the Kafka view on /metrics describes every
		// shopstream group. Recreating a topic (bootstrap --force) also
		// needs DELETE, which is left to an operator to grant for that run.
		readWrite := map[string]bool{t.Products: true, t.CompleteProducts: true, t.Filtered: true, t.Find: true, t.Recommendations: true, t.DLQReplayed: true}
		var out []need
		for _, name := range []string{t.Products, t.CompleteProducts, t.Filtered, t.Find, t.Recommendations, t.Filter, t.FilterApplied, t.DLQ, t.DLQReplayed} {
			ops := []kmsg.ACLOperation{kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationAlter}
			switch {
			case readWrite[name]:
				ops = append(ops, kmsg.ACLOperationRead, kmsg.ACLOperationWrite)
			case name == t.Filter:
				ops = append(ops, kmsg.ACLOperationWrite)
			case name == t.DLQ:
				ops = append(ops, kmsg.ACLOperationRead)
			}
			out = append(out, topic(name, ops))
		}
		for _, family := range []string{"shopstream-emulate/", "shopstream-backfill/", "shopstream-dlq-replay/"} {
			out = append(out, txnPrefix(family),
				need{kmsg.ACLResourceTypeGroup, family, true, []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationDelete}})
		}
		return append(out, need{kmsg.ACLResourceTypeGroup, "shopstream-", true, []kmsg.ACLOperation{kmsg.ACLOperationDescribe}})
	case Streamer:
		return []need{
			topic(t.Products, read), topic(t.Filter, read), topic(t.FilterApplied, readRite),
			topic(t.Filtered, write), topic(t.DLQ, write),
			group("shopstream-streamer"), txnPrefix("shopstream-streamer-"),
		}
	case Recommender:
		return []need{
			topic(t.Filtered, read), topic(t.Find, read), topic(t.Recommendations, readRite),
			group("shopstream-recommender"), txnPrefix("shopstream-recommender-"),
		}
	case Sink:
		// It reads the dead-letter topic only after a death between
		// sending a batch's dead letters and committing the batch, to
		// find the letters already sent.
		return []need{
			topic(t.Products, read), topic(t.CompleteProducts, read), topic(t.Filtered, read),
			topic(t.Find, read), topic(t.Recommendations, read), topic(t.DLQ, readRite),
			group("shopstream-sink"),
		}
	case Collector:
		// It reads back its own output on the other two: whoever resumes
		// a parked product looks up whether its output committed.
		return []need{
			topic(t.Products, read), topic(t.CompleteProducts, readRite), topic(t.DLQ, readRite),
			group("shopstream-collector"), txnPrefix("shopstream-collector-"),
		}
	case API:
		return []need{topic(t.Products, write)}
	}
	return nil
}

// Own returns the rules component itself needs as User:<user> over the
// topics t.
func Own(component, user string, t records.Topics) []Rule {
	var out []Rule
	for _, n := range needs(component, t) {
		for _, op := range n.ops {
			out = append(out, Rule{Principal: "User:" + user, Resource: n.resource, Name: n.name, Prefixed: n.prefixed, Operation: op})
		}
	}
	return out
}

// For returns the rules of component's principal: its own, and for the
// streamer also the built-in recommender's, which runs in its process.
func For(component, user string, t records.Topics) []Rule {
	out := Own(component, user, t)
	if component == Streamer {
		out = append(out, Own(Recommender, user, t)...)
	}
	return out
}

// All returns the rules of every component, each with the user users
// gives it (DefaultUser when users has none), without duplicates.
func All(users map[string]string, t records.Topics) []Rule {
	var out []Rule
	for _, c := range Components {
		u := users[c]
		if u == "" {
			u = DefaultUser(c)
		}
		for _, r := range For(c, u, t) {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// Markdown renders the table per component, as environment/acls.md holds
// it.
func Markdown(t records.Topics) string {
	var b strings.Builder
	for _, c := range Components {
		fmt.Fprintf(&b, "### %s — `User:%s`\n\n| resource | name | operations |\n|---|---|---|\n", c, DefaultUser(c))
		for _, n := range needs(c, t) {
			name := "`" + n.name + "`"
			if n.prefixed {
				name = "prefix `" + n.name + "`"
			}
			var ops []string
			for _, op := range n.ops {
				ops = append(ops, Operation(op))
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", ResourceType(n.resource), name, strings.Join(ops, ", "))
		}
		if c == Streamer {
			b.WriteString("| | and everything of the recommender below: the streamer process runs the built-in recommender | |\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}
