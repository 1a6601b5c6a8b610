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
func (r *Registry) Seed(ctx context.Context, c *config.Config) (SeedResult, error) {
	var res SeedResult
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
	inFile := map[string]bool{}
	for _, spec := range c.Instances {
		inFile[spec.InstanceID] = true
		hash := specHash(spec)
		cur, err := r.Instance(ctx, spec.InstanceID)
		var nf *NotFoundError
		switch {
		case errors.As(err, &nf):
			if _, err := r.Put(ctx, spec, store.Absent, hash); err != nil {
				return res, fmt.Errorf("instance %s: %w", spec.InstanceID, err)
			}
			res.Registered++
		case err != nil:
			return res, err
		case cur.SeedHash == hash:
			res.Unchanged++
		default:
			if _, err := r.Put(ctx, spec, cur.Revision, hash); err != nil {
				return res, fmt.Errorf("instance %s: %w", spec.InstanceID, err)
			}
			res.Updated++
		}
	}
	all, err := r.Instances(ctx)
	if err != nil {
		return res, err
	}
	for _, in := range all {
		if in.SeedHash != "" && !inFile[in.Spec.InstanceID] {
			if err := r.Delete(ctx, in.Spec.InstanceID, in.Revision); err != nil {
				return res, fmt.Errorf("remove instance %s no longer in the file: %w", in.Spec.InstanceID, err)
			}
			res.Removed++
		}
	}
	return res, nil
}

func specHash(spec config.Instance) string {
	b, _ := json.Marshal(spec)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
