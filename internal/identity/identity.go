// Package identity decides which instance is calling the data plane.
//
// The chain is tried in order and the first rule that applies decides:
// the caller's source address, then the default instance (single-instance
// mode). Bound listeners and signed relays come before both when configured.
package identity

import (
	"net/netip"

	"github.com/imds/imds/internal/fleet"
)

// Resolve returns the instance at src, or the default instance, or nil when the
// caller is unknown and must be refused.
func Resolve(s *fleet.Snapshot, src netip.Addr) *fleet.Entry {
	if e := s.ByAddr(src); e != nil {
		return e
	}
	return s.Default()
}
