package registry

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/ec2id"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/token"
)

var nameRe = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

// --- account defaults ---

// Defaults returns a region's account defaults (empty when never set).
func (r *Registry) Defaults(ctx context.Context, region string) (Defaults, error) {
	var d Defaults
	_, err := r.getJSON(ctx, PrefixDefaults+region, &d)
	if errors.Is(err, store.ErrNotFound) {
		return Defaults{}, nil
	}
	return d, err
}

// DefaultChanges are the fields ModifyInstanceMetadataDefaults sets; nil keeps
// a field, "no-preference" (or -1 for the hop limit) clears it.
type DefaultChanges struct {
	HTTPTokens              *imdsopt.Tokens
	HTTPPutResponseHopLimit *imdsopt.HopLimit
	HTTPEndpoint            *imdsopt.State
	InstanceMetadataTags    *imdsopt.State
	HTTPTokensEnforced      *imdsopt.State
}

func (c DefaultChanges) validate() error {
	var hop error
	if h := c.HTTPPutResponseHopLimit; h != nil {
		hop = invalidValue("HttpPutResponseHopLimit", strconv.Itoa(int(*h)), h.ValidateDefault())
	}
	return errors.Join(
		checkOption("HttpTokens", c.HTTPTokens, imdsopt.Tokens.ValidateDefault),
		hop,
		checkOption("HttpEndpoint", c.HTTPEndpoint, imdsopt.State.ValidateDefault),
		checkOption("InstanceMetadataTags", c.InstanceMetadataTags, imdsopt.State.ValidateDefault),
		checkOption("HttpTokensEnforced", c.HTTPTokensEnforced, imdsopt.State.ValidateDefault),
	)
}

// ModifyDefaults changes a region's account defaults. Existing instances are
// not affected, as on EC2.
func (r *Registry) ModifyDefaults(ctx context.Context, region string, c DefaultChanges) (Defaults, error) {
	if !ec2id.Region.Valid(region) {
		return Defaults{}, &InvalidError{Field: "region", Value: region, Msg: "not " + ec2id.Region.What}
	}
	if err := c.validate(); err != nil {
		return Defaults{}, err
	}
	set := func(dst *string, v *string) {
		switch {
		case v == nil:
		case *v == imdsopt.NoPreference:
			*dst = ""
		default:
			*dst = *v
		}
	}
	setState := func(dst *imdsopt.State, v *imdsopt.State) { set((*string)(dst), (*string)(v)) }
	for range 10 {
		var d Defaults
		rev, err := r.getJSON(ctx, PrefixDefaults+region, &d)
		if errors.Is(err, store.ErrNotFound) {
			rev = store.Absent
		} else if err != nil {
			return Defaults{}, err
		}
		set((*string)(&d.HTTPTokens), (*string)(c.HTTPTokens))
		setState(&d.HTTPEndpoint, c.HTTPEndpoint)
		setState(&d.InstanceMetadataTags, c.InstanceMetadataTags)
		setState(&d.HTTPTokensEnforced, c.HTTPTokensEnforced)
		switch h := c.HTTPPutResponseHopLimit; {
		case h == nil:
		case *h == imdsopt.NoPreferenceHopLimit:
			d.HTTPPutResponseHopLimit = 0
		default:
			d.HTTPPutResponseHopLimit = *h
		}
		if d.tokensEnforced() && d.HTTPTokens == imdsopt.Optional {
			return Defaults{}, &InvalidError{Field: "HttpTokens", Value: string(d.HTTPTokens), Msg: "conflicts with HttpTokensEnforced enabled"}
		}
		_, err = r.putJSON(ctx, PrefixDefaults+region, d, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return d, err
	}
	return Defaults{}, &ConflictError{"defaults of " + region + ": too many concurrent changes; retry"}
}

// --- images ---

// Image returns what is known of an AMI.
func (r *Registry) Image(ctx context.Context, id string) (Image, error) {
	var img Image
	_, err := r.getJSON(ctx, PrefixImages+id, &img)
	if errors.Is(err, store.ErrNotFound) {
		return Image{}, &NotFoundError{"image", id}
	}
	return img, err
}

// PutImage registers an image or changes its imds-support. As on EC2,
// imds-support v2.0 cannot be taken back.
func (r *Registry) PutImage(ctx context.Context, img Image) error {
	if !ec2id.Image.Valid(img.ImageID) {
		return &InvalidError{Field: "ImageId", Value: img.ImageID, Msg: "not " + ec2id.Image.What}
	}
	if img.ImdsSupport != "" {
		if err := checkOption("ImdsSupport", &img.ImdsSupport, imdsopt.ImdsSupport.Validate); err != nil {
			return err
		}
	}
	for range 10 {
		var old Image
		rev, err := r.getJSON(ctx, PrefixImages+img.ImageID, &old)
		if errors.Is(err, store.ErrNotFound) {
			rev = store.Absent
		} else if err != nil {
			return err
		}
		if old.ImdsSupport == imdsopt.V2 && img.ImdsSupport != imdsopt.V2 {
			return &InvalidError{Field: "ImdsSupport", Value: string(img.ImdsSupport), Msg: "imds-support v2.0 cannot be removed from an image"}
		}
		_, err = r.putJSON(ctx, PrefixImages+img.ImageID, img, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
	return &ConflictError{"image " + img.ImageID + ": too many concurrent changes; retry"}
}

// --- roles ---

// Role returns a role's source configuration and its revision.
func (r *Registry) Role(ctx context.Context, name string) (*config.Role, int64, error) {
	var role config.Role
	rev, err := r.getJSON(ctx, PrefixRoles+name, &role)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, &NotFoundError{"role", name}
	}
	return &role, rev, err
}

// Roles returns every role by name.
func (r *Registry) Roles(ctx context.Context) (map[string]*config.Role, error) {
	items, err := r.list(ctx, PrefixRoles)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*config.Role, len(items))
	for _, it := range items {
		role, err := DecodeRole(it)
		if err != nil {
			return nil, err
		}
		out[it.Key[len(PrefixRoles):]] = role
	}
	return out, nil
}

// PutRole writes a role under the usual revision condition.
func (r *Registry) PutRole(ctx context.Context, name string, role *config.Role, ifRev int64) (int64, error) {
	if !nameRe.MatchString(name) {
		return 0, &InvalidError{Field: "role", Value: name, Msg: "a role name has 1 to 64 characters from [A-Za-z0-9+=,.@_-]"}
	}
	if err := config.ValidateRole(name, role); err != nil {
		return 0, &InvalidError{Field: "role", Value: name, Msg: err.Error()}
	}
	rev, err := r.putJSON(ctx, PrefixRoles+name, role, ifRev)
	if errors.Is(err, store.ErrConflict) {
		return 0, &ConflictError{"role " + name + " changed or exists already"}
	}
	return rev, err
}

// DeleteRole removes a role.
func (r *Registry) DeleteRole(ctx context.Context, name string, ifRev int64) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	err := r.st.Delete(ctx, PrefixRoles+name, ifRev)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &NotFoundError{"role", name}
	case errors.Is(err, store.ErrConflict):
		return &ConflictError{"role " + name + " changed"}
	}
	return err
}

// --- relays ---

// Relays returns every relay.
func (r *Registry) Relays(ctx context.Context) ([]Relay, error) {
	items, err := r.list(ctx, PrefixRelays)
	if err != nil {
		return nil, err
	}
	out := make([]Relay, 0, len(items))
	for _, it := range items {
		rl, err := DecodeRelay(it)
		if err != nil {
			return nil, err
		}
		out = append(out, rl)
	}
	return out, nil
}

// MinRelaySecret is the length in bytes of the shortest relay secret.
const MinRelaySecret = 16

// PutRelay registers a relay; an empty secret gets a random 32-byte one.
func (r *Registry) PutRelay(ctx context.Context, rl Relay) (Relay, error) {
	if !nameRe.MatchString(rl.Name) {
		return Relay{}, &InvalidError{Field: "name", Value: rl.Name, Msg: "1 to 64 characters from [A-Za-z0-9+=,.@_-]"}
	}
	if len(rl.Addresses) == 0 {
		return Relay{}, &InvalidError{Field: "addresses", Msg: "a relay needs at least one address"}
	}
	for _, a := range rl.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return Relay{}, &InvalidError{Field: "addresses", Value: a, Msg: "not an IP address"}
		}
	}
	if len(rl.Secret) == 0 {
		rl.Secret = make([]byte, 32)
		rand.Read(rl.Secret)
	} else if len(rl.Secret) < MinRelaySecret {
		return Relay{}, &InvalidError{Field: "secret", Msg: fmt.Sprintf("at least %d bytes", MinRelaySecret)}
	}
	_, err := r.putJSON(ctx, PrefixRelays+rl.Name, rl, store.Any)
	return rl, err
}

// DeleteRelay removes a relay.
func (r *Registry) DeleteRelay(ctx context.Context, name string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	err := r.st.Delete(ctx, PrefixRelays+name, store.Any)
	if errors.Is(err, store.ErrNotFound) {
		return &NotFoundError{"relay", name}
	}
	return err
}

// --- token key ring ---

// TokenRing is the stored key ring: Keys[0] signs new tokens.
type TokenRing struct {
	Keys []TokenKey `json:"keys"`
}

// TokenKey is one key; Retired is when a newer key replaced it.
type TokenKey struct {
	ID      uint16    `json:"id"`
	Secret  []byte    `json:"secret"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// TokenKeys returns the ring for token.NewRing.
func (tr TokenRing) TokenKeys() []token.Key {
	out := make([]token.Key, len(tr.Keys))
	for i, k := range tr.Keys {
		out[i] = token.Key{ID: k.ID, Secret: k.Secret}
	}
	return out
}

// EnsureTokenRing returns the ring, creating it with one key if the store has
// none. Replicas racing to create it end up with the same ring.
func (r *Registry) EnsureTokenRing(ctx context.Context) (TokenRing, error) {
	for range 3 {
		var tr TokenRing
		_, err := r.getJSON(ctx, KeyTokenRing, &tr)
		if err == nil {
			return tr, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return TokenRing{}, err
		}
		tr = TokenRing{Keys: []TokenKey{newTokenKey(1, r.now())}}
		if _, err := r.putJSON(ctx, KeyTokenRing, tr, store.Absent); err == nil {
			return tr, nil
		} else if !errors.Is(err, store.ErrConflict) {
			return TokenRing{}, err
		}
	}
	return TokenRing{}, &ConflictError{"token key ring: too many concurrent changes; retry"}
}

// RotateTokenKey puts a new signing key first. Retired keys stay until every
// token they signed has expired (six hours), then are dropped.
func (r *Registry) RotateTokenKey(ctx context.Context) (TokenRing, error) {
	for range 10 {
		var tr TokenRing
		rev, err := r.getJSON(ctx, KeyTokenRing, &tr)
		if err != nil {
			return TokenRing{}, err
		}
		now := r.now()
		var maxID uint16
		keep := []TokenKey{}
		for _, k := range tr.Keys {
			maxID = max(maxID, k.ID)
			if k.Retired.IsZero() {
				k.Retired = now
			}
			if now.Sub(k.Retired) <= token.MaxTTL {
				keep = append(keep, k)
			}
		}
		tr.Keys = append([]TokenKey{newTokenKey(maxID+1, now)}, keep...)
		_, err = r.putJSON(ctx, KeyTokenRing, tr, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return tr, err
	}
	return TokenRing{}, &ConflictError{"token key ring: too many concurrent changes; retry"}
}

func newTokenKey(id uint16, now time.Time) TokenKey {
	secret := make([]byte, 32)
	rand.Read(secret)
	return TokenKey{ID: id, Secret: secret, Created: now.UTC()}
}

// DecodeRole reads a role record.
func DecodeRole(it store.Item) (*config.Role, error) {
	var role config.Role
	if err := json.Unmarshal(it.Value, &role); err != nil {
		return nil, fmt.Errorf("decode %s: %w", it.Key, err)
	}
	return &role, nil
}

// DecodeRelay reads a relay record.
func DecodeRelay(it store.Item) (Relay, error) {
	var rl Relay
	if err := json.Unmarshal(it.Value, &rl); err != nil {
		return Relay{}, fmt.Errorf("decode %s: %w", it.Key, err)
	}
	return rl, nil
}
