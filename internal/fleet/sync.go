package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
)

// RoleSource is the credential manager as the syncer drives it.
type RoleSource interface {
	Credentials
	// Update sets the roles to serve; a role whose source cannot be built
	// keeps its previous one and is named in the error.
	Update(roles map[string]*config.Role) error
	// WaitFetched waits for the first fetch of credentials asked for since
	// the last call, so that a snapshot is published with them.
	WaitFetched(ctx context.Context) error
}

// Syncer keeps a Fleet equal to the store: it lists everything once, then
// follows a watch, rebuilding only what changed. When the store cannot be
// reached the fleet keeps its last snapshot (static stability) and Ready says
// why; the syncer lists again when the store is back.
type Syncer struct {
	st       store.Store
	fleet    *Fleet
	builder  *Builder
	roles    RoleSource
	onTokens func(registry.TokenRing)
	onPub    func()
	settings Settings
	log      *slog.Logger
	clock    func() time.Time

	mu        sync.Mutex
	roleSpecs map[string]*config.Role
	rev       int64
	published chan struct{} // closed and replaced at every publish
	pubRev    int64         // the store revision the published snapshot reflects

	synced   atomic.Bool
	lastErr  atomic.Pointer[string]
	lastSync atomic.Int64 // unix nanos of the last applied change or listing
	changes  atomic.Int64 // snapshots published

	probeEvery  time.Duration
	unreachable atomic.Bool // the last probe failed
}

// SyncerOptions configure a Syncer.
type SyncerOptions struct {
	Store    store.Store
	Roles    RoleSource
	Sign     metadata.SignFunc        // identity signatures; nil for none
	OnTokens func(registry.TokenRing) // called with every version of the key ring
	// OnPublish is called after each new snapshot is published; it must not
	// block.
	OnPublish func()
	Settings  Settings
	Logger    *slog.Logger
	Clock     func() time.Time
	// ProbeInterval is how often the store is asked whether it answers, so
	// that an outage shows in Status even while a watch stays open (an etcd
	// client retries in silence). Default 5s.
	ProbeInterval time.Duration
}

// NewSyncer returns a syncer; call Sync once, then Run.
func NewSyncer(o SyncerOptions) *Syncer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = 5 * time.Second
	}
	s := &Syncer{
		st: o.Store, roles: o.Roles, onTokens: o.OnTokens, onPub: o.OnPublish, settings: o.Settings,
		log: o.Logger, clock: o.Clock, roleSpecs: map[string]*config.Role{},
		probeEvery: o.ProbeInterval, published: make(chan struct{}),
	}
	s.builder = NewBuilder(o.Roles, o.Sign, o.Clock)
	s.fleet = New(s.builder.Snapshot(o.Settings))
	return s
}

// Fleet is the fleet the syncer keeps current.
func (s *Syncer) Fleet() *Fleet { return s.fleet }

// Sync lists the whole store and publishes a snapshot of it.
func (s *Syncer) Sync(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, registry.DefaultTimeout*2)
	items, rev, err := s.st.List(lctx, "")
	cancel()
	if err != nil {
		s.fail(fmt.Errorf("list store: %w", err))
		return err
	}
	s.mu.Lock()
	seen := map[string]bool{}
	relays := map[string]bool{}
	roles := map[string]*config.Role{}
	for _, it := range items {
		switch {
		case strings.HasPrefix(it.Key, registry.PrefixRoles):
			if r, err := registry.DecodeRole(it); err == nil {
				roles[strings.TrimPrefix(it.Key, registry.PrefixRoles)] = r
			} else {
				s.log.Error("skip bad role record", "key", it.Key, "err", err)
			}
		}
	}
	s.setRoles(roles)
	for _, it := range items {
		switch {
		case strings.HasPrefix(it.Key, registry.PrefixInstances):
			rec, err := registry.DecodeInstance(it)
			if err != nil {
				s.log.Error("skip bad instance record", "key", it.Key, "err", err)
				continue
			}
			seen[rec.Spec.InstanceID] = true
			s.builder.PutInstance(rec)
		case strings.HasPrefix(it.Key, registry.PrefixRelays):
			if rl, err := registry.DecodeRelay(it); err == nil {
				relays[rl.Name] = true
				s.builder.PutRelay(rl)
			}
		case it.Key == registry.KeyTokenRing:
			s.applyTokens(it)
		}
	}
	for id := range s.builder.byID {
		if !seen[id] {
			s.builder.RemoveInstance(id)
		}
	}
	for name := range s.builder.relays {
		if !relays[name] {
			s.builder.RemoveRelay(name)
		}
	}
	s.rev = rev
	s.mu.Unlock()
	s.publish(ctx)
	return nil
}

// WaitRevision waits until the published snapshot reflects every change of
// the store up to revision rev (the revision a write returned), or ctx ends.
func (s *Syncer) WaitRevision(ctx context.Context, rev int64) error {
	for {
		s.mu.Lock()
		cur, ch := s.pubRev, s.published
		s.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for store revision %d (snapshot at %d): %w", rev, cur, ctx.Err())
		}
	}
}

// setRoles hands the roles to the credential manager and rebuilds the
// instances of roles that appeared, changed or went away.
func (s *Syncer) setRoles(roles map[string]*config.Role) {
	var changed []string
	for name, r := range roles {
		if old, ok := s.roleSpecs[name]; !ok || !reflect.DeepEqual(old, r) {
			changed = append(changed, name)
		}
	}
	for name := range s.roleSpecs {
		if _, ok := roles[name]; !ok {
			changed = append(changed, name)
		}
	}
	s.roleSpecs = roles
	if s.roles != nil {
		if err := s.roles.Update(roles); err != nil {
			s.log.Error("role sources", "err", err)
		}
	}
	if len(changed) > 0 {
		s.builder.RolesChanged(changed...)
	}
}

func (s *Syncer) applyTokens(it store.Item) {
	var tr registry.TokenRing
	if err := json.Unmarshal(it.Value, &tr); err != nil || len(tr.Keys) == 0 {
		s.log.Error("skip bad token key ring", "err", err)
		return
	}
	if s.onTokens != nil {
		s.onTokens(tr)
	}
}

// publish swaps in a snapshot of the builder. It is called without s.mu:
// waiting for credentials never holds the lock that applying changes takes,
// so a slow credential source delays only the publication of the instances
// that need it. The snapshot is taken after the wait, under s.mu, so a later
// publication always reflects at least as much as an earlier one.
func (s *Syncer) publish(ctx context.Context) {
	if s.roles != nil {
		// New instances get their credentials before they are served.
		ctx, cancel := context.WithTimeout(ctx, credentialsWait)
		if err := s.roles.WaitFetched(ctx); err != nil {
			s.log.Warn("credentials not fetched yet; their roles answer the error form until a retry works", "err", err)
		}
		cancel()
	}
	s.mu.Lock()
	s.fleet.Swap(s.builder.Snapshot(s.settings))
	s.pubRev = s.rev
	close(s.published)
	s.published = make(chan struct{})
	s.mu.Unlock()
	s.changes.Add(1)
	s.lastSync.Store(s.clock().UnixNano())
	s.synced.Store(true)
	s.lastErr.Store(nil)
	if s.onPub != nil {
		s.onPub()
	}
}

func (s *Syncer) fail(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
	s.synced.Store(false)
}

// credentialsWait bounds how long a publication waits for the first
// credentials of new instances.
const credentialsWait = 10 * time.Second

// Run follows the store until ctx ends. Call Sync first. Every goroutine it
// starts has ended when it returns.
func (s *Syncer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.probe(ctx) })
	backoff := time.Second
	for {
		s.mu.Lock()
		rev := s.rev
		s.mu.Unlock()
		ch := s.st.Watch(ctx, "", rev)
		s.follow(ctx, ch)
		if ctx.Err() != nil {
			return nil
		}
		s.fail(fmt.Errorf("store watch ended; serving the last snapshot"))
		s.log.Warn("store watch ended; serving the last snapshot and listing again", "retry_in", backoff)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			if err := s.Sync(ctx); err != nil {
				s.log.Warn("store unreachable; serving the last snapshot", "err", err, "retry_in", backoff)
				backoff = min(backoff*2, 30*time.Second)
				continue
			}
			s.log.Info("store reachable again; fleet resynchronised")
			backoff = time.Second
			break
		}
	}
}

// probe asks the store for one key at every interval. A failure marks the
// fleet unsynced (the last snapshot keeps serving); the first success after
// one lists the store again so that nothing missed stays missed.
func (s *Syncer) probe(ctx context.Context) {
	t := time.NewTicker(s.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, cancel := context.WithTimeout(ctx, s.probeEvery)
		_, err := s.st.Get(c, registry.KeyTokenRing)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			if !s.unreachable.Swap(true) {
				s.log.Warn("store unreachable; serving the last snapshot", "err", err)
			}
			s.fail(fmt.Errorf("store unreachable: %w", err))
			continue
		}
		if s.unreachable.Swap(false) {
			if err := s.Sync(ctx); err != nil {
				s.unreachable.Store(true)
				continue
			}
			s.log.Info("store reachable again; fleet resynchronised")
		}
	}
}

// follow applies events until the channel closes, publishing once per burst
// that changed what the snapshot holds. A burst of other records (migration
// records, operator keys, address claims) only moves the published revision.
func (s *Syncer) follow(ctx context.Context, ch <-chan store.Event) {
	for {
		ev, ok := <-ch
		if !ok {
			return
		}
		s.mu.Lock()
		changed := s.apply(ev)
	drain:
		for {
			select {
			case ev, ok = <-ch:
				if !ok {
					break drain
				}
				changed = s.apply(ev) || changed
			default:
				break drain
			}
		}
		if !changed {
			s.pubRev = s.rev
			close(s.published)
			s.published = make(chan struct{})
			s.mu.Unlock()
		} else {
			s.mu.Unlock()
			s.publish(ctx)
		}
		if !ok {
			return
		}
	}
}

// apply applies one change and reports whether it concerns the snapshot.
func (s *Syncer) apply(ev store.Event) bool {
	if ev.Revision > s.rev {
		s.rev = ev.Revision
	}
	key := ev.Key
	switch {
	case strings.HasPrefix(key, registry.PrefixInstances):
		id := strings.TrimPrefix(key, registry.PrefixInstances)
		if ev.Deleted {
			s.builder.RemoveInstance(id)
			return true
		}
		rec, err := registry.DecodeInstance(ev.Item)
		if err != nil {
			s.log.Error("skip bad instance record", "key", key, "err", err)
			return false
		}
		s.builder.PutInstance(rec)
	case strings.HasPrefix(key, registry.PrefixRoles):
		name := strings.TrimPrefix(key, registry.PrefixRoles)
		roles := make(map[string]*config.Role, len(s.roleSpecs))
		for k, v := range s.roleSpecs {
			roles[k] = v
		}
		if ev.Deleted {
			delete(roles, name)
		} else if r, err := registry.DecodeRole(ev.Item); err == nil {
			roles[name] = r
		}
		s.setRoles(roles)
	case strings.HasPrefix(key, registry.PrefixRelays):
		name := strings.TrimPrefix(key, registry.PrefixRelays)
		if ev.Deleted {
			s.builder.RemoveRelay(name)
		} else if rl, err := registry.DecodeRelay(ev.Item); err == nil {
			s.builder.PutRelay(rl)
		}
	case key == registry.KeyTokenRing && !ev.Deleted:
		s.applyTokens(ev.Item)
	default:
		return false
	}
	return true
}

// Status is what /readyz and metrics report of the syncer.
type Status struct {
	Synced    bool      // the snapshot reflects the store
	LastSync  time.Time // when it last did
	LastError string    // why it does not, when it does not
	Instances int
	Snapshots int64
}

// Status reports the syncer's state.
func (s *Syncer) Status() Status {
	st := Status{
		Synced:    s.synced.Load(),
		LastSync:  time.Unix(0, s.lastSync.Load()),
		Instances: s.fleet.Load().Len(),
		Snapshots: s.changes.Load(),
	}
	if e := s.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}
