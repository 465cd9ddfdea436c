package acls

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// MissingError is a component's principal lacking an ACL it needs.
type MissingError struct {
	Component string
	Rule      Rule
	// Why is how it showed: the broker's authorized operations at start,
	// or the error a request got.
	Why string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s: principal %s may not %s %s (%s): grant it (`shopstream bootstrap --acls` applies the table in environment/acls.md) or run the component as a principal that may",
		e.Component, e.Rule.Principal, Operation(e.Rule.Operation), e.Rule.Resource2(), e.Why)
}

// Check asks the cluster, before a component starts, whether its principal
// may do what rules say on each topic and group (the authorized operations
// of KIP-430), and returns a *MissingError for the first it may not. A
// topic that does not exist yet is skipped (bootstrap creates it), as is
// an answer without authorized operations (a cluster without an
// authorizer). Transactional ids cannot be asked for; Explain names them
// when a request is refused.
func Check(ctx context.Context, cl *kgo.Client, component string, rules []Rule) error {
	topics := map[string][]Rule{}
	groups := map[string][]Rule{}
	var topicNames, groupNames []string
	for _, r := range rules {
		switch {
		case r.Prefixed:
		case r.Resource == kmsg.ACLResourceTypeTopic:
			if _, ok := topics[r.Name]; !ok {
				topicNames = append(topicNames, r.Name)
			}
			topics[r.Name] = append(topics[r.Name], r)
		case r.Resource == kmsg.ACLResourceTypeGroup:
			if _, ok := groups[r.Name]; !ok {
				groupNames = append(groupNames, r.Name)
			}
			groups[r.Name] = append(groups[r.Name], r)
		}
	}
	if len(topicNames) > 0 {
		req := kmsg.NewPtrMetadataRequest()
		req.IncludeTopicAuthorizedOperations = true
		for _, name := range topicNames {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("%s: ask Kafka which operations its principal may do on its topics: %w", component, err)
		}
		for _, t := range resp.Topics {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			if err := missing(component, topics[name], t.ErrorCode, kerr.TopicAuthorizationFailed, t.AuthorizedOperations); err != nil {
				return err
			}
		}
	}
	if len(groupNames) > 0 {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = groupNames
		req.IncludeAuthorizedOperations = true
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			// A group's coordinator may not be known yet; the join will say.
			return nil
		}
		for _, g := range resp.Groups {
			if err := missing(component, groups[g.Group], g.ErrorCode, kerr.GroupAuthorizationFailed, g.AuthorizedOperations); err != nil {
				return err
			}
		}
	}
	return nil
}

// missing is the first rule that code or ops say is not allowed.
func missing(component string, rules []Rule, code int16, denied *kerr.Error, ops int32) error {
	if len(rules) == 0 {
		return nil
	}
	if code == denied.Code {
		return &MissingError{Component: component, Rule: rules[0], Why: "the broker answered " + denied.Message}
	}
	if code != 0 || ops == math.MinInt32 || ops == 0 {
		return nil
	}
	for _, r := range rules {
		if ops&(1<<uint(r.Operation)) == 0 {
			return &MissingError{Component: component, Rule: r, Why: "not among the operations the broker says it may do"}
		}
	}
	return nil
}

// Explain turns an authorization error that a running component's request
// got into a *MissingError naming the rule of that kind of resource it
// needs; any other error is returned as it is.
func Explain(component string, rules []Rule, err error) error {
	if err == nil {
		return nil
	}
	var kind kmsg.ACLResourceType
	var ke *kerr.Error
	switch {
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		kind, ke = kmsg.ACLResourceTypeTransactionalId, kerr.TransactionalIDAuthorizationFailed
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		kind, ke = kmsg.ACLResourceTypeGroup, kerr.GroupAuthorizationFailed
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		kind, ke = kmsg.ACLResourceTypeTopic, kerr.TopicAuthorizationFailed
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("%s: its principal may not do a cluster operation (%w): see environment/acls.md", component, err)
	default:
		return err
	}
	var named []string
	var first *Rule
	for i, r := range rules {
		if r.Resource == kind {
			if first == nil {
				first = &rules[i]
			}
			named = append(named, Operation(r.Operation)+" "+r.Resource2())
		}
	}
	if first == nil {
		return err
	}
	m := &MissingError{Component: component, Rule: *first, Why: "a request got " + ke.Message}
	if len(named) > 1 {
		m.Why += "; it needs " + strings.Join(named, ", ")
	}
	return m
}
