package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/registry"
)

// resourceIDs reads ResourceId.N: imds keeps tags on instances only.
func (c *ec2Call) resourceIDs() ([]string, error) {
	ids, err := c.list("ResourceId")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errMissing("ResourceId.1")
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "i-") {
			return nil, &ec2Error{http.StatusBadRequest, "InvalidID", fmt.Sprintf("The ID '%s' is not valid: imds keeps tags on instances only", id)}
		}
		if err := checkInstanceID(id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// tags reads Tag.N.Key and Tag.N.Value; a nil Value is a value not given.
func (c *ec2Call) tags() ([]registry.TagRef, error) {
	idx, err := c.indices("Tag")
	if err != nil {
		return nil, err
	}
	out := make([]registry.TagRef, 0, len(idx))
	for _, i := range idx {
		key, ok := c.str(fmt.Sprintf("Tag.%d.Key", i))
		if !ok {
			return nil, errMissing(fmt.Sprintf("Tag.%d.Key", i))
		}
		v, _ := c.str(fmt.Sprintf("Tag.%d.Value", i))
		out = append(out, registry.TagRef{Key: *key, Value: v})
	}
	return out, nil
}

func (h *Handler) instancesExist(ctx context.Context, ids []string) error {
	var missing []string
	for _, id := range ids {
		_, err := h.o.Registry.Instance(ctx, id)
		switch err.(type) {
		case nil:
		case *registry.NotFoundError:
			missing = append(missing, id)
		default:
			return err
		}
	}
	if len(missing) > 0 {
		return errInstanceNotFound(missing...)
	}
	return nil
}

func (h *Handler) createTags(ctx context.Context, c *ec2Call) (ec2Response, error) {
	ids, err := c.resourceIDs()
	if err != nil {
		return nil, err
	}
	refs, err := c.tags()
	if err != nil {
		return nil, err
	}
	if len(refs) == 0 {
		return nil, errMissing("Tag.1.Key")
	}
	tags := make(config.OrderedMap, 0, len(refs))
	for _, t := range refs {
		if t.Key == "" {
			return nil, errInvalid("Tag key must not be empty")
		}
		kv := config.KeyValue{Key: t.Key}
		if t.Value != nil {
			kv.Value = *t.Value
		}
		tags = append(tags, kv)
	}
	if err := config.ValidateTags(tags, false); err != nil {
		return nil, tagError(err)
	}
	if err := h.instancesExist(ctx, ids); err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	if err := h.o.Registry.CreateTags(ctx, ids, tags); err != nil {
		return nil, err
	}
	h.audit(c, "instances", ids, "keys", tagKeys(refs))
	return returnTrue(c.action), nil
}

func (h *Handler) deleteTags(ctx context.Context, c *ec2Call) (ec2Response, error) {
	ids, err := c.resourceIDs()
	if err != nil {
		return nil, err
	}
	refs, err := c.tags()
	if err != nil {
		return nil, err
	}
	if err := h.instancesExist(ctx, ids); err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	if err := h.o.Registry.DeleteTags(ctx, ids, refs); err != nil {
		return nil, err
	}
	h.audit(c, "instances", ids, "keys", tagKeys(refs))
	return returnTrue(c.action), nil
}

// tagKeys names the tags an action touched; values may be user data and are
// not logged.
func tagKeys(refs []registry.TagRef) []string {
	keys := make([]string, len(refs))
	for i, r := range refs {
		keys[i] = r.Key
	}
	return keys
}

// tagError words a tag validation error as EC2 does.
func tagError(err error) error {
	var es config.Errors
	if !errors.As(err, &es) || len(es) == 0 {
		return errInvalid("%s", err.Error())
	}
	e := es[0]
	return errInvalid("Value ( %s ) for parameter Tag is invalid. %s", strings.TrimPrefix(e.Key, "tags."), e.Msg)
}
