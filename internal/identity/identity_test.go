package identity

import (
	"context"
	"errors"
	"fmt"
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

// FuzzRelay sends arbitrary X-Instance-Id and X-Instance-Id-Signature
// headers (absent, one value or two), signed with the relay's secret or
// not, from a relay, from an instance and from an unknown address. From the
// relay, a request is resolved only with one id, one signature that is the
// id's under the relay's secret, and a running instance of that id, and it
// is resolved to that instance; anything else is ErrBadRelay, never the
// default instance. From elsewhere, the headers change nothing.
func FuzzRelay(f *testing.F) {
	secret := []byte("relay-secret-relay-secret-relay-")
	b := fleet.NewBuilder(nil, nil, nil)
	for _, in := range []struct {
		id, addr string
		state    metadata.State
	}{
		{"i-0000000000000000a", "10.0.0.1", metadata.Running},
		{"i-0000000000000000b", "10.0.0.2", metadata.Running},
		{"i-0000000000000000c", "10.0.0.3", metadata.Terminated},
	} {
		b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: in.id, Addresses: []string{in.addr}}, State: in.state, Revision: 1})
	}
	b.PutRelay(registry.Relay{Name: "hv1", Addresses: []string{"10.1.0.1", "fd00::1"}, Secret: secret})
	s := b.Snapshot(fleet.Settings{DefaultInstance: "i-0000000000000000a"})
	sources := []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.0.2.1")}

	for _, id := range []string{"i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c", "i-0000000000000000d", ""} {
		f.Add(uint8(0), id, "", true, uint8(3))
		f.Add(uint8(2), id, "", true, uint8(3))
	}
	f.Add(uint8(1), "i-0000000000000000b", strings.ToUpper(Sign(secret, "i-0000000000000000b")), false, uint8(3))
	f.Add(uint8(0), "i-0000000000000000b", "", true, uint8(7))
	f.Add(uint8(0), "i-0000000000000000b", "", true, uint8(11))
	f.Add(uint8(0), "i-0000000000000000b", "", true, uint8(2))
	f.Add(uint8(3), "i-0000000000000000b", "", true, uint8(0))
	f.Fuzz(func(t *testing.T, from uint8, id, sig string, signed bool, present uint8) {
		if signed {
			sig = Sign(secret, id)
		}
		src := sources[int(from)%len(sources)]
		r := httptest.NewRequest("GET", "/latest/meta-data/", nil)
		// present: bit 0 sends the id, bit 1 the signature; bits 2 and 3
		// send each a second time.
		var ids, sigs []string
		for i, v := range []struct {
			vals *[]string
			val  string
		}{{&ids, id}, {&sigs, sig}} {
			if present&(1<<i) != 0 {
				*v.vals = append(*v.vals, v.val)
				if present&(4<<i) != 0 {
					*v.vals = append(*v.vals, v.val)
				}
			}
		}
		if ids != nil {
			r.Header[HeaderInstanceID] = ids
		}
		if sigs != nil {
			r.Header[HeaderSignature] = sigs
		}
		e, via, err := Resolve(s, r, src)

		if s.RelayAt(src) == nil {
			bare := httptest.NewRequest("GET", "/latest/meta-data/", nil)
			e2, via2, err2 := Resolve(s, bare, src)
			if e != e2 || via != via2 || fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("from %s, relay headers %q %q changed the answer: %v %v %v, without them %v %v %v", src, ids, sigs, e, via, err, e2, via2, err2)
			}
			return
		}
		want := len(ids) == 1 && len(sigs) == 1 && sigs[0] == Sign(secret, ids[0]) && s.ByID(ids[0]) != nil
		switch {
		case want && (err != nil || via != ViaRelay || e == nil || e.Instance.ID != ids[0]):
			t.Fatalf("relay with id %q, signature %q: %v, %v, %v; want %s by relay", ids, sigs, e, via, err, ids[0])
		case !want && (!errors.Is(err, ErrBadRelay) || e != nil || via != ViaNone):
			t.Fatalf("relay with id %q, signature %q: %v, %v, %v; want ErrBadRelay", ids, sigs, e, via, err)
		}
	})
}
