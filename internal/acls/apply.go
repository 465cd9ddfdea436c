package acls

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/workflows"
)

// Step is the name of the ACL step in bootstrap's report.
const Step = "acls"

// Apply makes the cluster hold rules: it creates each rule that is
// missing and reports drift, the ALLOW ACLs of the same principals that no
// rule names; those are deleted only with force. It needs a principal that
// may describe and alter the cluster's ACLs (an admin).
func Apply(ctx context.Context, adm *kadm.Client, rules []Rule, force bool) (workflows.StepResult, error) {
	res := workflows.StepResult{Step: Step}
	var principals []string
	for _, r := range rules {
		if !slices.Contains(principals, r.Principal) {
			principals = append(principals, r.Principal)
		}
	}
	described, err := adm.DescribeACLs(ctx, kadm.NewACLs().Allow(principals...).AllowHosts().AnyResource().
		Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil {
		return res, fmt.Errorf("describe the ACLs of %v: %w (the bootstrap's acls step needs a principal that may describe and alter ACLs, such as an admin)", principals, err)
	}
	var have []Rule
	for _, d := range described {
		if d.Err != nil {
			return res, fmt.Errorf("describe the ACLs of %v: %w", principals, d.Err)
		}
		for _, a := range d.Described {
			if a.Permission != kmsg.ACLPermissionTypeAllow {
				continue
			}
			r := Rule{Principal: a.Principal, Resource: a.Type, Name: a.Name, Prefixed: a.Pattern == kadm.ACLPatternPrefixed, Operation: a.Operation}
			if !slices.Contains(have, r) {
				have = append(have, r)
			}
		}
	}
	for _, r := range rules {
		if slices.Contains(have, r) {
			res.Items = append(res.Items, workflows.ItemResult{Name: r.String(), Outcome: workflows.OutcomeUnchanged})
			continue
		}
		if err := create(ctx, adm, r); err != nil {
			return res, err
		}
		res.Items = append(res.Items, workflows.ItemResult{Name: r.String(), Outcome: workflows.OutcomeCreated})
	}
	for _, h := range have {
		if slices.Contains(rules, h) {
			continue
		}
		if !force {
			res.Items = append(res.Items, workflows.ItemResult{Name: h.String(), Outcome: workflows.OutcomeDrift,
				Detail: "not in the table (left as is; --force deletes it)"})
			continue
		}
		if err := remove(ctx, adm, h); err != nil {
			return res, err
		}
		res.Items = append(res.Items, workflows.ItemResult{Name: h.String(), Outcome: workflows.OutcomeChanged, Detail: "deleted (--force)"})
	}
	return res, nil
}

// builder is the kadm builder of exactly r.
func builder(r Rule) *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow(r.Principal).AllowHosts("*").Operations(r.Operation)
	pattern := kadm.ACLPatternLiteral
	if r.Prefixed {
		pattern = kadm.ACLPatternPrefixed
	}
	b.ResourcePatternType(pattern)
	switch r.Resource {
	case kmsg.ACLResourceTypeTopic:
		b.Topics(r.Name)
	case kmsg.ACLResourceTypeGroup:
		b.Groups(r.Name)
	case kmsg.ACLResourceTypeTransactionalId:
		b.TransactionalIDs(r.Name)
	case kmsg.ACLResourceTypeCluster:
		b.Clusters()
	}
	return b
}

func create(ctx context.Context, adm *kadm.Client, r Rule) error {
	results, err := adm.CreateACLs(ctx, builder(r))
	for _, res := range results {
		err = errors.Join(err, res.Err)
	}
	if err != nil {
		return fmt.Errorf("create ACL %s: %w", r, err)
	}
	return nil
}

func remove(ctx context.Context, adm *kadm.Client, r Rule) error {
	results, err := adm.DeleteACLs(ctx, builder(r))
	for _, res := range results {
		err = errors.Join(err, res.Err)
	}
	if err != nil {
		return fmt.Errorf("delete ACL %s: %w", r, err)
	}
	return nil
}
