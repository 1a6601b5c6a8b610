package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/imds/imds/internal/store"
)

// PrefixOperators holds the control plane's operator credentials.
const PrefixOperators = "operators/"

// Operator is an access key that may use the control plane.
type Operator struct {
	AccessKeyID     string `json:"access-key-id"`
	SecretAccessKey string `json:"secret-access-key"`
}

// EnsureOperator returns an operator key, creating one on first start.
func (r *Registry) EnsureOperator(ctx context.Context) (Operator, error) {
	items, err := r.list(ctx, PrefixOperators)
	if err != nil {
		return Operator{}, err
	}
	if len(items) > 0 {
		var op Operator
		if err := json.Unmarshal(items[0].Value, &op); err != nil {
			return Operator{}, fmt.Errorf("decode %s: %w", items[0].Key, err)
		}
		return op, nil
	}
	op := NewOperator()
	if _, err := r.putJSON(ctx, PrefixOperators+op.AccessKeyID, op, store.Absent); err != nil {
		return Operator{}, err
	}
	// Replicas starting together on an empty store may each have created a
	// key: all keep the first in key order, and the others remove theirs.
	items, err = r.list(ctx, PrefixOperators)
	if err != nil {
		return Operator{}, err
	}
	var first Operator
	if err := json.Unmarshal(items[0].Value, &first); err != nil {
		return Operator{}, fmt.Errorf("decode %s: %w", items[0].Key, err)
	}
	if first.AccessKeyID != op.AccessKeyID {
		c, cancel := r.bound(ctx)
		_ = r.st.Delete(c, PrefixOperators+op.AccessKeyID, store.Any)
		cancel()
	}
	return first, nil
}

// NewOperator makes a random key pair in AWS's shapes.
func NewOperator() Operator {
	id := make([]byte, 10)
	secret := make([]byte, 30)
	rand.Read(id)
	rand.Read(secret)
	return Operator{
		AccessKeyID:     "IMDS" + strings.ToUpper(strings.TrimRight(base32(id), "=")),
		SecretAccessKey: base64.StdEncoding.EncodeToString(secret),
	}
}

func base32(b []byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	var sb strings.Builder
	var acc, bits uint
	for _, c := range b {
		acc = acc<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			sb.WriteByte(alphabet[(acc>>(bits-5))&31])
			bits -= 5
		}
	}
	return sb.String()
}

// OperatorCache answers control-plane lookups from memory, refreshed from
// the store on a miss (a key added on another replica).
type OperatorCache struct {
	reg *Registry
	mu  sync.Mutex
	ops map[string]string
}

// NewOperatorCache returns a cache over reg.
func NewOperatorCache(reg *Registry) *OperatorCache {
	return &OperatorCache{reg: reg, ops: map[string]string{}}
}

// Secret implements controlplane.Operators.
func (c *OperatorCache) Secret(accessKeyID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.ops[accessKeyID]; ok {
		return s, true
	}
	var op Operator
	if _, err := c.reg.getJSON(context.Background(), PrefixOperators+accessKeyID, &op); err != nil {
		return "", false // unknown, or the store is away: not cached either way
	}
	c.ops[accessKeyID] = op.SecretAccessKey
	return op.SecretAccessKey, true
}
