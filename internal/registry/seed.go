package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/store"
)

// SeedResult counts what Seed did.
type SeedResult struct {
	Registered, Updated, Unchanged, Removed, Roles int
}

// Seed makes the store hold the configuration file's roles and instances.
//
// An instance is registered the first time it is seen. Afterwards it is
// rewritten only when its entry in the file has changed since it was last
// applied, so that changes made through the API survive a restart. Instances
// that came from the file and are no longer in it are removed; instances
// registered through the API are never touched.
//
// The file is applied all or nothing: before anything is written, the whole
// change is checked against the registry's rules and the store's current
// state (an address another instance holds, tokens the account defaults
// enforce), and an error (a *RuleError for each broken rule, joined) names
// each instance and rule.
func (r *Registry) Seed(ctx context.Context, c *config.Config) (SeedResult, error) {
	var res SeedResult
	type write struct {
		rev  int64
		hash string
	}
	writes := map[string]write{}
	var specs []config.Instance
	inFile := map[string]bool{}
	for _, spec := range c.Instances {
		inFile[spec.InstanceID] = true
		hash := specHash(spec)
		cur, err := r.Instance(ctx, spec.InstanceID)
		var nf *NotFoundError
		switch {
		case errors.As(err, &nf):
			writes[spec.InstanceID] = write{store.Absent, hash}
			specs = append(specs, spec)
		case err != nil:
			return res, err
		case cur.SeedHash == hash:
			res.Unchanged++
		default:
			writes[spec.InstanceID] = write{cur.Revision, hash}
			specs = append(specs, spec)
		}
	}
	all, err := r.Instances(ctx)
	if err != nil {
		return res, err
	}
	var gone []*Instance
	var goneIDs []string
	for _, in := range all {
		if in.SeedHash != "" && !inFile[in.Spec.InstanceID] {
			gone = append(gone, in)
			goneIDs = append(goneIDs, in.Spec.InstanceID)
		}
	}
	order, err := r.planInstances(ctx, specs, goneIDs)
	if err != nil {
		return res, err
	}

	for name, role := range c.Roles {
		cur, rev, err := r.Role(ctx, name)
		var nf *NotFoundError
		switch {
		case errors.As(err, &nf):
			rev = store.Absent
		case err != nil:
			return res, err
		case reflect.DeepEqual(cur, role):
			continue
		}
		if _, err := r.PutRole(ctx, name, role, rev); err != nil {
			return res, fmt.Errorf("role %s: %w", name, err)
		}
		res.Roles++
	}
	for _, in := range gone {
		if err := r.Delete(ctx, in.Spec.InstanceID, in.Revision); err != nil {
			return res, fmt.Errorf("remove instance %s no longer in the file: %w", in.Spec.InstanceID, err)
		}
		res.Removed++
	}
	for _, spec := range order {
		w := writes[spec.InstanceID]
		if _, err := r.Put(ctx, spec, w.rev, w.hash); err != nil {
			return res, fmt.Errorf("instance %s: %w", spec.InstanceID, err)
		}
		if w.rev == store.Absent {
			res.Registered++
		} else {
			res.Updated++
		}
	}
	return res, nil
}

func specHash(spec config.Instance) string {
	b, _ := json.Marshal(spec)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
