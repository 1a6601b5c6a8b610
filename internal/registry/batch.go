package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/store"
)

// Rules a batch of instance writes is checked against, as RuleError names them.
const (
	RuleOneInstancePerAddress = "one instance per address"
	RuleEnforcedTokens        = "account defaults enforce IMDSv2"
	RuleValidSpec             = "a valid spec"
	RuleOneEntryPerInstance   = "one entry per instance"
)

// RuleError: writing an instance would break a registry rule. A batch that
// returns one has written nothing.
type RuleError struct {
	Instance string
	Rule     string
	Err      error // a *ConflictError or an *InvalidError
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("instance %s breaks the rule %q: %v", e.Instance, e.Rule, e.Err)
}
func (e *RuleError) Unwrap() error { return e.Err }

// planInstances checks that writing specs (registering the new ones,
// replacing the specs of the others) after removing the instances in remove
// keeps every registry rule, against the store's current state. It returns
// the specs in an order in which each one's addresses are free when it is
// written, or every broken rule, joined.
//
// Writing is then done key by key: the store has no multi-key transaction,
// so what the check cannot foresee (a concurrent writer taking an address
// between the check and the write, the store failing midway) can still
// leave a batch half applied. Every rule a valid file can break is checked
// here first.
func (r *Registry) planInstances(ctx context.Context, specs []config.Instance, remove []string) ([]config.Instance, error) {
	all, err := r.Instances(ctx)
	if err != nil {
		return nil, err
	}
	cur := make(map[string]*Instance, len(all))
	for _, in := range all {
		cur[in.Spec.InstanceID] = in
	}
	// holder is who holds each address once the removals are done.
	holder := map[string]string{}
	for _, in := range all {
		if slices.Contains(remove, in.Spec.InstanceID) {
			continue
		}
		for _, a := range normAddrs(in.Spec.Addresses) {
			holder[a] = in.Spec.InstanceID
		}
	}

	var errs []error
	broke := func(id, rule string, err error) { errs = append(errs, &RuleError{id, rule, err}) }
	// final is who holds each address once the whole batch is written.
	final := map[string]string{}
	for a, id := range holder {
		final[a] = id
	}
	inBatch := map[string]bool{}
	for _, spec := range specs {
		if inBatch[spec.InstanceID] {
			broke(spec.InstanceID, RuleOneEntryPerInstance, &InvalidError{Field: "instance-id", Value: spec.InstanceID, Msg: "given twice"})
		}
		inBatch[spec.InstanceID] = true
		if old := cur[spec.InstanceID]; old != nil && !slices.Contains(remove, spec.InstanceID) {
			for _, a := range normAddrs(old.Spec.Addresses) {
				if final[a] == spec.InstanceID {
					delete(final, a)
				}
			}
		}
	}
	for _, spec := range specs {
		id := spec.InstanceID
		if err := config.ValidateInstance(&spec); err != nil {
			broke(id, RuleValidSpec, &InvalidError{Field: "instance", Msg: err.Error()})
			continue
		}
		for _, a := range normAddrs(spec.Addresses) {
			other, held := final[a]
			switch {
			case !held:
				final[a] = id
			case other == id:
			case inBatch[other]:
				broke(id, RuleOneInstancePerAddress, &ConflictError{fmt.Sprintf("address %s is also given to %s", a, other)})
			default:
				broke(id, RuleOneInstancePerAddress, &ConflictError{fmt.Sprintf("address %s is already an address of %s", a, other)})
			}
		}
		if cur[id] == nil {
			if _, err := r.resolve(ctx, &spec); err != nil {
				var inv *InvalidError
				if !errors.As(err, &inv) {
					return nil, err
				}
				broke(id, RuleEnforcedTokens, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Order the writes so that an address one instance gives up is released
	// before another takes it.
	var order []config.Instance
	pending := slices.Clone(specs)
	for len(pending) > 0 {
		next := slices.IndexFunc(pending, func(s config.Instance) bool {
			for _, a := range normAddrs(s.Addresses) {
				if h, ok := holder[a]; ok && h != s.InstanceID {
					return false
				}
			}
			return true
		})
		if next < 0 {
			ids := make([]string, len(pending))
			for i, s := range pending {
				ids[i] = s.InstanceID
			}
			return nil, &RuleError{pending[0].InstanceID, RuleOneInstancePerAddress, &ConflictError{
				"instances " + strings.Join(ids, ", ") + " exchange addresses: move them in two steps, through a free address"}}
		}
		s := pending[next]
		if old := cur[s.InstanceID]; old != nil {
			for _, a := range normAddrs(old.Spec.Addresses) {
				if holder[a] == s.InstanceID {
					delete(holder, a)
				}
			}
		}
		for _, a := range normAddrs(s.Addresses) {
			holder[a] = s.InstanceID
		}
		order = append(order, s)
		pending = slices.Delete(pending, next, next+1)
	}
	return order, nil
}

// PutInstances registers instances or replaces their specs, all or none:
// every spec is first checked against the registry's rules and the current
// state (see planInstances), and nothing is written if one breaks a rule.
// Instances from the configuration file keep their mark.
func (r *Registry) PutInstances(ctx context.Context, specs []config.Instance) ([]PutResult, error) {
	order, err := r.planInstances(ctx, specs, nil)
	if err != nil {
		return nil, err
	}
	out := make([]PutResult, 0, len(order))
	for _, spec := range order {
		cond, seed := store.Absent, ""
		cur, err := r.Instance(ctx, spec.InstanceID)
		var nf *NotFoundError
		switch {
		case errors.As(err, &nf):
		case err != nil:
			return out, fmt.Errorf("instance %s: %w", spec.InstanceID, err)
		default:
			cond, seed = cur.Revision, cur.SeedHash
		}
		in, err := r.Put(ctx, spec, cond, seed)
		if err != nil {
			return out, fmt.Errorf("instance %s: %w", spec.InstanceID, err)
		}
		out = append(out, PutResult{in, cond == store.Absent})
	}
	return out, nil
}

// PutResult is one instance written by PutInstances.
type PutResult struct {
	Instance *Instance
	Created  bool
}
