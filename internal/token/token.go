// Package token issues and verifies IMDSv2 session tokens.
//
// A token is stateless: it carries its expiry and a MAC that binds it to one
// instance id under a server key. Any replica holding the key ring verifies it,
// nothing is stored per token, a restart does not invalidate it, and a token of
// one instance is refused for every other.
//
// Layout (40 bytes, base64url with padding: 56 characters, the shape of EC2's):
//
//	[0]     format version, 1
//	[1]     reserved, 0
//	[2:4]   key id, big endian
//	[4:12]  expiry, Unix milliseconds, big endian
//	[12:40] HMAC-SHA256(key, bytes[0:12] || instance id), first 28 bytes
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

const (
	rawLen  = 40
	macLen  = 28
	version = 1
	// EncodedLen is the length of a token as sent on the wire.
	EncodedLen = 56
	// MaxTTL is the longest session EC2 grants: six hours.
	MaxTTL = 6 * time.Hour
)

var (
	// ErrMalformed: not a token of this format.
	ErrMalformed = errors.New("token: malformed")
	// ErrInvalid: the MAC does not match, the key is unknown, or the token
	// belongs to another instance. Callers must not tell these apart.
	ErrInvalid = errors.New("token: invalid")
	// ErrExpired: the token was valid and its TTL has elapsed.
	ErrExpired = errors.New("token: expired")
)

// enc is strict: the last character of a token has bits that padding leaves
// unused, and a lenient decoder would accept sixteen spellings of one token.
var enc = base64.URLEncoding.Strict()

// Key is one secret of the key ring.
type Key struct {
	ID     uint16
	Secret []byte // at least 32 bytes
}

// Ring issues tokens with its first key and verifies tokens of any of its keys,
// so that a rotated-out key keeps working until its tokens expire.
type Ring struct {
	keys []ringKey
	now  func() time.Time
}

type ringKey struct {
	id   uint16
	pool *sync.Pool // of *macState keyed with the secret
}

// macState is a keyed hash and scratch space, pooled so that computing a MAC
// allocates nothing.
type macState struct {
	h   hash.Hash
	in  [12 + 64]byte // header and a usual instance id, written at once
	sum [sha256.Size]byte
}

// NewRing makes a ring; keys[0] signs new tokens. now may be nil for time.Now.
func NewRing(keys []Key, now func() time.Time) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: a key ring needs at least one key")
	}
	if now == nil {
		now = time.Now
	}
	r := &Ring{now: now}
	seen := map[uint16]bool{}
	for _, k := range keys {
		if len(k.Secret) < 32 {
			return nil, fmt.Errorf("token: key %d has %d bytes, want at least 32", k.ID, len(k.Secret))
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("token: key id %d appears twice", k.ID)
		}
		seen[k.ID] = true
		secret := append([]byte(nil), k.Secret...)
		r.keys = append(r.keys, ringKey{id: k.ID, pool: &sync.Pool{New: func() any {
			return &macState{h: hmac.New(sha256.New, secret)}
		}}})
	}
	return r, nil
}

// Issue returns a token for instanceID valid for ttl (rounded to milliseconds).
func (r *Ring) Issue(instanceID string, ttl time.Duration) string {
	var raw [rawLen]byte
	k := r.keys[0]
	raw[0] = version
	binary.BigEndian.PutUint16(raw[2:4], k.id)
	binary.BigEndian.PutUint64(raw[4:12], uint64(r.now().Add(ttl).UnixMilli()))
	k.mac(raw[:12], instanceID, raw[12:12:rawLen])
	return enc.EncodeToString(raw[:])
}

// Verify checks that tok was issued for instanceID and has not expired, and
// returns the time it has left.
func (r *Ring) Verify(tok, instanceID string) (time.Duration, error) {
	if len(tok) != EncodedLen {
		return 0, ErrMalformed
	}
	// Decode into room for any 56 characters: a token without padding
	// decodes to more than rawLen bytes.
	var buf [EncodedLen / 4 * 3]byte
	var src [EncodedLen]byte
	copy(src[:], tok)
	n, err := enc.Decode(buf[:], src[:])
	if err != nil || n != rawLen {
		return 0, ErrMalformed
	}
	raw := buf[:rawLen]
	if raw[0] != version || raw[1] != 0 {
		return 0, ErrMalformed
	}
	id := binary.BigEndian.Uint16(raw[2:4])
	for _, k := range r.keys {
		if k.id != id {
			continue
		}
		var sum [macLen]byte
		if !hmac.Equal(k.mac(raw[:12], instanceID, sum[:0]), raw[12:]) {
			return 0, ErrInvalid
		}
		left := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[4:12]))).Sub(r.now())
		if left <= 0 {
			return 0, ErrExpired
		}
		return left, nil
	}
	return 0, ErrInvalid
}

// mac appends the truncated MAC of header||instanceID to dst.
func (k ringKey) mac(header []byte, instanceID string, dst []byte) []byte {
	st := k.pool.Get().(*macState)
	st.h.Reset()
	n := copy(st.in[:], header)
	if m := copy(st.in[n:], instanceID); m == len(instanceID) {
		st.h.Write(st.in[:n+m])
	} else {
		st.h.Write(st.in[:n])
		st.h.Write([]byte(instanceID))
	}
	out := append(dst, st.h.Sum(st.sum[:0])[:macLen]...)
	k.pool.Put(st)
	return out
}
