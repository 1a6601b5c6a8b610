package identity

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

// A caller that is a stopped or terminated instance is refused as unknown,
// and the error says why.
func TestGoneInstanceIsUnknown(t *testing.T) {
	b := fleet.NewBuilder(nil, nil, nil)
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}}, State: metadata.Terminated, Revision: 1})
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2"}}, State: metadata.Stopped, Revision: 1})
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000c", Addresses: []string{"10.0.0.2"}}, Revision: 1})
	s := b.Snapshot(fleet.Settings{})
	r := httptest.NewRequest("GET", "/latest/meta-data/", nil)

	_, _, err := Resolve(s, r, netip.MustParseAddr("10.0.0.1"))
	if !errors.Is(err, ErrUnknownCaller) || !strings.Contains(err.Error(), "i-0000000000000000a is terminated") {
		t.Errorf("terminated instance's address: %v", err)
	}
	bound := r.WithContext(WithBoundInstance(context.Background(), "i-0000000000000000a"))
	if _, _, err := Resolve(s, bound, netip.MustParseAddr("127.0.0.1")); !errors.Is(err, ErrUnknownCaller) || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("terminated instance's bound listener: %v", err)
	}
	// A running instance that has the address of a stopped one is served.
	if e, _, err := Resolve(s, r, netip.MustParseAddr("10.0.0.2")); err != nil || e.Instance.ID != "i-0000000000000000c" {
		t.Errorf("address shared with a stopped instance: %v, %v", e, err)
	}
}
