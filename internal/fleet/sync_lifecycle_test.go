package fleet

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
)

// gatedRoles is the real credential manager, except that while armed its
// WaitFetched waits for release, whatever its deadline: it stands for a
// credential source that is slow to answer (an STS endpoint cannot be
// reached from here).
type gatedRoles struct {
	*credentials.Manager
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedRoles) WaitFetched(ctx context.Context) error {
	if g.armed.CompareAndSwap(true, false) {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Manager.WaitFetched(ctx)
}

func openBolt(t *testing.T) store.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestSyncerDoesNotWaitForCredentialsUnderItsLock: while one publication
// waits for a credential source, the syncer still applies and publishes
// other changes.
func TestSyncerDoesNotWaitForCredentialsUnderItsLock(t *testing.T) {
	const a, b = "i-0000000000000000a", "i-0000000000000000b"
	st := openBolt(t)
	reg := registry.New(st, nil)
	ctx := t.Context()
	if _, err := reg.Put(ctx, config.Instance{InstanceID: a}, store.Absent, ""); err != nil {
		t.Fatal(err)
	}
	roles := &gatedRoles{Manager: credentials.NewManager(nil, nil), entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := NewSyncer(SyncerOptions{Store: st, Roles: roles})
	roles.armed.Store(true)
	first := make(chan error, 1)
	go func() { first <- s.Sync(ctx) }()
	<-roles.entered // the first sync now waits on the credential source

	if _, err := reg.Put(ctx, config.Instance{InstanceID: b}, store.Absent, ""); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- s.Sync(ctx) }()
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // only stops a hang
		t.Fatal("a sync waited while another waited for credentials: the lock is held across the wait")
	}
	if s.Fleet().Load().ByID(b) == nil {
		t.Error("the second sync did not publish instance b")
	}
	close(roles.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if snap := s.Fleet().Load(); snap.ByID(a) == nil || snap.ByID(b) == nil {
		t.Error("the last snapshot lost an instance")
	}
}

// hangingStore is a real store whose probe reads (of the token key ring)
// hang, ignoring their deadline, until release: a backend that does not
// answer.
type hangingStore struct {
	store.Store
	started chan struct{}
	release chan struct{}
}

func (h *hangingStore) Get(ctx context.Context, key string) (store.Item, error) {
	if key == registry.KeyTokenRing {
		select {
		case h.started <- struct{}{}:
		default:
		}
		<-h.release
	}
	return h.Store.Get(ctx, key)
}

// TestSyncerRunOwnsItsGoroutines: Run does not return while a goroutine it
// started (the store probe) is still running.
func TestSyncerRunOwnsItsGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hs := &hangingStore{Store: openBolt(t), started: make(chan struct{}, 1), release: make(chan struct{})}
		s := NewSyncer(SyncerOptions{Store: hs, ProbeInterval: time.Second})
		if err := s.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		<-hs.started // the probe is in the store
		cancel()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Run returned while its probe was still running")
		default:
		}
		close(hs.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
