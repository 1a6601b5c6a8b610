package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/store"
)

// DefaultTimeout bounds every store call the registry makes.
const DefaultTimeout = 5 * time.Second

// Registry reads and writes the fleet's records.
type Registry struct {
	st      store.Store
	now     func() time.Time
	timeout time.Duration
}

// New returns a registry over st. now may be nil for time.Now.
func New(st store.Store, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{st: st, now: now, timeout: DefaultTimeout}
}

// Store is the store the registry writes to.
func (r *Registry) Store() store.Store { return r.st }

func (r *Registry) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func (r *Registry) getJSON(ctx context.Context, key string, v any) (int64, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	it, err := r.st.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(it.Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return it.Revision, nil
}

func (r *Registry) putJSON(ctx context.Context, key string, v any, ifRev int64) (int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	return r.st.Put(ctx, key, data, ifRev)
}

func (r *Registry) list(ctx context.Context, prefix string) ([]store.Item, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	items, _, err := r.st.List(ctx, prefix)
	return items, err
}

// --- instances ---

// Instance returns the instance with this id.
func (r *Registry) Instance(ctx context.Context, id string) (*Instance, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	it, err := r.st.Get(ctx, PrefixInstances+id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &NotFoundError{"instance", id}
	}
	if err != nil {
		return nil, err
	}
	return DecodeInstance(it)
}

// Instances returns every instance, by id.
func (r *Registry) Instances(ctx context.Context) ([]*Instance, error) {
	items, err := r.list(ctx, PrefixInstances)
	if err != nil {
		return nil, err
	}
	out := make([]*Instance, 0, len(items))
	for _, it := range items {
		in, err := DecodeInstance(it)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// DecodeInstance reads an instance record from a store item, of any schema
// version this code knows; a newer one is a *SchemaError.
func DecodeInstance(it store.Item) (*Instance, error) {
	in, err := decodeInstance(it.Key, it.Value)
	if err != nil {
		return nil, err
	}
	in.Revision = it.Revision
	return in, nil
}

// putInstance writes the record of instance id under the revision condition
// ifRev.
func (r *Registry) putInstance(ctx context.Context, id string, in *Instance, ifRev int64) (int64, error) {
	key := PrefixInstances + id
	data, err := encodeInstance(in)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	return r.st.Put(ctx, key, data, ifRev)
}

// Put registers an instance or replaces its spec. ifRev is store.Absent to
// register only, a revision to replace only that version, or store.Any.
//
// A new instance's options are resolved as EC2 does at launch: its own
// settings, then its region's account defaults, then its image's
// imds-support, then the built-in defaults. Replacing the spec of an existing
// instance keeps its options except those the new spec sets differently.
func (r *Registry) Put(ctx context.Context, spec config.Instance, ifRev int64, seedHash string) (*Instance, error) {
	if err := config.ValidateInstance(&spec); err != nil {
		return nil, &InvalidError{Field: "instance", Msg: err.Error()}
	}
	id := spec.InstanceID
	old, err := r.Instance(ctx, id)
	var nf *NotFoundError
	switch {
	case errors.As(err, &nf):
		old = nil
		if ifRev > 0 {
			return nil, &ConflictError{fmt.Sprintf("instance %s does not exist (If-Match given)", id)}
		}
	case err != nil:
		return nil, err
	case ifRev == store.Absent:
		return nil, &ConflictError{fmt.Sprintf("instance %s already exists", id)}
	case ifRev > 0 && ifRev != old.Revision:
		return nil, &ConflictError{fmt.Sprintf("instance %s changed since revision %d (now %d)", id, ifRev, old.Revision)}
	}

	rec := &Instance{Spec: spec, SeedHash: seedHash}
	if old == nil {
		if rec.Spec.LaunchTime != "" {
			rec.LaunchTime, _ = time.Parse(time.RFC3339, rec.Spec.LaunchTime)
		} else {
			rec.LaunchTime = r.now().UTC().Truncate(time.Second)
		}
		opts, err := r.resolve(ctx, &spec)
		if err != nil {
			return nil, err
		}
		rec.Options = opts
	} else {
		rec.LaunchTime = old.LaunchTime
		rec.State, rec.StateUntil, rec.StateReason = old.State, old.StateUntil, old.StateReason
		rec.Options = mergeChangedOptions(old.Options, old.Spec.MetadataOptions, spec.MetadataOptions)
	}

	claimed, err := r.claimAddresses(ctx, id, spec.Addresses)
	if err != nil {
		return nil, err
	}
	cond := store.Absent
	if old != nil {
		cond = old.Revision
	}
	rev, err := r.putInstance(ctx, id, rec, cond)
	if err != nil {
		r.releaseAddresses(ctx, id, claimed)
		if errors.Is(err, store.ErrConflict) {
			return nil, &ConflictError{fmt.Sprintf("instance %s changed during the update; retry", id)}
		}
		return nil, err
	}
	rec.Revision = rev
	if old != nil {
		var gone []string
		for _, a := range old.Spec.Addresses {
			if !slices.Contains(normAddrs(spec.Addresses), normAddr(a)) {
				gone = append(gone, a)
			}
		}
		r.releaseAddresses(ctx, id, gone)
	}
	return rec, nil
}

// Delete removes an instance (only at revision ifRev unless store.Any).
func (r *Registry) Delete(ctx context.Context, id string, ifRev int64) error {
	old, err := r.Instance(ctx, id)
	if err != nil {
		return err
	}
	if ifRev > 0 && ifRev != old.Revision {
		return &ConflictError{fmt.Sprintf("instance %s changed since revision %d (now %d)", id, ifRev, old.Revision)}
	}
	ctx2, cancel := r.bound(ctx)
	defer cancel()
	if err := r.st.Delete(ctx2, PrefixInstances+id, old.Revision); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return &ConflictError{fmt.Sprintf("instance %s changed during the delete; retry", id)}
		}
		return err
	}
	r.releaseAddresses(ctx, id, old.Spec.Addresses)
	return nil
}

// ErrUnchanged is what an Update function returns to leave the record as it
// is; Update then returns the record it read, without error.
var ErrUnchanged = errors.New("registry: unchanged")

// Update applies f to the instance's record with a compare-and-swap loop: f
// sees the current record and changes it in place; an error from f stops the
// update (ErrUnchanged without writing anything).
func (r *Registry) Update(ctx context.Context, id string, f func(*Instance) error) (*Instance, error) {
	return r.update(ctx, id, f)
}

func (r *Registry) update(ctx context.Context, id string, f func(*Instance) error) (*Instance, error) {
	for range 10 {
		in, err := r.Instance(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := f(in); errors.Is(err, ErrUnchanged) {
			return in, nil
		} else if err != nil {
			return nil, err
		}
		rev, err := r.putInstance(ctx, id, in, in.Revision)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		in.Revision = rev
		return in, nil
	}
	return nil, &ConflictError{fmt.Sprintf("instance %s: too many concurrent changes; retry", id)}
}

// OptionChanges are the options ModifyInstanceMetadataOptions sets; nil
// fields keep their value.
type OptionChanges struct {
	HTTPTokens              *imdsopt.Tokens
	HTTPPutResponseHopLimit *imdsopt.HopLimit
	HTTPEndpoint            *imdsopt.State
	HTTPProtocolIPv6        *imdsopt.State
	InstanceMetadataTags    *imdsopt.State
}

// ModifyOptions changes an instance's metadata options; it takes effect on the
// next request.
func (r *Registry) ModifyOptions(ctx context.Context, id string, c OptionChanges) (*Instance, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	return r.update(ctx, id, func(in *Instance) error {
		o := &in.Options
		if c.HTTPTokens != nil {
			o.HTTPTokens = *c.HTTPTokens
		}
		if c.HTTPPutResponseHopLimit != nil {
			o.HTTPPutResponseHopLimit = *c.HTTPPutResponseHopLimit
		}
		if c.HTTPEndpoint != nil {
			o.HTTPEndpoint = *c.HTTPEndpoint
		}
		if c.HTTPProtocolIPv6 != nil {
			o.HTTPProtocolIPv6 = *c.HTTPProtocolIPv6
		}
		if c.InstanceMetadataTags != nil {
			o.InstanceMetadataTags = *c.InstanceMetadataTags
			if *c.InstanceMetadataTags == imdsopt.Enabled {
				if err := config.ValidateTags(in.Spec.Tags, true); err != nil {
					return &InvalidError{Field: "InstanceMetadataTags", Value: string(*c.InstanceMetadataTags), Msg: "the instance has tags EC2 cannot expose in metadata: " + err.Error()}
				}
			}
		}
		if c.HTTPTokens != nil && *c.HTTPTokens == imdsopt.Optional {
			d, err := r.Defaults(ctx, regionOf(&in.Spec))
			if err != nil {
				return err
			}
			if d.tokensEnforced() {
				return &InvalidError{Field: "HttpTokens", Value: string(*c.HTTPTokens), Msg: "the region's account defaults enforce IMDSv2 (HttpTokensEnforced)"}
			}
		}
		return nil
	})
}

func (c OptionChanges) validate() error {
	var hop error
	if h := c.HTTPPutResponseHopLimit; h != nil {
		hop = invalidValue("HttpPutResponseHopLimit", strconv.Itoa(int(*h)), h.Validate())
	}
	return errors.Join(
		checkOption("HttpTokens", c.HTTPTokens, imdsopt.Tokens.Validate),
		hop,
		checkOption("HttpEndpoint", c.HTTPEndpoint, imdsopt.State.Validate),
		checkOption("HttpProtocolIpv6", c.HTTPProtocolIPv6, imdsopt.State.Validate),
		checkOption("InstanceMetadataTags", c.InstanceMetadataTags, imdsopt.State.Validate),
	)
}

// checkOption checks v, if given, with the Validate of its metadata option.
func checkOption[T ~string](field string, v *T, validate func(T) error) error {
	if v == nil {
		return nil
	}
	return invalidValue(field, string(*v), validate(*v))
}

// invalidValue is err, the refusal of a value of field, as an InvalidError.
func invalidValue(field, value string, err error) error {
	if err == nil {
		return nil
	}
	return &InvalidError{Field: field, Value: value, Msg: err.Error()}
}

// CreateTags adds or overwrites tags on instances. All instances must exist.
func (r *Registry) CreateTags(ctx context.Context, ids []string, tags config.OrderedMap) error {
	if err := config.ValidateTags(tags, false); err != nil {
		return &InvalidError{Field: "Tag", Msg: err.Error()}
	}
	if err := r.allExist(ctx, ids); err != nil {
		return err
	}
	for _, id := range ids {
		_, err := r.update(ctx, id, func(in *Instance) error {
			for _, t := range tags {
				if i := slices.IndexFunc(in.Spec.Tags, func(kv config.KeyValue) bool { return kv.Key == t.Key }); i >= 0 {
					in.Spec.Tags[i].Value = t.Value
				} else {
					in.Spec.Tags = append(in.Spec.Tags, t)
				}
			}
			if in.Options.tagsEnabled() {
				if err := config.ValidateTags(in.Spec.Tags, true); err != nil {
					return &InvalidError{Field: "Tag", Msg: err.Error()}
				}
			}
			return config.ValidateTags(in.Spec.Tags, false)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// TagRef names a tag to delete; a nil Value deletes whatever the value is.
type TagRef struct {
	Key   string
	Value *string
}

// DeleteTags removes tags from instances. All instances must exist.
func (r *Registry) DeleteTags(ctx context.Context, ids []string, refs []TagRef) error {
	if err := r.allExist(ctx, ids); err != nil {
		return err
	}
	for _, id := range ids {
		_, err := r.update(ctx, id, func(in *Instance) error {
			in.Spec.Tags = slices.DeleteFunc(in.Spec.Tags, func(kv config.KeyValue) bool {
				if len(refs) == 0 { // EC2: no tags given deletes all of them
					return true
				}
				for _, ref := range refs {
					if ref.Key == kv.Key && (ref.Value == nil || *ref.Value == kv.Value) {
						return true
					}
				}
				return false
			})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) allExist(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if _, err := r.Instance(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// --- precedence ---

func regionOf(spec *config.Instance) string {
	return metadata.RegionOf(spec.AvailabilityZone, spec.Region)
}

// resolve applies EC2's order of precedence, each option on its own.
func (r *Registry) resolve(ctx context.Context, spec *config.Instance) (Options, error) {
	d, err := r.Defaults(ctx, regionOf(spec))
	if err != nil {
		return Options{}, err
	}
	var img *Image
	if spec.AMIID != "" {
		i, err := r.Image(ctx, spec.AMIID)
		var nf *NotFoundError
		switch {
		case err == nil:
			img = &i
		case !errors.As(err, &nf):
			return Options{}, err
		}
	}
	o := Resolve(spec.MetadataOptions, d, img)
	if d.tokensEnforced() && o.HTTPTokens != imdsopt.Required {
		return Options{}, &InvalidError{Field: "metadata-options.http-tokens", Value: string(o.HTTPTokens),
			Msg: "the account defaults of " + regionOf(spec) + " enforce IMDSv2 (HttpTokensEnforced): set http-tokens: required"}
	}
	return o, nil
}

// Resolve is EC2's order of precedence for instance metadata options: the
// instance's own settings, then the account defaults of its region, then its
// image's imds-support (v2.0 means tokens required and hop limit 2), then the
// built-in defaults. Each option is resolved on its own.
func Resolve(spec config.MetadataOptions, d Defaults, img *Image) Options {
	v2 := img != nil && img.ImdsSupport == imdsopt.V2
	var imageTokens imdsopt.Tokens
	if v2 {
		imageTokens = imdsopt.Required
	}
	o := Options{
		HTTPTokens:           cmp.Or(spec.HTTPTokens, d.HTTPTokens, imageTokens, imdsopt.Optional),
		HTTPEndpoint:         cmp.Or(spec.HTTPEndpoint, d.HTTPEndpoint, imdsopt.Enabled),
		HTTPProtocolIPv6:     cmp.Or(spec.HTTPProtocolIPv6, imdsopt.Disabled),
		InstanceMetadataTags: cmp.Or(spec.InstanceMetadataTags, d.InstanceMetadataTags, imdsopt.Disabled),
	}
	switch {
	case spec.HTTPPutResponseHopLimit != 0:
		o.HTTPPutResponseHopLimit = spec.HTTPPutResponseHopLimit
	case d.HTTPPutResponseHopLimit > 0:
		o.HTTPPutResponseHopLimit = d.HTTPPutResponseHopLimit
	case v2:
		o.HTTPPutResponseHopLimit = 2
	default:
		o.HTTPPutResponseHopLimit = 1
	}
	return o
}

// mergeChangedOptions keeps the current options except those the new spec
// sets to something other than the old spec did.
func mergeChangedOptions(cur Options, oldSpec, newSpec config.MetadataOptions) Options {
	if newSpec.HTTPTokens != "" && newSpec.HTTPTokens != oldSpec.HTTPTokens {
		cur.HTTPTokens = newSpec.HTTPTokens
	}
	if newSpec.HTTPPutResponseHopLimit != 0 && newSpec.HTTPPutResponseHopLimit != oldSpec.HTTPPutResponseHopLimit {
		cur.HTTPPutResponseHopLimit = newSpec.HTTPPutResponseHopLimit
	}
	if newSpec.HTTPEndpoint != "" && newSpec.HTTPEndpoint != oldSpec.HTTPEndpoint {
		cur.HTTPEndpoint = newSpec.HTTPEndpoint
	}
	if newSpec.HTTPProtocolIPv6 != "" && newSpec.HTTPProtocolIPv6 != oldSpec.HTTPProtocolIPv6 {
		cur.HTTPProtocolIPv6 = newSpec.HTTPProtocolIPv6
	}
	if newSpec.InstanceMetadataTags != "" && newSpec.InstanceMetadataTags != oldSpec.InstanceMetadataTags {
		cur.InstanceMetadataTags = newSpec.InstanceMetadataTags
	}
	return cur
}

// --- addresses ---

func normAddr(a string) string {
	if ap, err := netip.ParseAddr(a); err == nil {
		return ap.Unmap().String()
	}
	return a
}

func normAddrs(as []string) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = normAddr(a)
	}
	return out
}

// claimGrace is how long a fresh claim holds even though its instance record
// is not written yet (the claimer is between the two writes).
const claimGrace = 30 * time.Second

// claim is the value of an address claim: the owner and when it claimed.
func (r *Registry) claimValue(id string) []byte {
	return []byte(id + "|" + strconv.FormatInt(r.now().UnixNano(), 10))
}

func parseClaim(v []byte) (id string, at time.Time) {
	s := string(v)
	i := strings.LastIndexByte(s, '|')
	if i < 0 {
		return s, time.Time{}
	}
	n, _ := strconv.ParseInt(s[i+1:], 10, 64)
	return s[:i], time.Unix(0, n)
}

// claimAddresses records that id owns each address, refusing an address that
// another instance holds. A claim is stale, and taken over, only when it is
// older than claimGrace and its owner's record does not list the address (a
// crash between the claim and the record, or a failed release).
func (r *Registry) claimAddresses(ctx context.Context, id string, addrs []string) ([]string, error) {
	var claimed []string
	fail := func(err error) ([]string, error) {
		r.releaseAddresses(ctx, id, claimed)
		return nil, err
	}
	for _, a := range normAddrs(addrs) {
		key := PrefixAddresses + a
		for attempt := 0; ; attempt++ {
			if attempt == 5 {
				return fail(&ConflictError{"address " + a + ": too many concurrent changes; retry"})
			}
			c, cancel := r.bound(ctx)
			_, err := r.st.Put(c, key, r.claimValue(id), store.Absent)
			cancel()
			if err == nil {
				claimed = append(claimed, a)
				break
			}
			if !errors.Is(err, store.ErrConflict) {
				return fail(err)
			}
			c, cancel = r.bound(ctx)
			it, err := r.st.Get(c, key)
			cancel()
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return fail(err)
			}
			holder, at := parseClaim(it.Value)
			if holder == id {
				break
			}
			if r.now().Sub(at) < claimGrace {
				return fail(&ConflictError{fmt.Sprintf("address %s is already an address of %s", a, holder)})
			}
			h, err := r.Instance(ctx, holder)
			var nf *NotFoundError
			switch {
			case err == nil && slices.Contains(normAddrs(h.Spec.Addresses), a):
				return fail(&ConflictError{fmt.Sprintf("address %s is already an address of %s", a, holder)})
			case err != nil && !errors.As(err, &nf):
				return fail(err)
			}
			c, cancel = r.bound(ctx)
			_, err = r.st.Put(c, key, r.claimValue(id), it.Revision) // stale claim
			cancel()
			if err == nil {
				claimed = append(claimed, a)
				break
			}
		}
	}
	return claimed, nil
}

// releaseAddresses drops the claims id holds on addrs. Failures leave stale
// claims, which claimAddresses takes over later.
func (r *Registry) releaseAddresses(ctx context.Context, id string, addrs []string) {
	for _, a := range normAddrs(addrs) {
		c, cancel := r.bound(ctx)
		if it, err := r.st.Get(c, PrefixAddresses+a); err == nil {
			if holder, _ := parseClaim(it.Value); holder != id {
				cancel()
				continue
			}
			_ = r.st.Delete(c, PrefixAddresses+a, it.Revision)
		}
		cancel()
	}
}
