package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/imds/imds/internal/store"
)

// PrefixOperators holds the control plane's operator credentials.
const PrefixOperators = "operators/"

// Operator is an access key that may use the control plane.
type Operator struct {
	AccessKeyID     string `json:"access-key-id"`
	SecretAccessKey string `json:"secret-access-key"`
	// Created is when the key was made; zero for keys made before it was
	// recorded.
	Created time.Time `json:"created,omitzero"`
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
	op := r.newOperator()
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

// Operators returns every operator key, in key id order.
func (r *Registry) Operators(ctx context.Context) ([]Operator, error) {
	items, err := r.list(ctx, PrefixOperators)
	if err != nil {
		return nil, err
	}
	out := make([]Operator, 0, len(items))
	for _, it := range items {
		var op Operator
		if err := json.Unmarshal(it.Value, &op); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Key, err)
		}
		out = append(out, op)
	}
	return out, nil
}

// AddOperator makes a new operator key and stores it. The answer is the only
// place its secret is ever given out.
func (r *Registry) AddOperator(ctx context.Context) (Operator, error) {
	op := r.newOperator()
	if _, err := r.putJSON(ctx, PrefixOperators+op.AccessKeyID, op, store.Absent); err != nil {
		return Operator{}, fmt.Errorf("store operator key: %w", err)
	}
	return op, nil
}

// RevokeOperator removes an operator key. Every replica refuses it once its
// OperatorCache has seen the change. The last key cannot be revoked: nobody
// could use the control plane any more.
func (r *Registry) RevokeOperator(ctx context.Context, accessKeyID string) error {
	ops, err := r.Operators(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, op := range ops {
		found = found || op.AccessKeyID == accessKeyID
	}
	if !found {
		return &NotFoundError{"operator key", accessKeyID}
	}
	if len(ops) == 1 {
		return &ConflictError{fmt.Sprintf("operator key %s is the last one: add another first, or nobody could use the control plane", accessKeyID)}
	}
	c, cancel := r.bound(ctx)
	defer cancel()
	err = r.st.Delete(c, PrefixOperators+accessKeyID, store.Any)
	if errors.Is(err, store.ErrNotFound) {
		return &NotFoundError{"operator key", accessKeyID}
	}
	return err
}

func (r *Registry) newOperator() Operator {
	op := NewOperator()
	op.Created = r.now().UTC().Truncate(time.Second)
	return op
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

// Defaults of OperatorCacheOptions.
const (
	DefaultOperatorLookupTimeout = 2 * time.Second
	DefaultOperatorMaxLookups    = 4
	DefaultOperatorMissTTL       = 5 * time.Second
	DefaultOperatorMaxMisses     = 4096
)

// OperatorCacheOptions tune an OperatorCache; zero values take the defaults.
type OperatorCacheOptions struct {
	// LookupTimeout bounds a store lookup of an unknown key id.
	LookupTimeout time.Duration
	// MaxLookups is how many unknown key ids may be looked up in the store
	// at once. Beyond that an unknown id is refused without asking the store.
	MaxLookups int
	// MissTTL is how long an id the store did not know is refused without
	// asking again.
	MissTTL time.Duration
	// MaxMisses bounds how many such ids are remembered.
	MaxMisses int
	Now       func() time.Time
	Logger    *slog.Logger
}

// OperatorCache answers the control plane's key lookups from memory. Load
// fills it from the store and Run keeps it current with a watch, so that a key
// added or revoked on any replica is known here as soon as the watch brings
// the change.
//
// An id not in memory (a key added elsewhere whose change has not arrived
// yet, or made up) is looked up in the store, with a deadline, never under a
// lock that other requests wait on, once at a time per id, and at most
// MaxLookups at a time in all: a flood of requests signed with made-up ids
// costs the store a bounded load and never delays a known key, which is
// answered from an immutable map without a lock. A miss is remembered for
// MissTTL.
type OperatorCache struct {
	reg *Registry
	o   OperatorCacheOptions
	log *slog.Logger

	ops     atomic.Pointer[map[string]string] // copied on change
	lookups chan struct{}                     // lookup slots
	sf      singleflight.Group

	mu     sync.Mutex           // guards misses, gen and replacing ops
	misses map[string]time.Time // id -> when the miss expires
	gen    uint64               // bumped by every change the watch brings

	storeLookups atomic.Int64
	busy         atomic.Int64
}

// NewOperatorCache returns an empty cache over reg; call Load, then Run.
func NewOperatorCache(reg *Registry, o OperatorCacheOptions) *OperatorCache {
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = DefaultOperatorLookupTimeout
	}
	if o.MaxLookups <= 0 {
		o.MaxLookups = DefaultOperatorMaxLookups
	}
	if o.MissTTL <= 0 {
		o.MissTTL = DefaultOperatorMissTTL
	}
	if o.MaxMisses <= 0 {
		o.MaxMisses = DefaultOperatorMaxMisses
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &OperatorCache{reg: reg, o: o, log: o.Logger, lookups: make(chan struct{}, o.MaxLookups), misses: map[string]time.Time{}}
	c.ops.Store(&map[string]string{})
	return c
}

// OperatorCacheStats count what the cache did beyond answering from memory.
type OperatorCacheStats struct {
	// StoreLookups are lookups of unknown ids in the store.
	StoreLookups int64
	// Busy are unknown ids refused without a lookup because MaxLookups were
	// already under way.
	Busy int64
}

// Stats reports the cache's counters.
func (c *OperatorCache) Stats() OperatorCacheStats {
	return OperatorCacheStats{StoreLookups: c.storeLookups.Load(), Busy: c.busy.Load()}
}

// Secret implements controlplane.Operators.
func (c *OperatorCache) Secret(ctx context.Context, accessKeyID string) (string, bool) {
	if s, ok := (*c.ops.Load())[accessKeyID]; ok {
		return s, true
	}
	if c.missed(accessKeyID) {
		return "", false
	}
	v, _, _ := c.sf.Do(accessKeyID, func() (any, error) {
		select {
		case c.lookups <- struct{}{}:
			defer func() { <-c.lookups }()
		default:
			c.busy.Add(1)
			return "", nil
		}
		return c.lookup(ctx, accessKeyID), nil
	})
	s := v.(string)
	return s, s != ""
}

// lookup asks the store for an id; "" when it is unknown or the store did not
// answer in time.
func (c *OperatorCache) lookup(ctx context.Context, id string) string {
	c.storeLookups.Add(1)
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.LookupTimeout)
	defer cancel()
	it, err := c.reg.st.Get(ctx, PrefixOperators+id)
	if errors.Is(err, store.ErrNotFound) {
		c.addMiss(id)
		return ""
	}
	if err != nil {
		c.log.Warn("operator key lookup failed", "component", "operators", "access_key_id", id, "err", err)
		return "" // the store is away: nothing is cached
	}
	var op Operator
	if err := json.Unmarshal(it.Value, &op); err != nil || op.SecretAccessKey == "" {
		c.log.Error("skip bad operator record", "component", "operators", "key", it.Key, "err", err)
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A change seen meanwhile (a revocation) may be newer than what was
	// read: then the watch, not this lookup, says what the cache holds.
	if c.gen == gen {
		c.setLocked(id, op.SecretAccessKey)
	}
	return op.SecretAccessKey
}

func (c *OperatorCache) missed(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.misses[id]
	if !ok {
		return false
	}
	if c.o.Now().Before(exp) {
		return true
	}
	delete(c.misses, id)
	return false
}

func (c *OperatorCache) addMiss(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	if len(c.misses) >= c.o.MaxMisses {
		for k, exp := range c.misses {
			if !now.Before(exp) {
				delete(c.misses, k)
			}
		}
	}
	for k := range c.misses { // still full: forget any one
		if len(c.misses) < c.o.MaxMisses {
			break
		}
		delete(c.misses, k)
	}
	c.misses[id] = now.Add(c.o.MissTTL)
}

// setLocked adds or, with secret "", removes a key. c.mu is held.
func (c *OperatorCache) setLocked(id, secret string) {
	old := *c.ops.Load()
	m := make(map[string]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if secret == "" {
		delete(m, id)
	} else {
		m[id] = secret
		delete(c.misses, id)
	}
	c.ops.Store(&m)
}

// Load replaces the cache's keys with the store's and returns the store
// revision they reflect.
func (c *OperatorCache) Load(ctx context.Context) (int64, error) {
	ctx, cancel := c.reg.bound(ctx)
	defer cancel()
	items, rev, err := c.reg.st.List(ctx, PrefixOperators)
	if err != nil {
		return 0, fmt.Errorf("list operator keys: %w", err)
	}
	m := make(map[string]string, len(items))
	for _, it := range items {
		var op Operator
		if err := json.Unmarshal(it.Value, &op); err != nil || op.SecretAccessKey == "" {
			c.log.Error("skip bad operator record", "component", "operators", "key", it.Key, "err", err)
			continue
		}
		m[strings.TrimPrefix(it.Key, PrefixOperators)] = op.SecretAccessKey
	}
	c.mu.Lock()
	c.gen++
	c.ops.Store(&m)
	c.mu.Unlock()
	return rev, nil
}

// Forget drops a key at once, before the watch brings its removal.
func (c *OperatorCache) Forget(accessKeyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.setLocked(accessKeyID, "")
}

// Run follows the store's operator keys until ctx ends: a key added anywhere
// is known, and a revoked one refused, as soon as the change arrives. When
// the watch ends (compaction, an outage) it lists again.
func (c *OperatorCache) Run(ctx context.Context) error {
	const maxBackoff = 30 * time.Second
	backoff := time.Second
	for {
		rev, err := c.Load(ctx)
		if err == nil {
			backoff = time.Second
			for ev := range c.reg.st.Watch(ctx, PrefixOperators, rev) {
				c.apply(ev)
			}
		} else if ctx.Err() == nil {
			c.log.Warn("operator keys unreadable; keeping the known ones", "component", "operators", "err", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (c *OperatorCache) apply(ev store.Event) {
	id := strings.TrimPrefix(ev.Key, PrefixOperators)
	secret := ""
	if !ev.Deleted {
		var op Operator
		if err := json.Unmarshal(ev.Value, &op); err != nil {
			c.log.Error("skip bad operator record", "component", "operators", "key", ev.Key, "err", err)
		} else {
			secret = op.SecretAccessKey
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.setLocked(id, secret)
}
