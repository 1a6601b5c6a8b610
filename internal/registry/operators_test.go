package registry

import (
	"testing"
)

// TestOperatorMissesBounded: however many unknown ids are tried, the cache
// remembers at most MaxMisses of them.
func TestOperatorMissesBounded(t *testing.T) {
	r := newRegistry(t)
	c := NewOperatorCache(r, OperatorCacheOptions{MaxMisses: 8})
	for range 100 {
		if _, ok := c.Secret(t.Context(), NewOperator().AccessKeyID); ok {
			t.Fatal("a made-up key id was accepted")
		}
	}
	c.mu.Lock()
	n := len(c.misses)
	c.mu.Unlock()
	if n > 8 {
		t.Errorf("%d misses remembered, want at most 8", n)
	}
	if got := c.Stats().StoreLookups; got != 100 {
		t.Errorf("%d store lookups, want 100", got)
	}
}

// TestOperatorWatchChanges: changes the watch brings add and drop keys, and
// a key added elsewhere clears its remembered miss.
func TestOperatorWatchChanges(t *testing.T) {
	r := newRegistry(t)
	c := NewOperatorCache(r, OperatorCacheOptions{})
	rev, err := c.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ch := r.st.Watch(ctx, PrefixOperators, rev)
	op := NewOperator()
	if _, ok := c.Secret(ctx, op.AccessKeyID); ok {
		t.Fatal("unknown key accepted")
	}
	if _, err := r.putJSON(ctx, PrefixOperators+op.AccessKeyID, op, 0); err != nil {
		t.Fatal(err)
	}
	c.apply(<-ch)
	if s, ok := c.Secret(ctx, op.AccessKeyID); !ok || s != op.SecretAccessKey {
		t.Fatalf("added key: %q, %v; want its secret", s, ok)
	}
	if err := r.st.Delete(ctx, PrefixOperators+op.AccessKeyID, -1); err != nil {
		t.Fatal(err)
	}
	c.apply(<-ch)
	if _, ok := (*c.ops.Load())[op.AccessKeyID]; ok {
		t.Error("revoked key still cached")
	}
}
