// Package credentials serves role credentials the way EC2 does.
//
// Every role has a source (static keys, STS AssumeRole, or a credential
// process). The Manager keeps one credential set per (role, instance,
// delivery) the source can tell apart, as long as an instance uses it. It
// fetches a set before a snapshot that serves it is published (WaitFetched),
// renews it in the background well before it expires (Run), and renders the
// document once per fetch: a request reads an atomic pointer to bytes and
// never waits for a source.
//
// Sets. Like EC2, which names each role session after the instance, an
// assume-role source gets a session per instance unless its session name
// leaves out {instance-id}; a process source gets a run per instance only if
// its arguments use {instance-id}; static keys are one set per role. Under
// http-tokens optional, IMDSv1 and IMDSv2 requests get different sets (ec2:
// RoleDelivery 1.0 and 2.0; a session name can carry it with
// {role-delivery}), both fetched up front as EC2 does; instances that
// require tokens have an IMDSv2 set only.
//
// Rotation. A set is renewed halfway through its lifetime (less up to a tenth
// of it, so that sets fetched together spread out): a one-hour session is
// served with at least about 24 minutes left, above EC2's promise of five and
// botocore's fifteen-minute refresh window. When the source fails, the last
// good set keeps being served until it expires, retries back off from 5s to 5
// minutes, and the failure is logged and counted (Status). After expiry the
// role answers EC2's error form: HTTP 200 with a Code other than Success. A
// slow or failing source never delays another role: every fetch runs on its
// own, at most a few at a time per role.
//
// Secrets. Credentials are never logged. Failures are logged with STS's error
// code and message or a process's exit status, never with what a process
// printed; clients get a fixed message that names only the role.
package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
)

// Timing of fetches.
const (
	// staticLifetime is the lifetime served for keys without an expiry of
	// their own (static keys, a process that prints no Expiration): close to
	// the 6h24m observed on EC2.
	staticLifetime = 6 * time.Hour
	// minLifetime: a source answer that expires sooner is refused.
	minLifetime = time.Minute
	// minRefresh is the shortest wait before renewing a set.
	minRefresh = 10 * time.Second
	retryFirst = 5 * time.Second
	retryMax   = 5 * time.Minute
	// maxSleep bounds how long Run sleeps, so that a wall clock that jumps
	// (a host resumed from suspend) is noticed within a minute.
	maxSleep = time.Minute
	// fetchesPerRole bounds the source calls of one role at a time.
	fetchesPerRole = 8
)

// Deliveries, as IAM's ec2:RoleDelivery condition key spells them.
const (
	deliveryV1 = "1.0"
	deliveryV2 = "2.0"
)

// identityRole is the name identity credentials go by in logs, messages and
// {role}: the leaf they are served at.
const identityRole = "ec2-instance"

// Subject is who a credential document is for.
type Subject struct {
	Role       string // ignored by ForIdentity
	InstanceID string
	// V1 says that the instance serves token-less (IMDSv1) requests
	// (http-tokens optional); they get a set of their own.
	V1 bool
	// AccountID is the instance's account: the account of its instance
	// profile's role when the role's source names none.
	AccountID string
}

// Manager owns the credential sources of every role and the sets fetched from
// them. It outlives snapshots: a change of roles keeps the sets of unchanged
// roles, and rebuilding an instance keeps its sets.
//
// Use: Update with the roles; For (ForExtended, ForIdentity) when building an
// instance, which registers the sets that instance uses and replaces those it
// used before; Forget when an instance goes away. WaitFetched fetches the new
// sets and waits for their first answer; Run renews everything. Nothing is
// fetched before WaitFetched or Run, so that `imds validate` makes no calls.
type Manager struct {
	log   *slog.Logger
	clock func() time.Time
	rand  func() float64 // jitter, in [0, 1)

	// ctx ends when Run returns, stopping fetches in flight.
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	wg     sync.WaitGroup // fetches in flight

	mu       sync.Mutex
	upstream aws.CredentialsProvider // see SetUpstreamCredentials
	roles    map[string]*role
	identity *role // nil: no identity credentials
	sets     map[setKey]*set
	users    map[userKey][]*set // the sets each instance uses
}

// role is a configured source.
type role struct {
	name     string
	identity bool
	cfg      config.Role // to tell whether an update changed it
	kind     string      // static, assume-role, process
	src      source
	timeout  time.Duration
	// perInstance and perDelivery: whether the source can give instances,
	// and IMDSv1 and IMDSv2, different sets.
	perInstance, perDelivery bool
	sem                      chan struct{}

	fetches, failures atomic.Uint64
}

type setKey struct {
	role     string
	identity bool
	instance string // "" when shared by the role's instances
	delivery string // "" when shared by both deliveries
}

// userKey is an instance's registration: its role credentials, or its
// identity credentials.
type userKey struct {
	instance string
	identity bool
}

// NewManager returns a manager with no roles; call Update.
func NewManager(log *slog.Logger, clock func() time.Time) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		log: log, clock: clock, rand: rand.Float64,
		ctx: ctx, cancel: cancel,
		wake:  make(chan struct{}, 1),
		roles: map[string]*role{},
		sets:  map[setKey]*set{},
		users: map[userKey][]*set{},
	}
}

// Update sets the roles to serve. A role whose configuration is unchanged
// keeps its source and its sets; the sets of a changed or removed role stop
// being renewed at once, and the instances of a changed role get new ones
// when they are built again (For). A role whose source cannot be built (a
// missing source profile, a process command not found) keeps its previous
// source if it had one, is left out otherwise, and is named in the error;
// the other roles are updated all the same.
func (m *Manager) Update(roles map[string]*config.Role) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	up := m.upstream
	next := make(map[string]*role, len(roles))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(roles)) {
		old := m.roles[name]
		r, err := reuseOrBuild(name, false, roles[name], old, up)
		switch {
		case err == nil:
			next[name] = r
		case old != nil:
			next[name] = old
			errs = append(errs, fmt.Errorf("role %s: %w; its previous source stays", name, err))
		default:
			errs = append(errs, fmt.Errorf("role %s: %w", name, err))
		}
	}
	m.roles = next
	m.dropStale()
	return errors.Join(errs...)
}

// UpdateIdentity sets the source of the instance identity credentials
// (identity-credentials/ec2/security-credentials/ec2-instance); nil serves
// none. On error the previous source stays.
func (m *Manager) UpdateIdentity(src *config.Role) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if src == nil {
		m.identity = nil
	} else {
		r, err := reuseOrBuild(identityRole, true, src, m.identity, m.upstream)
		if err != nil {
			return fmt.Errorf("identity credentials: %w", err)
		}
		m.identity = r
	}
	m.dropStale()
	return nil
}

// dropStale drops the sets of roles no longer served. m.mu is held.
func (m *Manager) dropStale() {
	for _, s := range m.sets {
		if r := s.role; (r.identity && m.identity != r) || (!r.identity && m.roles[r.name] != r) {
			m.drop(s)
		}
	}
}

// drop stops serving and renewing s. m.mu is held.
func (m *Manager) drop(s *set) {
	if m.sets[s.key] == s {
		delete(m.sets, s.key)
	}
	s.dropped = true
}

// SetUpstreamCredentials gives the credentials that sign the AssumeRole of
// roles whose source-credentials is upstream (imds guard: the host's own
// role, read from the upstream IMDS). Call it before Update.
func (m *Manager) SetUpstreamCredentials(p aws.CredentialsProvider) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upstream = p
}

func reuseOrBuild(name string, identity bool, c *config.Role, old *role, upstream aws.CredentialsProvider) (*role, error) {
	if c == nil {
		return nil, errors.New("no source")
	}
	cfg := *c
	if old != nil && reflect.DeepEqual(old.cfg, cfg) {
		return old, nil
	}
	r := &role{name: name, identity: identity, cfg: cfg, kind: c.SourceName(), sem: make(chan struct{}, fetchesPerRole)}
	switch {
	case c.Static != nil:
		r.src = newStatic(c.Static)
		r.timeout = time.Second
	case c.AssumeRole != nil:
		src, err := newAssumeRole(c.AssumeRole, upstream)
		if err != nil {
			return nil, err
		}
		r.src, r.timeout = src, c.AssumeRole.CallTimeout()
		r.perInstance = strings.Contains(src.sessionName, "{instance-id}")
		r.perDelivery = true
	case c.Process != nil:
		src, err := newProcess(c.Process)
		if err != nil {
			return nil, err
		}
		r.src, r.timeout = src, c.Process.RunTimeout()
		r.perInstance = slices.ContainsFunc(c.Process.Command, func(a string) bool { return strings.Contains(a, "{instance-id}") })
		r.perDelivery = true
	default:
		return nil, errors.New("no source")
	}
	return r, nil
}

// For returns the renderer of iam/security-credentials/ROLE for sub, or nil
// when the role is unknown. It registers the sets sub.InstanceID uses,
// replacing those it used before; with an empty or unknown role it clears
// them, so call it for an instance that lost its role too.
func (m *Manager) For(sub Subject) metadata.DynamicFunc {
	if r := m.renderer(sub, false); r != nil {
		return r.document
	}
	return nil
}

// ForExtended returns the renderer of iam/security-credentials-extended/ROLE,
// the same document with AccountId, or nil when the role is unknown. Static
// keys without account-id get the instance's account (sub.AccountID), as on
// EC2 an instance profile's role is in the instance's account; without that
// too it is nil. A process that prints no AccountId gets 404 there, so that
// clients fall back to the legacy path. It registers like For.
func (m *Manager) ForExtended(sub Subject) metadata.DynamicFunc {
	r := m.renderer(sub, false)
	if r == nil {
		return nil
	}
	if s, ok := r.v2.role.src.(*staticSource); ok && s.c.AccountID == "" {
		if sub.AccountID == "" {
			return nil
		}
		return r.extendedAs(sub.AccountID)
	}
	return r.extended
}

// ForIdentity returns the renderer of
// identity-credentials/ec2/security-credentials/ec2-instance for sub (Role is
// ignored), or nil when no identity credentials are configured. It registers
// the identity sets of sub.InstanceID.
func (m *Manager) ForIdentity(sub Subject) metadata.DynamicFunc {
	if r := m.renderer(sub, true); r != nil {
		return r.document
	}
	return nil
}

// Forget drops the registrations of an instance that went away; sets no other
// instance uses stop being renewed.
func (m *Manager) Forget(instanceID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, identity := range []bool{false, true} {
		m.register(userKey{instanceID, identity}, nil)
	}
}

// renderer finds or makes the sets sub needs and registers them.
func (m *Manager) renderer(sub Subject, identity bool) *renderer {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.roles[sub.Role]
	if identity {
		r = m.identity
	}
	uk := userKey{sub.InstanceID, identity}
	if r == nil {
		m.register(uk, nil)
		return nil
	}
	rd := &renderer{clock: m.clock, v2: m.set(r, sub.InstanceID, deliveryV2)}
	used := []*set{rd.v2}
	if sub.V1 && r.perDelivery {
		rd.v1 = m.set(r, sub.InstanceID, deliveryV1)
		used = append(used, rd.v1)
	}
	m.register(uk, used)
	m.signal()
	return rd
}

// register records the sets an instance uses, and drops those nobody uses
// any more. m.mu is held.
func (m *Manager) register(uk userKey, used []*set) {
	for _, s := range used {
		s.refs++
	}
	for _, s := range m.users[uk] {
		if s.refs--; s.refs == 0 {
			m.drop(s)
		}
	}
	if used == nil {
		delete(m.users, uk)
	} else {
		m.users[uk] = used
	}
}

// set finds or makes the set of r for an instance and delivery. m.mu is held.
func (m *Manager) set(r *role, instanceID, delivery string) *set {
	p := params{Role: r.name, InstanceID: instanceID, Delivery: delivery}
	k := setKey{role: r.name, identity: r.identity, instance: instanceID, delivery: delivery}
	if !r.perInstance {
		k.instance, p.InstanceID = "", ""
	}
	if !r.perDelivery {
		k.delivery = ""
	}
	if s := m.sets[k]; s != nil && s.role == r {
		return s
	}
	s := newSet(r, k, p, m.clock())
	if st, ok := r.src.(*staticSource); ok {
		// Nothing to wait for: fill it now, so that a snapshot built
		// before WaitFetched or Run (imds validate, handler tests) serves it.
		c, _ := st.fetch(m.ctx, p)
		r.fetches.Add(1)
		s.attempted = true
		m.succeeded(s, c, m.clock())
	}
	if old := m.sets[k]; old != nil {
		m.drop(old)
	}
	m.sets[k] = s
	return s
}

// WaitFetched fetches the sets that have never been fetched and waits until
// each has an answer or ctx ends. Call it before serving a new snapshot, so
// that credentials are there before the first request asks. The error
// describes the sets left without credentials; they answer the error form
// until a retry succeeds, so it is worth a log line, not a failed start.
func (m *Manager) WaitFetched(ctx context.Context) error {
	m.mu.Lock()
	var waits []*set
	var chans []chan struct{}
	for _, s := range m.sets {
		if s.attempted {
			continue
		}
		if !s.fetching {
			m.start(s)
		}
		waits, chans = append(waits, s), append(chans, s.inflight)
	}
	m.mu.Unlock()
	for _, c := range chans {
		select {
		case <-c:
		case <-ctx.Done():
		}
	}
	return m.unserved(waits)
}

// unserved describes, per role, the sets that have no credentials.
func (m *Manager) unserved(sets []*set) error {
	type tally struct {
		n, of int
		first string
	}
	byRole := map[string]*tally{}
	m.mu.Lock()
	for _, s := range sets {
		t := byRole[s.role.name]
		if t == nil {
			t = &tally{}
			byRole[s.role.name] = t
		}
		t.of++
		if s.cur.Load().ok != nil {
			continue
		}
		t.n++
		if t.first == "" {
			if s.lastErr != nil {
				t.first = s.lastErr.Error()
			} else {
				t.first = "still fetching"
			}
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(byRole)) {
		if t := byRole[name]; t.n > 0 {
			errs = append(errs, fmt.Errorf("role %s: %d of %d credential sets have no credentials: %s", name, t.n, t.of, t.first))
		}
	}
	return errors.Join(errs...)
}

// Run renews the served sets until ctx ends, then stops the fetches in flight
// and returns nil. Call it once.
func (m *Manager) Run(ctx context.Context) error {
	defer func() {
		m.cancel()
		m.wg.Wait()
	}()
	for {
		m.mu.Lock()
		_, next := m.startDue()
		m.mu.Unlock()
		sleep := maxSleep
		if !next.IsZero() {
			sleep = max(min(next.Sub(m.clock()), maxSleep), 0)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-m.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// RefreshDue fetches every served set that is due for renewal now and waits
// until those fetches end or ctx does. Run does this on its own; RefreshDue
// is for tests that drive the clock.
func (m *Manager) RefreshDue(ctx context.Context) {
	m.mu.Lock()
	started, _ := m.startDue()
	m.mu.Unlock()
	for _, c := range started {
		select {
		case <-c:
		case <-ctx.Done():
			return
		}
	}
}

// startDue starts the fetches that are due and returns their channels and
// when the next set falls due (zero if none). m.mu is held.
func (m *Manager) startDue() (started []chan struct{}, next time.Time) {
	now := m.clock()
	for _, s := range m.sets {
		switch {
		case s.fetching:
		case !s.due.After(now):
			m.start(s)
			started = append(started, s.inflight)
		case next.IsZero() || s.due.Before(next):
			next = s.due
		}
	}
	return started, next
}

func (m *Manager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// start fetches s in a goroutine of its own. m.mu is held.
func (m *Manager) start(s *set) {
	s.fetching = true
	s.inflight = make(chan struct{})
	done := s.inflight
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		c, err := m.call(s)
		m.finish(s, c, err)
	}()
}

// call asks the source, at most fetchesPerRole at a time per role.
func (m *Manager) call(s *set) (*creds, error) {
	r := s.role
	select {
	case r.sem <- struct{}{}:
	case <-m.ctx.Done():
		return nil, m.ctx.Err()
	}
	defer func() { <-r.sem }()
	ctx, cancel := context.WithTimeout(m.ctx, r.timeout)
	defer cancel()
	r.fetches.Add(1)
	c, err := r.src.fetch(ctx, s.params)
	if err == nil {
		err = c.check(m.clock())
	}
	if err != nil && m.ctx.Err() == nil {
		r.failures.Add(1)
	}
	return c, err
}

// finish records a fetch.
func (m *Manager) finish(s *set, c *creds, err error) {
	now := m.clock()
	m.mu.Lock()
	s.fetching = false
	if m.ctx.Err() != nil || s.dropped {
		m.mu.Unlock()
		return
	}
	s.attempted = true
	var ev event
	if err == nil {
		ev = m.succeeded(s, c, now)
	} else {
		ev = m.failed(s, asFetchError(err), now)
	}
	m.mu.Unlock()
	ev.log(m.log, s)
	m.signal()
}

// succeeded installs a fetched set. m.mu is held.
func (m *Manager) succeeded(s *set, c *creds, now time.Time) event {
	updated := now.UTC().Truncate(time.Second)
	exp := c.Expires
	if exp.IsZero() {
		exp = updated.Add(staticLifetime)
	}
	exp = exp.UTC().Truncate(time.Second)
	life := exp.Sub(now)
	wait := max(life/2-time.Duration(m.rand()*float64(life/10)), minRefresh)
	ev := event{kind: evRenewed, failures: s.failures, expires: exp}
	if s.lastSuccess.IsZero() {
		ev.kind = evFetched
	}
	s.due = now.Add(wait)
	s.failures, s.lastErr, s.expiredLogged = 0, nil, false
	s.lastSuccess, s.expires = now, exp
	s.cur.Store(&view{
		ok:       metadata.CredentialsJSON(c.AccessKeyID, c.SecretAccessKey, c.SessionToken, updated, exp),
		extended: extendedJSON(c, updated, exp),
		src:      c,
		updated:  updated,
		expires:  exp,
		fail:     metadata.CredentialsErrorJSON(codeUnavailable, s.message(kindUnavailable, true), updated),
	})
	return ev
}

// failed records a failed fetch; the last good set stays. m.mu is held.
func (m *Manager) failed(s *set, err *fetchError, now time.Time) event {
	s.failures++
	backoff := min(retryFirst<<min(s.failures-1, 16), retryMax)
	backoff = backoff/2 + time.Duration(m.rand()*float64(backoff/2))
	s.due = now.Add(backoff)
	s.lastErr, s.lastError = err, now
	ev := event{kind: evFailed, failures: s.failures, err: err, expires: s.expires, retry: backoff}
	had := !s.lastSuccess.IsZero()
	if had && !now.Before(s.expires) && !s.expiredLogged {
		s.expiredLogged = true
		ev.kind = evExpired
	}
	code := codeUnavailable
	if err.kind == kindDenied {
		code = codeDenied
	}
	v := *s.cur.Load()
	v.fail = metadata.CredentialsErrorJSON(code, s.message(err.kind, had), now)
	s.cur.Store(&v)
	return ev
}

// extendedJSON is the document of iam/security-credentials-extended: the
// legacy one plus AccountId; nil when the account is unknown.
func extendedJSON(c *creds, updated, exp time.Time) []byte {
	if c.AccountID == "" {
		return nil
	}
	return metadata.PrettyJSON(
		metadata.Field{Key: "Code", Value: "Success"},
		metadata.Field{Key: "LastUpdated", Value: updated.Format(metadata.TimeFormat)},
		metadata.Field{Key: "Type", Value: "AWS-HMAC"},
		metadata.Field{Key: "AccessKeyId", Value: c.AccessKeyID},
		metadata.Field{Key: "SecretAccessKey", Value: c.SecretAccessKey},
		metadata.Field{Key: "Token", Value: c.SessionToken},
		metadata.Field{Key: "Expiration", Value: exp.Format(metadata.TimeFormat)},
		metadata.Field{Key: "AccountId", Value: c.AccountID},
	)
}
