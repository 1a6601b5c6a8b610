// Package identity decides which instance is calling the data plane.
//
// The chain is tried in order and the first rule that applies decides:
//  1. a bound listener (one listener serves one instance);
//  2. a signed relay: a request from a relay's address names the instance in
//     X-Instance-ID and proves it with X-Instance-ID-Signature, the hex
//     HMAC-SHA256 of the id under the relay's secret (OpenStack's metadata
//     proxy headers). X-Forwarded-For is never trusted;
//  3. the caller's source address;
//  4. the default instance (single-instance mode).
package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/registry"
)

// Relay headers.
const (
	HeaderInstanceID = "X-Instance-Id"
	HeaderSignature  = "X-Instance-Id-Signature"
)

var (
	// ErrUnknownCaller: no rule matched.
	ErrUnknownCaller = errors.New("identity: unknown caller")
	// ErrBadRelay: a relay's request had no valid signature or named an
	// unknown instance.
	ErrBadRelay = errors.New("identity: relay request without a valid signature")
)

type boundKey struct{}

// WithBoundInstance marks ctx (a listener's base context) as serving one
// instance.
func WithBoundInstance(ctx context.Context, instanceID string) context.Context {
	return context.WithValue(ctx, boundKey{}, instanceID)
}

// Via says which rule of the chain identified a caller.
type Via uint8

// The rules, in the order they are tried.
const (
	ViaNone    Via = iota // no rule matched
	ViaBound              // a bound listener
	ViaRelay              // a signed relay header
	ViaAddress            // the source address
	ViaDefault            // the default instance
)

var viaNames = [...]string{"none", "bound", "relay", "address", "default"}

func (v Via) String() string {
	if int(v) < len(viaNames) {
		return viaNames[v]
	}
	return "unknown"
}

// Resolve returns the calling instance and the rule that identified it.
func Resolve(s *fleet.Snapshot, r *http.Request, src netip.Addr) (*fleet.Entry, Via, error) {
	if id, ok := r.Context().Value(boundKey{}).(string); ok {
		if e := s.ByID(id); e != nil {
			return e, ViaBound, nil
		}
		return nil, ViaNone, goneOr(s.GoneByID(id))
	}
	if rl := s.RelayAt(src); rl != nil {
		id, ok := relayInstance(rl.Secret, r.Header)
		if !ok {
			return nil, ViaNone, ErrBadRelay
		}
		if e := s.ByID(id); e != nil {
			return e, ViaRelay, nil
		}
		return nil, ViaNone, ErrBadRelay
	}
	if e := s.ByAddr(src); e != nil {
		return e, ViaAddress, nil
	}
	if g := s.GoneAt(src); g != nil {
		return nil, ViaNone, goneOr(g)
	}
	if e := s.Default(); e != nil {
		return e, ViaDefault, nil
	}
	return nil, ViaNone, ErrUnknownCaller
}

// goneOr is ErrUnknownCaller, saying so when the caller is a stopped or
// terminated instance.
func goneOr(g *fleet.Entry) error {
	if g == nil {
		return ErrUnknownCaller
	}
	return fmt.Errorf("%w: instance %s is %s", ErrUnknownCaller, g.Instance.ID, g.Instance.State.Name())
}

// Sign is the relay signature of an instance id: the lower-case hex
// HMAC-SHA256 of the id under the relay's secret, as OpenStack's metadata
// proxy signs X-Instance-ID.
func Sign(secret []byte, instanceID string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(instanceID))
	return hex.EncodeToString(m.Sum(nil))
}

// relayInstance returns the instance id a relay's request names, when its
// headers hold exactly one id and one signature, and the signature is the
// id's under secret (compared in constant time, as Sign writes it). A
// secret shorter than a relay may have (registry.MinRelaySecret) proves
// nothing and is refused.
//
// The signature carries no time: it binds the id to the secret, and the
// relay's address is what is trusted to send it. It stays valid until the
// relay's secret changes.
func relayInstance(secret []byte, h http.Header) (string, bool) {
	ids, sigs := h[HeaderInstanceID], h[HeaderSignature]
	if len(secret) < registry.MinRelaySecret || len(ids) != 1 || len(sigs) != 1 {
		return "", false
	}
	if !hmac.Equal([]byte(Sign(secret, ids[0])), []byte(sigs[0])) {
		return "", false
	}
	return ids[0], true
}
