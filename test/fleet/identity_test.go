package fleet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The instances of the identity tests.
const (
	idBound   = "i-0b0000000000000b1" // served on its own listener at 127.0.0.2
	idRelayed = "i-0b0000000000000b2" // behind the relay at 127.0.0.1
	idFour    = "i-0b0000000000000b4" // calls from 127.0.0.4
	idFive    = "i-0b0000000000000b5" // calls from 127.0.0.5
	relayAddr = "127.0.0.1"
)

const identityConfig = `instances:
  - instance-id: ` + idBound + `
    addresses: [10.9.0.1]
  - instance-id: ` + idRelayed + `
    addresses: [10.9.0.2]
  - instance-id: ` + idFour + `
    addresses: [127.0.0.4]
  - instance-id: ` + idFive + `
    addresses: [127.0.0.5]
`

// relaySign is the relay signature: hex HMAC-SHA256 of the id under secret.
func relaySign(secret []byte, id string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// TestCallerIdentity checks the identity chain beyond source addresses: a
// bound listener serves its instance to any caller, a relay's request is
// its signed instance or refused, and X-Forwarded-For never names the caller.
func TestCallerIdentity(t *testing.T) {
	needLoopbackRange(t)
	cfg := writeFile(t, "fleet.yaml", identityConfig)
	p := startIMDS(t, filepath.Join(t.TempDir(), "data"), "--config", cfg, "--bind", idBound+"=127.0.0.2:0")
	boundAddr, ok := p.Bound[idBound]
	if !ok || !strings.HasPrefix(boundAddr, "127.0.0.2:") {
		t.Fatalf("bound listeners %v, want %s on 127.0.0.2", p.Bound, idBound)
	}
	bound := "http://" + boundAddr
	shared := p.URL()
	relay, four, five, stranger := from(relayAddr), from("127.0.0.4"), from("127.0.0.5"), from("127.0.0.9")

	t.Run("bound listener", func(t *testing.T) {
		// Any caller, an address of another instance or of nobody.
		for _, c := range []*caller{relay, four, five, stranger} {
			if msg := wantInstance(c, bound, "", idBound)(); msg != "" {
				t.Error(msg)
			}
			tok := c.token(t, bound)
			if msg := wantInstance(c, bound, tok, idBound)(); msg != "" {
				t.Errorf("with a token from the bound listener: %s", msg)
			}
		}
		// Its token is the bound instance's: refused for the instance at
		// 127.0.0.4 on the shared listener.
		tok := four.token(t, bound)
		if r := four.instanceID(shared, tok); r.Status != http.StatusUnauthorized {
			t.Errorf("token of %s used by %s on the shared listener: %v, want 401", idBound, idFour, r)
		}
		// The shared listener still tells callers apart by address.
		if msg := wantInstance(four, shared, "", idFour)(); msg != "" {
			t.Error(msg)
		}
		if r := stranger.instanceID(shared, ""); r.Status != http.StatusForbidden {
			t.Errorf("unknown caller on the shared listener: %v, want 403", r)
		}
	})

	var secret []byte
	t.Run("relay registered", func(t *testing.T) {
		if r := relay.instanceID(shared, ""); r.Status != http.StatusForbidden {
			t.Fatalf("%s before it is a relay: %v, want 403 (no instance there)", relayAddr, r)
		}
		out, errOut, code := runIMDS(t, "", "relay", "put", "hv1", "--address", relayAddr, "--admin-url", p.AdminURL, "--data-dir", p.DataDir)
		if code != 0 {
			t.Fatalf("imds relay put: exit %d\n%s%s", code, out, errOut)
		}
		var err error
		secret, err = base64.StdEncoding.DecodeString(strings.TrimSpace(out))
		if err != nil || len(secret) < 16 {
			t.Fatalf("imds relay put printed %q, want a base64 secret: %v", out, err)
		}
		if strings.Contains(errOut, strings.TrimSpace(out)) {
			t.Errorf("imds relay put wrote the secret to standard error too")
		}
		eventually(t, 10*time.Second, wantInstance(relay, shared, "",
			idRelayed, "X-Instance-ID", idRelayed, "X-Instance-ID-Signature", relaySign(secret, idRelayed)))
	})
	if secret == nil {
		t.Fatal("no relay")
	}

	t.Run("relay", func(t *testing.T) {
		sig := relaySign(secret, idRelayed)
		// A token through the relay is the relayed instance's.
		tok := relay.token(t, shared, "X-Instance-ID", idRelayed, "X-Instance-ID-Signature", sig)
		if msg := wantInstance(relay, shared, tok, idRelayed, "X-Instance-ID", idRelayed, "X-Instance-ID-Signature", sig)(); msg != "" {
			t.Errorf("with a token through the relay: %s", msg)
		}
		if r := relay.instanceID(shared, tok, "X-Instance-ID", idFour, "X-Instance-ID-Signature", relaySign(secret, idFour)); r.Status != http.StatusUnauthorized {
			t.Errorf("token of %s relayed for %s: %v, want 401", idRelayed, idFour, r)
		}
		// The relay may speak for any instance it signs for.
		if msg := wantInstance(relay, shared, "", idFour, "X-Instance-ID", idFour, "X-Instance-ID-Signature", relaySign(secret, idFour))(); msg != "" {
			t.Error(msg)
		}
		wrong := make([]byte, len(secret))
		copy(wrong, secret)
		wrong[0] ^= 1
		for _, tc := range []struct {
			name string
			hdr  []string
		}{
			{"no headers", nil},
			{"no signature", []string{"X-Instance-ID", idRelayed}},
			{"empty signature", []string{"X-Instance-ID", idRelayed, "X-Instance-ID-Signature", ""}},
			{"signature without id", []string{"X-Instance-ID-Signature", sig}},
			{"signature under another secret", []string{"X-Instance-ID", idRelayed, "X-Instance-ID-Signature", relaySign(wrong, idRelayed)}},
			{"signature of another instance", []string{"X-Instance-ID", idRelayed, "X-Instance-ID-Signature", relaySign(secret, idFour)}},
			{"signature truncated", []string{"X-Instance-ID", idRelayed, "X-Instance-ID-Signature", sig[:32]}},
			{"signed unknown instance", []string{"X-Instance-ID", "i-0b000000000000fff", "X-Instance-ID-Signature", relaySign(secret, "i-0b000000000000fff")}},
			{"forwarded for an instance", []string{"X-Forwarded-For", "127.0.0.4"}},
		} {
			if r := relay.instanceID(shared, "", tc.hdr...); r.Status != http.StatusForbidden {
				t.Errorf("relay request, %s: %v, want 403", tc.name, r)
			}
			if r := relay.do(http.MethodPut, shared, "/latest/api/token", append(tc.hdr, hdrTTL, "60")...); r.Status != http.StatusForbidden {
				t.Errorf("relay token request, %s: %v, want 403", tc.name, r)
			}
		}
		// Relay headers from a caller that is not a relay decide nothing.
		if msg := wantInstance(five, shared, "", idFive, "X-Instance-ID", idFour, "X-Instance-ID-Signature", relaySign(secret, idFour))(); msg != "" {
			t.Errorf("relay headers from a caller that is not a relay: %s", msg)
		}
		if r := stranger.instanceID(shared, "", "X-Instance-ID", idFour, "X-Instance-ID-Signature", relaySign(secret, idFour)); r.Status != http.StatusForbidden {
			t.Errorf("relay headers from an unknown caller: %v, want 403", r)
		}
		// A bound listener decides before the relay.
		if msg := wantInstance(relay, bound, "", idBound, "X-Instance-ID", idRelayed, "X-Instance-ID-Signature", sig)(); msg != "" {
			t.Errorf("relay headers on the bound listener: %s", msg)
		}
	})

	t.Run("X-Forwarded-For not trusted", func(t *testing.T) {
		xff := func(v string) []string { return []string{"X-Forwarded-For", v} }
		for _, tc := range []struct {
			name string
			c    *caller
			base string
			hdr  []string
			self string // the only instance the caller may get; "" for none
		}{
			{"instance naming another", five, shared, xff("127.0.0.4"), idFive},
			{"instance naming a list", five, shared, xff("127.0.0.4, 127.0.0.5"), idFive},
			{"unknown caller naming an instance", stranger, shared, xff("127.0.0.4"), ""},
			{"relay, signed, naming another", relay, shared, append(xff("127.0.0.4"), "X-Instance-ID", idRelayed, "X-Instance-ID-Signature", relaySign(secret, idRelayed)), idRelayed},
			{"bound listener naming another", four, bound, xff("127.0.0.5"), idBound},
		} {
			r := tc.c.instanceID(tc.base, "", tc.hdr...)
			switch {
			case r.Status == http.StatusOK && r.Body == tc.self && tc.self != "":
			case r.Status == http.StatusForbidden:
			default:
				t.Errorf("GET with X-Forwarded-For, %s: %v, want 403 or 200 %q", tc.name, r, tc.self)
			}
			// EC2 refuses a token request that went through a proxy.
			if r := tc.c.do(http.MethodPut, tc.base, "/latest/api/token", append(tc.hdr, hdrTTL, "60")...); r.Status != http.StatusForbidden {
				t.Errorf("PUT /latest/api/token with X-Forwarded-For, %s: %v, want 403", tc.name, r)
			}
		}
	})
}
