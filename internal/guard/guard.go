// Package guard is imds guard: a proxy in front of EC2's own IMDS for a host
// that runs containers. Downstream it applies the data plane's IMDSv2 rules
// (dataplane.Gate) with its own tokens and hop limit, and a policy per
// caller: IMDSv1 upgraded, allowed or refused, a role of its own in place of
// the host's, denied paths. Upstream it always speaks IMDSv2. Each request is
// reported to a dataplane.Observer (the migration recorder), with the calling
// process where it can be found.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/identity"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/token"
)

// ProcessFinder names the process at the other end of a TCP connection, when
// it is in the guard's network namespace. Find is called once per request
// and must be safe for concurrent use; ok=false when no process was found.
type ProcessFinder interface {
	Find(caller, guard netip.AddrPort) (desc string, ok bool)
}

// Options configure a Guard.
type Options struct {
	// Config is the validated guard section; Roles the roles it names.
	Config *config.Guard
	Roles  map[string]*config.Role
	// Ring issues and verifies the guard's own downstream tokens.
	Ring *token.Ring
	// Credentials serves the callers' roles; nil makes one.
	Credentials *credentials.Manager
	// Observer, when set, is told the outcome of every request.
	Observer dataplane.Observer
	// Processes, when set, attributes requests to processes.
	Processes ProcessFinder
	// Client talks to the upstream; nil uses one that never uses a proxy.
	Client *http.Client
	// KeepAlive, EmptyErrorBodies: as in dataplane.Options.
	KeepAlive        bool
	EmptyErrorBodies bool
	Logger           *slog.Logger
	Now              func() time.Time
}

// Guard is the proxy's HTTP handler. Create it with New.
type Guard struct {
	gate     *dataplane.Gate
	up       *upstream
	creds    *credentials.Manager
	observer dataplane.Observer
	procs    ProcessFinder
	log      *slog.Logger
	now      func() time.Time
	cache    cache

	cfg      atomic.Pointer[guardState]
	instance atomic.Pointer[string] // the upstream's instance id, once read
	idMu     sync.Mutex

	// upErr is the last upstream failure, nil after a success.
	upErr atomic.Pointer[upstreamError]
}

type guardState struct {
	hopLimit int
	pol      *policy
}

type upstreamError struct {
	err error
	at  time.Time
}

// New builds a guard. It makes no upstream call.
func New(o Options) (*Guard, error) {
	if o.Config == nil {
		return nil, errors.New("guard: no guard configuration")
	}
	if o.Ring == nil {
		return nil, errors.New("guard: no token key ring")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = newClient()
	}
	if o.Credentials == nil {
		o.Credentials = credentials.NewManager(o.Logger.With("component", "credentials"), o.Now)
	}
	g := &Guard{
		gate: dataplane.NewGate(o.Ring, dataplane.Options{
			Logger: o.Logger.With("component", "guard"), Now: o.Now,
			KeepAlive: o.KeepAlive, EmptyErrorBodies: o.EmptyErrorBodies,
		}),
		up:       &upstream{base: strings.TrimSuffix(o.Config.Upstream, "/"), client: o.Client, now: o.Now},
		creds:    o.Credentials,
		observer: o.Observer,
		procs:    o.Processes,
		log:      o.Logger.With("component", "guard"),
		now:      o.Now,
	}
	g.creds.SetUpstreamCredentials(upstreamProvider(g.up))
	if err := g.Update(o.Config, o.Roles); err != nil {
		return nil, err
	}
	return g, nil
}

// Update applies a new guard configuration and roles: the roles are checked
// and the rules built first, then swapped in; on error nothing changes. The
// upstream URL is not changed by Update.
func (g *Guard) Update(c *config.Guard, roles map[string]*config.Role) error {
	if err := g.creds.Update(roles); err != nil {
		return fmt.Errorf("guard roles: %w", err)
	}
	g.cfg.Store(&guardState{hopLimit: c.HopLimit, pol: buildPolicy(c, g.creds)})
	return nil
}

// Credentials is the manager of the callers' roles: run it (Run) beside the
// guard.
func (g *Guard) Credentials() *credentials.Manager { return g.creds }

// SetRing replaces the downstream token key ring.
func (g *Guard) SetRing(r *token.Ring) { g.gate.SetRing(r) }

// Start reads the upstream's instance id, which names the guard's callers
// in the migration view. An unreachable upstream is no error: the id is read
// again on a later request.
func (g *Guard) Start(ctx context.Context) {
	g.instanceID(ctx)
}

// Instance is the upstream's instance id, "" until it has been read.
func (g *Guard) Instance() string {
	if p := g.instance.Load(); p != nil {
		return *p
	}
	return ""
}

func (g *Guard) instanceID(ctx context.Context) string {
	if p := g.instance.Load(); p != nil {
		return *p
	}
	if !g.idMu.TryLock() {
		return ""
	}
	defer g.idMu.Unlock()
	// On the request path: no upstream call during the backoff, so that a
	// caller is not held for a timeout after its answer.
	id, err := g.up.instanceID(ctx, false)
	if err != nil {
		g.upstreamFailed(err)
		return ""
	}
	g.instance.Store(&id)
	return id
}

func (g *Guard) upstreamFailed(err error) {
	g.upErr.Store(&upstreamError{err: err, at: g.now()})
}

// probeTimeout bounds the upstream request of a readiness check.
const probeTimeout = 2 * time.Second

// Ready asks the upstream for its instance id and reports whether it
// answered; while it does not, cached metadata answers.
func (g *Guard) Ready() (bool, []string) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := g.up.instanceID(ctx, true); err != nil {
		g.upstreamFailed(err)
	} else {
		g.upErr.Store(nil)
	}
	return g.UpstreamUp()
}

// UpstreamUp reports, without asking the upstream, whether its last
// request succeeded.
func (g *Guard) UpstreamUp() (bool, []string) {
	if e := g.upErr.Load(); e != nil {
		return false, []string{fmt.Sprintf("upstream %s: %v (since %s); cached metadata answers, credentials until their expiry",
			g.up.base, e.err, e.at.UTC().Format(time.RFC3339))}
	}
	return true, nil
}

func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		g.gate.WriteError(w, http.StatusForbidden)
		return
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	st := g.cfg.Load()
	ru := st.pol.match(src.Addr())
	o := dataplane.Outcome{
		Via: identity.ViaAddress, Source: src.Addr(),
		UserAgent: r.Header.Get("User-Agent"), Method: r.Method, Path: r.URL.Path,
		HopLimit: st.hopLimit, TokensRequired: ru.v1 == config.V1Refuse,
	}
	_, o.Forwarded = r.Header["X-Forwarded-For"]
	if g.observer != nil && g.procs != nil {
		// Before answering: the caller's socket is open while it waits.
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if lap, err := netip.ParseAddrPort(la.String()); err == nil {
				o.Process, _ = g.procs.Find(src, netip.AddrPortFrom(lap.Addr().Unmap(), lap.Port()))
			}
		}
	}
	o.Status = g.serve(w, r, src, st, ru, &o)
	if g.observer != nil {
		o.Instance = g.instanceID(r.Context())
		if o.Instance == "" {
			return // nothing to file it under until the upstream answers
		}
		g.observer.Observe(o)
	}
}

// serve answers one request for a caller under rule ru.
func (g *Guard) serve(w http.ResponseWriter, r *http.Request, src netip.AddrPort, st *guardState, ru *rule, o *dataplane.Outcome) int {
	// Tokens are bound to the caller's address: a token leaked to another
	// caller is refused there.
	a := g.gate.Admit(w, r, dataplane.Access{
		ID: src.Addr().String(), HopLimit: st.hopLimit,
		TokensRequired: ru.v1 == config.V1Refuse,
	})
	o.Token, o.TokenValid = a.Token, a.TokenValid
	if a.Answered {
		return a.Code
	}
	path := r.URL.Path
	if path == "/" {
		return g.forward(w, r, path, a, ru, false, o)
	}
	if !clean(path) {
		return g.gate.WriteError(w, http.StatusNotFound)
	}
	rel, meta, ok := splitPath(path)
	if !ok {
		// "/latest": the version's listing, nothing a policy covers.
		return g.forward(w, r, path, a, ru, false, o)
	}
	if ru.denied(rel, meta) {
		return g.gate.WriteError(w, http.StatusNotFound)
	}
	kind, leaf := credentialKind(meta)
	if kind == pathOther {
		return g.forward(w, r, path, a, ru, false, o)
	}
	switch {
	case ru.creds != nil && kind != pathIdentity:
		return g.serveRole(w, r, a, ru, kind, leaf, o)
	case ru.hostRole:
		return g.forward(w, r, path, a, ru, leaf != "", o)
	}
	// No role, and the host's is not for this caller.
	return g.gate.WriteError(w, http.StatusNotFound)
}

// serveRole answers iam/security-credentials[-extended]/ with the caller's
// own role, in place of the host's.
func (g *Guard) serveRole(w http.ResponseWriter, r *http.Request, a dataplane.Admission, ru *rule, kind int, leaf string, o *dataplane.Outcome) int {
	var body []byte
	switch {
	case leaf == "":
		body = []byte(ru.role)
	case leaf == ru.role || leaf == ru.role+"/":
		f := ru.creds
		if kind == pathExtended {
			f = ru.extended
		}
		if f == nil {
			return g.gate.WriteError(w, http.StatusNotFound)
		}
		b, ok := f(metadata.Request{V2: a.V2})
		if !ok {
			return g.gate.WriteError(w, http.StatusNotFound)
		}
		body = b
	default:
		return g.gate.WriteError(w, http.StatusNotFound)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/plain")
	hd.Set("Accept-Ranges", "none")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	g.ttl(hd, a)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
		o.Body = body
	}
	return http.StatusOK
}

func (g *Guard) ttl(hd http.Header, a dataplane.Admission) {
	if a.V2 {
		hd.Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", strconv.FormatInt(int64((a.Left+time.Second-1)/time.Second), 10))
	}
}

// forward answers from the upstream: with the guard's token, except for an
// IMDSv1 request under allow. When the upstream cannot be reached, the last
// good answer of the path answers (a credentials document only until its
// expiry).
func (g *Guard) forward(w http.ResponseWriter, r *http.Request, path string, a dataplane.Admission, ru *rule, credentials bool, o *dataplane.Outcome) int {
	v2 := a.V2 || ru.v1 == config.V1Upgrade
	up := (&url.URL{Path: path}).EscapedPath()
	ans, err := g.up.get(r.Context(), r.Method, up, v2)
	if err != nil {
		g.upstreamFailed(err)
		g.log.Warn("upstream failed", "path", path, "err", err)
		c, ok := g.cache.get(path, g.now())
		if !ok || r.Method == http.MethodHead {
			return g.gate.WriteError(w, http.StatusServiceUnavailable)
		}
		ans = c
	} else {
		g.upErr.Store(nil)
		if ans.code == http.StatusOK && r.Method == http.MethodGet && v2 {
			g.cache.put(path, ans, credentials)
		}
	}
	if ans.code != http.StatusOK && ans.code != http.StatusMovedPermanently {
		// EC2's own pages, never the upstream's words.
		return g.gate.WriteError(w, ans.code)
	}
	hd := w.Header()
	for _, k := range []string{"Content-Type", "Last-Modified", "Accept-Ranges"} {
		if v := ans.header.Get(k); v != "" {
			hd.Set(k, v)
		}
	}
	if ans.code == http.StatusMovedPermanently {
		host := r.Host
		if host == "" {
			host = "169.254.169.254"
		}
		hd.Set("Location", "http://"+host+path+"/")
	}
	hd.Set("Content-Length", strconv.Itoa(len(ans.body)))
	g.ttl(hd, a)
	w.WriteHeader(ans.code)
	if r.Method != http.MethodHead {
		w.Write(ans.body)
		if ans.code == http.StatusOK {
			o.Body = ans.body
		}
	}
	return ans.code
}

// clean: the path has no empty, "." or ".." segment, so that the upstream
// sees exactly the path the policy judged.
func clean(p string) bool {
	for _, seg := range strings.Split(strings.TrimSuffix(p[1:], "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
