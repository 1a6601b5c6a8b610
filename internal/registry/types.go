// Package registry is the fleet's source of truth as records in a store:
// instances, roles, images, per-region account defaults, relays and the token
// key ring. It enforces EC2's rules on writes (option values, precedence at
// registration, one instance per address) so that every API and the config
// seeding share them.
package registry

import (
	"errors"
	"fmt"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/metadata"
)

// Key prefixes in the store.
const (
	PrefixInstances = "instances/"
	PrefixAddresses = "addresses/"
	PrefixRoles     = "roles/"
	PrefixImages    = "images/"
	PrefixDefaults  = "defaults/"
	PrefixRelays    = "relays/"
	KeyTokenRing    = "keys/token"
)

// Options are an instance's resolved metadata options, in EC2's values.
type Options struct {
	HTTPTokens              imdsopt.Tokens   `json:"http-tokens"`                 // optional | required
	HTTPPutResponseHopLimit imdsopt.HopLimit `json:"http-put-response-hop-limit"` // 1..64
	HTTPEndpoint            imdsopt.State    `json:"http-endpoint"`               // enabled | disabled
	HTTPProtocolIPv6        imdsopt.State    `json:"http-protocol-ipv6"`          // enabled | disabled
	InstanceMetadataTags    imdsopt.State    `json:"instance-metadata-tags"`      // enabled | disabled
}

func (o Options) tagsEnabled() bool {
	return o.InstanceMetadataTags == imdsopt.Enabled
}

// Instance is a registered instance: what the operator gave, the options
// resolved when it was registered (EC2 resolves them at launch), and when.
// It is the in-memory form; the store holds it as a record of its own
// layout and schema version (see InstanceSchema).
type Instance struct {
	Spec       config.Instance
	Options    Options
	LaunchTime time.Time
	// SeedHash is set on instances that came from the configuration file: the
	// hash of their entry when it was last applied.
	SeedHash string
	// State is the instance's EC2 state; "" is running. Package events moves
	// it on when its time comes (StateUntil ends a transitional state).
	State       metadata.State
	StateUntil  time.Time
	StateReason string
	// Revision is the store revision of this record.
	Revision int64
}

// Defaults are a region's account-level metadata defaults; empty or zero
// means "no preference".
type Defaults struct {
	HTTPTokens              imdsopt.Tokens   `json:"http-tokens,omitempty"`
	HTTPPutResponseHopLimit imdsopt.HopLimit `json:"http-put-response-hop-limit,omitempty"`
	HTTPEndpoint            imdsopt.State    `json:"http-endpoint,omitempty"`
	InstanceMetadataTags    imdsopt.State    `json:"instance-metadata-tags,omitempty"`
	HTTPTokensEnforced      imdsopt.State    `json:"http-tokens-enforced,omitempty"`
}

// tokensEnforced reports whether the defaults enforce IMDSv2: no instance
// of their region may have optional tokens.
func (d Defaults) tokensEnforced() bool {
	return d.HTTPTokensEnforced == imdsopt.Enabled
}

// Image is what imds knows of an AMI: whether it requires IMDSv2.
type Image struct {
	ImageID     string              `json:"image-id"`
	ImdsSupport imdsopt.ImdsSupport `json:"imds-support,omitempty"` // "" or "v2.0"
}

// Relay is a trusted forwarder: requests from its addresses carry an instance
// id signed with its secret.
type Relay struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Secret    []byte   `json:"secret"`
}

// NotFoundError: no such instance, image, role or relay.
type NotFoundError struct {
	Kind, ID string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %s does not exist", e.Kind, e.ID) }

// InvalidError: a value EC2 would refuse.
type InvalidError struct {
	Field, Value, Msg string
}

func (e *InvalidError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Msg)
}

// ErrConflict: the record changed since it was read (If-Match failed), or
// another instance holds an address.
var ErrConflict = errors.New("registry: conflict")

// ConflictError explains a conflict.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }
func (e *ConflictError) Unwrap() error { return ErrConflict }
