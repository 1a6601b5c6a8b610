package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
	"github.com/imds/imds/internal/store/etcdstore"
	"github.com/imds/imds/internal/store/etcdstore/etcdtest"
)

// gatedStore is a real store whose reads of operator keys wait for gate, so
// that a test can hold lookups in flight. It counts those reads and reports
// each on started.
type gatedStore struct {
	store.Store
	gate    chan struct{} // closed to let reads through
	started chan struct{}
	gets    atomic.Int64
}

func (s *gatedStore) Get(ctx context.Context, key string) (store.Item, error) {
	if strings.HasPrefix(key, registry.PrefixOperators) {
		s.gets.Add(1)
		s.started <- struct{}{}
		select {
		case <-s.gate:
		case <-ctx.Done():
			return store.Item{}, fmt.Errorf("%w: %w", store.ErrUnavailable, ctx.Err())
		}
	}
	return s.Store.Get(ctx, key)
}

type operatorEnv struct {
	t     *testing.T
	st    *gatedStore
	reg   *registry.Registry
	cache *registry.OperatorCache
	h     *Handler
	op    registry.Operator // a key the cache knows
	now   atomic.Pointer[time.Time]
}

func newOperatorEnv(t *testing.T, o registry.OperatorCacheOptions) *operatorEnv {
	t.Helper()
	bolt, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	e := &operatorEnv{t: t, st: &gatedStore{Store: bolt, gate: make(chan struct{}), started: make(chan struct{}, 10000)}}
	now := adminTestNow
	e.now.Store(&now)
	clock := func() time.Time { return *e.now.Load() }
	e.reg = registry.New(e.st, clock)
	if e.op, err = e.reg.AddOperator(t.Context()); err != nil {
		t.Fatal(err)
	}
	o.Now = clock
	e.cache = registry.NewOperatorCache(e.reg, o)
	if _, err := e.cache.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.h = New(Options{Registry: e.reg, Operators: e.cache, Now: clock})
	return e
}

func (e *operatorEnv) advance(d time.Duration) {
	now := e.now.Load().Add(d)
	e.now.Store(&now)
}

// do sends a request signed with key and secret through the whole handler.
func (e *operatorEnv) do(method, path, key, secret string) *httptest.ResponseRecorder {
	return serveSigned(e.t, e.h, method, path, key, secret, *e.now.Load())
}

func serveSigned(t *testing.T, h http.Handler, method, path, key, secret string, now time.Time) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if err := adminapi.SignRequest(req, nil, key, secret, "us-east-1", "imds", now); err != nil {
		t.Error(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestOperatorFloodDoesNotDelayKnownKey floods the control plane with
// requests signed by made-up key ids while the store hangs: the store is asked
// at most MaxLookups times, every made-up id is refused, and a request
// signed with a known key is answered meanwhile.
func TestOperatorFloodDoesNotDelayKnownKey(t *testing.T) {
	const flood, maxLookups = 300, 4
	e := newOperatorEnv(t, registry.OperatorCacheOptions{MaxLookups: maxLookups, LookupTimeout: time.Hour})
	codes := make(chan int, flood)
	for range flood {
		go func() {
			fake := registry.NewOperator()
			codes <- e.do("GET", "/v1/keys/operator", fake.AccessKeyID, fake.SecretAccessKey).Code
		}()
	}
	// Every flood request is now either refused or held in the store.
	var got []int
	held := 0
	for held+len(got) < flood {
		select {
		case <-e.st.started:
			held++
		case c := <-codes:
			got = append(got, c)
		}
	}
	if held > maxLookups {
		t.Errorf("%d store lookups under way, want at most %d", held, maxLookups)
	}

	// The store still hangs; a known key is answered from memory.
	if rec := e.do("GET", "/v1/keys/operator", e.op.AccessKeyID, e.op.SecretAccessKey); rec.Code != http.StatusOK {
		t.Fatalf("known key during the flood: status %d, body %s", rec.Code, rec.Body)
	}

	close(e.st.gate)
	for len(got) < flood {
		got = append(got, <-codes)
	}
	for i, c := range got {
		if c != http.StatusUnauthorized {
			t.Fatalf("flood request %d: status %d, want 401", i, c)
		}
	}
	st := e.cache.Stats()
	if n := e.st.gets.Load(); n > maxLookups || st.StoreLookups != n {
		t.Errorf("store asked %d times (cache counts %d), want at most %d", n, st.StoreLookups, maxLookups)
	}
	if st.Busy+st.StoreLookups != flood {
		t.Errorf("busy %d + lookups %d, want %d", st.Busy, st.StoreLookups, flood)
	}
}

// TestOperatorLookup: a key stored by another replica, not yet seen by this
// cache, is found in the store once and remembered; an unknown id is asked
// for once per MissTTL; a store that hangs costs a request its lookup
// deadline, not forever.
func TestOperatorLookup(t *testing.T) {
	t.Run("stored elsewhere", func(t *testing.T) {
		e := newOperatorEnv(t, registry.OperatorCacheOptions{})
		close(e.st.gate)
		other, err := e.reg.AddOperator(t.Context()) // as another replica would
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if rec := e.do("GET", "/v1/keys/operator", other.AccessKeyID, other.SecretAccessKey); rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
		}
		if n := e.st.gets.Load(); n != 1 {
			t.Errorf("store asked %d times, want 1", n)
		}
	})
	t.Run("misses cached briefly", func(t *testing.T) {
		e := newOperatorEnv(t, registry.OperatorCacheOptions{MissTTL: 5 * time.Second})
		close(e.st.gate)
		fake := registry.NewOperator()
		for range 3 {
			if rec := e.do("GET", "/v1/keys/operator", fake.AccessKeyID, fake.SecretAccessKey); rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rec.Code)
			}
		}
		if n := e.st.gets.Load(); n != 1 {
			t.Errorf("store asked %d times within the miss TTL, want 1", n)
		}
		e.advance(6 * time.Second)
		e.do("GET", "/v1/keys/operator", fake.AccessKeyID, fake.SecretAccessKey)
		if n := e.st.gets.Load(); n != 2 {
			t.Errorf("store asked %d times after the miss TTL, want 2", n)
		}
	})
	t.Run("store hangs", func(t *testing.T) {
		e := newOperatorEnv(t, registry.OperatorCacheOptions{LookupTimeout: time.Millisecond})
		fake := registry.NewOperator()
		if rec := e.do("GET", "/v1/keys/operator", fake.AccessKeyID, fake.SecretAccessKey); rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", rec.Code)
		}
	})
}

// TestOperatorKeysAPI adds, lists and revokes keys through the admin API.
func TestOperatorKeysAPI(t *testing.T) {
	e := newOperatorEnv(t, registry.OperatorCacheOptions{})
	close(e.st.gate)
	rec := e.do("POST", "/v1/keys/operator", e.op.AccessKeyID, e.op.SecretAccessKey)
	if rec.Code != http.StatusCreated {
		t.Fatalf("add: status %d, body %s", rec.Code, rec.Body)
	}
	var added adminapi.OperatorKey
	if err := json.Unmarshal(rec.Body.Bytes(), &added); err != nil || added.SecretAccessKey == "" || !added.Created.Equal(adminTestNow) {
		t.Fatalf("add: %+v, %v; want a key with its secret, created %v", added, err, adminTestNow)
	}
	if rec := e.do("GET", "/v1/keys/operator", added.AccessKeyID, added.SecretAccessKey); rec.Code != http.StatusOK {
		t.Fatalf("new key: status %d", rec.Code)
	}

	rec = e.do("GET", "/v1/keys/operator", e.op.AccessKeyID, e.op.SecretAccessKey)
	var list adminapi.OperatorKeyList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Keys) != 2 {
		t.Fatalf("list: %s, %v; want two keys", rec.Body, err)
	}
	for _, s := range []string{e.op.SecretAccessKey, added.SecretAccessKey, "secret"} {
		if strings.Contains(rec.Body.String(), s) {
			t.Errorf("list shows %q:\n%s", s, rec.Body)
		}
	}

	if rec := e.do("DELETE", "/v1/keys/operator/"+added.AccessKeyID, e.op.AccessKeyID, e.op.SecretAccessKey); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke: status %d, body %s", rec.Code, rec.Body)
	}
	// This replica refuses the key at once, without a watch running.
	if rec := e.do("GET", "/v1/keys/operator", added.AccessKeyID, added.SecretAccessKey); rec.Code != http.StatusUnauthorized {
		t.Errorf("revoked key: status %d, want 401", rec.Code)
	}
	for _, tc := range []struct {
		id       string
		code     int
		contains string
	}{
		{added.AccessKeyID, http.StatusNotFound, "operator key " + added.AccessKeyID + " does not exist"},
		{e.op.AccessKeyID, http.StatusConflict, "the last one"},
	} {
		rec := e.do("DELETE", "/v1/keys/operator/"+tc.id, e.op.AccessKeyID, e.op.SecretAccessKey)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("revoke %s: status %d, body %s; want %d containing %q", tc.id, rec.Code, rec.Body, tc.code, tc.contains)
		}
	}
}

// TestOperatorRevokedOnEveryReplica runs two replicas' control planes over
// one etcd: a key added on one is accepted by both, and once revoked on one
// it is refused by the other as soon as its watch brings the change.
func TestOperatorRevokedOnEveryReplica(t *testing.T) {
	srv := etcdtest.Start(t)
	var replicas [2]*Handler
	var boot registry.Operator
	for i := range replicas {
		st, err := etcdstore.Open(t.Context(), etcdstore.Options{Endpoints: []string{srv.ClientURL}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		reg := registry.New(st, nil)
		if boot, err = reg.EnsureOperator(t.Context()); err != nil {
			t.Fatal(err)
		}
		cache := registry.NewOperatorCache(reg, registry.OperatorCacheOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- cache.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica %d: Run: %v", i, err)
			}
		})
		replicas[i] = New(Options{Registry: reg, Operators: cache})
	}
	do := func(i int, method, path, key, secret string) *httptest.ResponseRecorder {
		return serveSigned(t, replicas[i], method, path, key, secret, time.Now())
	}

	rec := do(0, "POST", "/v1/keys/operator", boot.AccessKeyID, boot.SecretAccessKey)
	if rec.Code != http.StatusCreated {
		t.Fatalf("add on replica 0: status %d, body %s", rec.Code, rec.Body)
	}
	var k adminapi.OperatorKey
	if err := json.Unmarshal(rec.Body.Bytes(), &k); err != nil {
		t.Fatal(err)
	}
	for i := range replicas {
		if rec := do(i, "GET", "/v1/keys/operator", k.AccessKeyID, k.SecretAccessKey); rec.Code != http.StatusOK {
			t.Fatalf("new key on replica %d: status %d, body %s", i, rec.Code, rec.Body)
		}
	}

	if rec := do(0, "DELETE", "/v1/keys/operator/"+k.AccessKeyID, boot.AccessKeyID, boot.SecretAccessKey); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke on replica 0: status %d, body %s", rec.Code, rec.Body)
	}
	// The watch brings the change in milliseconds; the deadline is generous
	// so that a loaded machine cannot fail the test.
	deadline := time.Now().Add(30 * time.Second)
	for do(1, "GET", "/v1/keys/operator", k.AccessKeyID, k.SecretAccessKey).Code != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("replica 1 still accepts the revoked key")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
