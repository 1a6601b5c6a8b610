package token

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestMillionForgeriesRefused tries a million tokens that must all be
// refused: random MACs on well-formed headers, single bit flips of valid
// tokens, tokens of another instance, and tokens signed with another secret
// under the same key id. The generator is seeded, so a failure repeats.
func TestMillionForgeriesRefused(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 20_000
	}
	c := &clock{time.Unix(1_800_000_000, 0)}
	ring, err := NewRing([]Key{{ID: 1, Secret: bytes.Repeat([]byte{7}, 32)}, {ID: 2, Secret: bytes.Repeat([]byte{8}, 32)}}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := NewRing([]Key{{ID: 1, Secret: bytes.Repeat([]byte{9}, 32)}}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	instance := func() string { return fmt.Sprintf("i-%017x", rng.Uint64()>>4) }
	decode := func(tok string) []byte {
		raw, err := enc.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	kinds := []struct {
		name  string
		forge func() (tok, id string)
	}{
		{"random MAC", func() (string, string) {
			var raw [rawLen]byte
			raw[0] = version
			binary.BigEndian.PutUint16(raw[2:4], uint16(1+rng.IntN(2)))
			binary.BigEndian.PutUint64(raw[4:12], uint64(c.now().Add(time.Hour).UnixMilli()))
			for i := 12; i < rawLen; i++ {
				raw[i] = byte(rng.Uint32())
			}
			return enc.EncodeToString(raw[:]), instance()
		}},
		{"bit flip", func() (string, string) {
			id := instance()
			raw := decode(ring.Issue(id, time.Duration(1+rng.IntN(6*3600))*time.Second))
			bit := 8 + rng.IntN((rawLen-1)*8) // past the version byte, which only makes it malformed
			raw[bit/8] ^= 1 << (bit % 8)
			return enc.EncodeToString(raw), id
		}},
		{"other instance", func() (string, string) {
			a, b := instance(), instance()
			for a == b {
				b = instance()
			}
			return ring.Issue(a, time.Hour), b
		}},
		{"other secret", func() (string, string) {
			id := instance()
			return impostor.Issue(id, time.Hour), id
		}},
	}
	refused := make([]int, len(kinds))
	for i := range n {
		k := i % len(kinds)
		tok, id := kinds[k].forge()
		if left, err := ring.Verify(tok, id); err == nil {
			t.Fatalf("%s: token %q accepted for %s with %v left (attempt %d)", kinds[k].name, tok, id, left, i)
		}
		refused[k]++
	}
	for k, kind := range kinds {
		t.Logf("%s: %d refused", kind.name, refused[k])
	}
}
