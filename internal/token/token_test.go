package token

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testRing(t *testing.T, c *clock, keys ...Key) *Ring {
	t.Helper()
	if len(keys) == 0 {
		keys = []Key{{ID: 1, Secret: bytes.Repeat([]byte{7}, 32)}}
	}
	r, err := NewRing(keys, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestIssueVerify(t *testing.T) {
	c := &clock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := testRing(t, c)
	tok := r.Issue("i-0123456789abcdef0", 21600*time.Second)
	if len(tok) != EncodedLen {
		t.Fatalf("len(token) = %d, want %d", len(tok), EncodedLen)
	}
	if !strings.HasSuffix(tok, "==") {
		t.Errorf("token %q: want base64url with padding, as EC2's", tok)
	}
	left, err := r.Verify(tok, "i-0123456789abcdef0")
	if err != nil || left != 21600*time.Second {
		t.Fatalf("Verify = %v, %v; want 6h, nil", left, err)
	}

	c.t = c.t.Add(25 * time.Second)
	if left, _ := r.Verify(tok, "i-0123456789abcdef0"); left != 21575*time.Second {
		t.Errorf("after 25s left = %v, want 5h59m35s", left)
	}
}

func TestVerifyRefuses(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	r := testRing(t, c)
	tok := r.Issue("i-aaaaaaaa", 10*time.Second)
	flip := func(i int) string {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other := testRing(t, c, Key{ID: 1, Secret: bytes.Repeat([]byte{8}, 32)})
	for _, tc := range []struct {
		name, tok, instance string
		ring                *Ring
		want                error
	}{
		{"other instance", tok, "i-bbbbbbbb", r, ErrInvalid},
		{"other server key", tok, "i-aaaaaaaa", other, ErrInvalid},
		{"tampered expiry", flip(10), "i-aaaaaaaa", r, ErrInvalid},
		{"tampered mac", flip(40), "i-aaaaaaaa", r, ErrInvalid},
		{"unknown key id", flip(4), "i-aaaaaaaa", r, ErrInvalid},
		{"empty", "", "i-aaaaaaaa", r, ErrMalformed},
		{"short", tok[:55], "i-aaaaaaaa", r, ErrMalformed},
		{"not base64", strings.Repeat("*", EncodedLen), "i-aaaaaaaa", r, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.ring.Verify(tc.tok, tc.instance); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestExpiryIsStrict(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	r := testRing(t, c)
	tok := r.Issue("i-aaaaaaaa", time.Second)
	c.t = c.t.Add(999 * time.Millisecond)
	if _, err := r.Verify(tok, "i-aaaaaaaa"); err != nil {
		t.Fatalf("at 999ms: %v, want valid", err)
	}
	c.t = c.t.Add(time.Millisecond)
	if _, err := r.Verify(tok, "i-aaaaaaaa"); !errors.Is(err, ErrExpired) {
		t.Fatalf("at 1s: %v, want ErrExpired", err)
	}
}

func TestRotation(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	old := Key{ID: 1, Secret: bytes.Repeat([]byte{1}, 32)}
	next := Key{ID: 2, Secret: bytes.Repeat([]byte{2}, 32)}
	tok := testRing(t, c, old).Issue("i-aaaaaaaa", time.Hour)
	rotated := testRing(t, c, next, old)
	if _, err := rotated.Verify(tok, "i-aaaaaaaa"); err != nil {
		t.Errorf("token of the previous key after rotation: %v, want valid", err)
	}
	if _, err := testRing(t, c, next).Verify(tok, "i-aaaaaaaa"); !errors.Is(err, ErrInvalid) {
		t.Errorf("token of a retired key: %v, want ErrInvalid", err)
	}
}

func TestNewRingRefuses(t *testing.T) {
	for _, keys := range [][]Key{
		nil,
		{{ID: 1, Secret: make([]byte, 16)}},
		{{ID: 1, Secret: make([]byte, 32)}, {ID: 1, Secret: make([]byte, 32)}},
	} {
		if _, err := NewRing(keys, nil); err == nil {
			t.Errorf("NewRing(%d keys) = nil error", len(keys))
		}
	}
}

// FuzzVerify checks Verify against arbitrary tokens and instance ids, and
// against tokens of the ring with one character changed: a token is accepted
// only as Issue wrote it, for the instance it was issued to, and every
// refusal is one of the package's errors.
func FuzzVerify(f *testing.F) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	r, _ := NewRing([]Key{{ID: 1, Secret: bytes.Repeat([]byte{7}, 32)}}, c.now)
	other, _ := NewRing([]Key{{ID: 2, Secret: bytes.Repeat([]byte{7}, 32)}}, c.now)
	tok := r.Issue("i-aaaaaaaa", time.Hour)
	f.Add(tok, "i-aaaaaaaa", uint8(0), byte(0))
	f.Add(tok, "i-aaaaaaab", uint8(55), byte('A'))
	f.Add(r.Issue("i-aaaaaaaa", -time.Second), "i-aaaaaaaa", uint8(10), byte('-'))
	f.Add(other.Issue("i-aaaaaaaa", time.Hour), "i-aaaaaaaa", uint8(3), byte('B'))
	f.Add(strings.TrimRight(tok, "=")+"AA", "i-aaaaaaaa", uint8(54), byte('='))
	f.Add("", "", uint8(0), byte(0))
	f.Add(strings.Repeat("A", EncodedLen), "i-aaaaaaaa", uint8(1), byte('Q'))
	f.Fuzz(func(t *testing.T, tok, instance string, pos uint8, ch byte) {
		left, err := r.Verify(tok, instance)
		switch {
		case err == nil:
			if left <= 0 || left > time.Hour {
				t.Fatalf("Verify(%q) accepted with %v left", tok, left)
			}
			if tok != r.Issue(instance, left) {
				t.Fatalf("Verify accepted a token that Issue would not produce: %q", tok)
			}
		case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired):
			t.Fatalf("Verify(%q): error %v is none of the package's", tok, err)
		}

		// A token of the ring verifies for its instance with its TTL, and
		// for no other instance; changed in one character, it is refused.
		issued := r.Issue(instance, time.Minute)
		if left, err := r.Verify(issued, instance); err != nil || left != time.Minute {
			t.Fatalf("token issued for %q: %v left, %v", instance, left, err)
		}
		if _, err := r.Verify(issued, instance+"x"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("token issued for %q accepted for %q: %v", instance, instance+"x", err)
		}
		b := []byte(issued)
		b[int(pos)%len(b)] = ch
		if changed := string(b); changed != issued {
			if _, err := r.Verify(changed, instance); err == nil {
				t.Fatalf("token issued as %q accepted as %q", issued, changed)
			}
		}
	})
}
