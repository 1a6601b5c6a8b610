package identity

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
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

// secret is a relay secret; other is another relay's.
var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	other  = []byte("fedcba9876543210fedcba9876543210")
)

// Sign is HMAC-SHA256 in lower-case hex, as OpenStack's metadata proxy
// signs; the vector was computed with Python's hmac module.
func TestSign(t *testing.T) {
	const want = "337abd67cfab946ff00c99085a02e137be7a718d94a6979715538298a53a3016"
	if got := Sign(secret, "i-0123456789abcdef0"); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if Sign(other, "i-0123456789abcdef0") == want || Sign(secret, "i-0123456789abcdef1") == want {
		t.Error("a signature does not depend on the secret and the id")
	}
}

func relayHeaders(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestRelayInstance(t *testing.T) {
	const id = "i-0123456789abcdef0"
	sig := Sign(secret, id)
	for _, tc := range []struct {
		name   string
		secret []byte
		h      http.Header
		ok     bool
	}{
		{"valid", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, sig), true},
		{"OpenStack's spelling of the headers", secret, relayHeaders("X-Instance-ID", id, "X-Instance-ID-Signature", sig), true},
		{"wrong key", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, Sign(other, id)), false},
		{"another relay's secret", other, relayHeaders(HeaderInstanceID, id, HeaderSignature, sig), false},
		{"wrong instance", secret, relayHeaders(HeaderInstanceID, "i-0123456789abcdef1", HeaderSignature, sig), false},
		{"no signature", secret, relayHeaders(HeaderInstanceID, id), false},
		{"no instance id", secret, relayHeaders(HeaderSignature, sig), false},
		{"no headers", secret, http.Header{}, false},
		{"empty signature", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, ""), false},
		{"empty instance id", secret, relayHeaders(HeaderInstanceID, "", HeaderSignature, Sign(secret, "")), true},
		{"upper-case hex", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, strings.ToUpper(sig)), false},
		{"truncated signature", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, sig[:32]), false},
		{"signature with more", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, sig+"00"), false},
		{"signature with spaces", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, " "+sig), false},
		{"raw bytes, not hex", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, string(mustHex(t, sig))), false},
		{"two instance ids", secret, relayHeaders(HeaderInstanceID, id, HeaderInstanceID, id, HeaderSignature, sig), false},
		{"two signatures", secret, relayHeaders(HeaderInstanceID, id, HeaderSignature, sig, HeaderSignature, sig), false},
		{"ids in one header", secret, relayHeaders(HeaderInstanceID, id+","+id, HeaderSignature, sig), false},
		{"empty secret", nil, relayHeaders(HeaderInstanceID, id, HeaderSignature, Sign(nil, id)), false},
		{"short secret", secret[:registry.MinRelaySecret-1], relayHeaders(HeaderInstanceID, id, HeaderSignature, Sign(secret[:registry.MinRelaySecret-1], id)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := relayInstance(tc.secret, tc.h)
			if ok != tc.ok {
				t.Fatalf("got %q, %v; want ok %v", got, ok, tc.ok)
			}
			if ok && got != tc.h.Get(HeaderInstanceID) {
				t.Errorf("got %q, want the id of the header", got)
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// relayFleet has instances a (running), b (running) and c (stopped), and
// one relay at 10.9.0.1 that signs with secret.
func relayFleet(relaySecret []byte) *fleet.Snapshot {
	b := fleet.NewBuilder(nil, nil, nil)
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}}, Revision: 1})
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2"}}, Revision: 1})
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000c", Addresses: []string{"10.0.0.3"}}, State: metadata.Stopped, Revision: 1})
	b.PutRelay(registry.Relay{Name: "hv1", Addresses: []string{"10.9.0.1", "fd00:9::1"}, Secret: relaySecret})
	return b.Snapshot(fleet.Settings{DefaultInstance: "i-0000000000000000b"})
}

func TestResolveRelay(t *testing.T) {
	s := relayFleet(secret)
	const a = "i-0000000000000000a"
	signed := func(id, sig string) *http.Request {
		r := httptest.NewRequest("GET", "/latest/meta-data/", nil)
		r.Header.Set(HeaderInstanceID, id)
		r.Header.Set(HeaderSignature, sig)
		return r
	}
	relay := netip.MustParseAddr("10.9.0.1")
	for _, tc := range []struct {
		name    string
		r       *http.Request
		src     netip.Addr
		wantID  string
		wantVia Via
		wantErr error
	}{
		{"signed by the relay", signed(a, Sign(secret, a)), relay, a, ViaRelay, nil},
		{"relay's IPv6 address", signed(a, Sign(secret, a)), netip.MustParseAddr("fd00:9::1"), a, ViaRelay, nil},
		{"relay's address mapped in IPv6", signed(a, Sign(secret, a)), netip.MustParseAddr("::ffff:10.9.0.1"), a, ViaRelay, nil},
		{"wrong key", signed(a, Sign(other, a)), relay, "", ViaNone, ErrBadRelay},
		{"another instance's signature", signed(a, Sign(secret, "i-0000000000000000b")), relay, "", ViaNone, ErrBadRelay},
		{"unknown instance", signed("i-0000000000000000f", Sign(secret, "i-0000000000000000f")), relay, "", ViaNone, ErrBadRelay},
		{"stopped instance", signed("i-0000000000000000c", Sign(secret, "i-0000000000000000c")), relay, "", ViaNone, ErrBadRelay},
		// Without its headers a relay's request is refused: it falls back
		// neither to the default instance nor to X-Forwarded-For.
		{"relay without headers", httptest.NewRequest("GET", "/", nil), relay, "", ViaNone, ErrBadRelay},
		{"relay with X-Forwarded-For", func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X-Forwarded-For", "10.0.0.1")
			return r
		}(), relay, "", ViaNone, ErrBadRelay},
		// From anywhere but a relay the headers count for nothing: an
		// instance that learned a signature cannot pass for another.
		{"headers from an instance", signed(a, Sign(secret, a)), netip.MustParseAddr("10.0.0.2"), "i-0000000000000000b", ViaAddress, nil},
		{"headers from an unknown address", signed(a, Sign(secret, a)), netip.MustParseAddr("10.0.0.99"), "i-0000000000000000b", ViaDefault, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, via, err := Resolve(s, tc.r, tc.src)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if via != tc.wantVia {
				t.Errorf("via %s, want %s", via, tc.wantVia)
			}
			if tc.wantID == "" {
				if e != nil {
					t.Errorf("identified %s, want none", e.Instance.ID)
				}
				return
			}
			if e == nil || e.Instance.ID != tc.wantID {
				t.Errorf("identified %v, want %s", e, tc.wantID)
			}
		})
	}
}

// A signature carries no time, so the same request is accepted again (the
// relay's address is what is trusted); a new relay secret ends it.
func TestRelaySignatureLastsUntilTheSecretChanges(t *testing.T) {
	const a = "i-0000000000000000a"
	r := httptest.NewRequest("GET", "/latest/meta-data/", nil)
	r.Header.Set(HeaderInstanceID, a)
	r.Header.Set(HeaderSignature, Sign(secret, a))
	relay := netip.MustParseAddr("10.9.0.1")
	s := relayFleet(secret)
	for i := range 2 {
		if e, via, err := Resolve(s, r, relay); err != nil || via != ViaRelay || e.Instance.ID != a {
			t.Fatalf("request %d: %v, %s, %v", i+1, e, via, err)
		}
	}
	if _, _, err := Resolve(relayFleet(other), r, relay); !errors.Is(err, ErrBadRelay) {
		t.Errorf("after the secret changed: %v, want ErrBadRelay", err)
	}
	// A relay record without a secret (the registry never writes one) would
	// take anyone's HMAC under the empty key.
	r.Header.Set(HeaderSignature, Sign(nil, a))
	if _, _, err := Resolve(relayFleet(nil), r, relay); !errors.Is(err, ErrBadRelay) {
		t.Errorf("relay without a secret: %v, want ErrBadRelay", err)
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
