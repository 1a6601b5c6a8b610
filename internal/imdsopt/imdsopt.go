// Package imdsopt holds the values of EC2's instance metadata options, one
// definition and one check each, so that the configuration file, the
// registry, the EC2 Query API and the admin API accept the same values and
// say the same thing when they refuse one.
//
// The configuration, the registry's records and the EC2 API carry the
// options in these types; their JSON, YAML and XML spellings are EC2's
// values.
package imdsopt

import (
	"errors"
	"fmt"
	"strings"
)

// Tokens is http-tokens: whether a request needs a session token (IMDSv2).
type Tokens string

// The values of http-tokens.
const (
	Optional Tokens = "optional"
	Required Tokens = "required"
)

// Validate checks that t is optional or required.
func (t Tokens) Validate() error { return oneOf(string(t), Optional, Required) }

// ValidateDefault checks t as an account default, which may also be
// no-preference.
func (t Tokens) ValidateDefault() error {
	if t == NoPreference {
		return nil
	}
	return orNoPreference(t.Validate())
}

// State is enabled or disabled: the value of http-endpoint,
// http-protocol-ipv6, instance-metadata-tags and the account defaults'
// http-tokens-enforced.
type State string

// The values of a State.
const (
	Enabled  State = "enabled"
	Disabled State = "disabled"
)

// Validate checks that s is enabled or disabled.
func (s State) Validate() error { return oneOf(string(s), Enabled, Disabled) }

// ValidateDefault checks s as an account default, which may also be
// no-preference.
func (s State) ValidateDefault() error {
	if s == NoPreference {
		return nil
	}
	return orNoPreference(s.Validate())
}

// HopLimit is http-put-response-hop-limit: the IP TTL (IPv6 hop limit) of
// the packets that answer a token request.
type HopLimit int

// The bounds of a hop limit.
const (
	MinHopLimit HopLimit = 1
	MaxHopLimit HopLimit = 64
)

// Validate checks that h is 1 to 64.
func (h HopLimit) Validate() error {
	if h < MinHopLimit || h > MaxHopLimit {
		return &ValueError{Value: fmt.Sprint(int(h)), Min: int(MinHopLimit), Max: int(MaxHopLimit)}
	}
	return nil
}

// ValidateDefault checks h as an account default, which may also be
// NoPreferenceHopLimit.
func (h HopLimit) ValidateDefault() error {
	if h == NoPreferenceHopLimit {
		return nil
	}
	return orNoPreference(h.Validate())
}

// ImdsSupport is an image's imds-support. An image without it has none;
// V2 is the only value it can be given.
type ImdsSupport string

// V2 is imds-support v2.0: instances launched from the image require
// tokens and get hop limit 2.
const V2 ImdsSupport = "v2.0"

// Validate checks that s is v2.0.
func (s ImdsSupport) Validate() error { return oneOf(string(s), V2) }

// What ModifyInstanceMetadataDefaults takes to clear an account default.
const (
	NoPreference         = "no-preference"
	NoPreferenceHopLimit = -1
)

// ValueError is a value an option does not take. Its text is what the
// option wants ("want one of optional, required", "want 1 to 64"): the
// entry point that reports it names the key or parameter and the value in
// its own form.
type ValueError struct {
	// Value is the value refused, as given.
	Value string
	// OneOf are the values the option takes; nil for a number.
	OneOf []string
	// Min and Max bound a number.
	Min, Max int
	// NoPreference says that the value was an account default, which may
	// also be no-preference (NoPreferenceHopLimit for a number).
	NoPreference bool
}

// Values are the values taken, no-preference included where it is.
func (e *ValueError) Values() []string {
	if e.NoPreference && e.OneOf != nil {
		return append(e.OneOf[:len(e.OneOf):len(e.OneOf)], NoPreference)
	}
	return e.OneOf
}

func (e *ValueError) Error() string {
	vs := e.Values()
	switch {
	case vs == nil && e.NoPreference:
		return fmt.Sprintf("want %d to %d, or %d for no preference", e.Min, e.Max, NoPreferenceHopLimit)
	case vs == nil:
		return fmt.Sprintf("want %d to %d", e.Min, e.Max)
	case len(vs) == 1:
		return "want " + vs[0]
	}
	return "want one of " + strings.Join(vs, ", ")
}

func oneOf[T ~string](v string, allowed ...T) error {
	for _, a := range allowed {
		if v == string(a) {
			return nil
		}
	}
	e := &ValueError{Value: v, OneOf: make([]string, len(allowed))}
	for i, a := range allowed {
		e.OneOf[i] = string(a)
	}
	return e
}

// orNoPreference marks err, from Validate, as the error of an account
// default.
func orNoPreference(err error) error {
	if ve, ok := errors.AsType[*ValueError](err); ok {
		ve.NoPreference = true
	}
	return err
}
