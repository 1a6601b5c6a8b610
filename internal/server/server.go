// Package server wires the store, the fleet, the data plane and the control
// plane to their listeners and runs them together: the first failure stops
// all, and a cancelled context shuts them down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/controlplane"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/fastpath"
	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/guard"
	"github.com/imds/imds/internal/identity"
	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/ratelimit"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
	"github.com/imds/imds/internal/store/etcdstore"
	"github.com/imds/imds/internal/token"
	"github.com/imds/imds/internal/ui"
)

// Default listen addresses: loopback, so that a developer needs no privileges
// and exposes nothing.
const (
	DefaultListen      = "127.0.0.1:1338"
	DefaultAdminListen = "127.0.0.1:1339"
)

// Options configure a Server.
type Options struct {
	Listen []string // data-plane addresses, host:port
	// Bind maps an instance id to a listener that serves only that instance.
	Bind        map[string]string
	AdminListen string // control plane; "" disables it
	ConfigPath  string // "" serves the built-in demo instance on an empty store
	// Config, when set, is applied instead of a file (embedding, imdstest);
	// Reload then has nothing to read.
	Config    *config.Config
	DataDir   string // the embedded store, the operator credentials
	Store     string // "bolt" (default) or "etcd"
	Etcd      etcdstore.Options
	KeepAlive bool // see dataplane.Options.KeepAlive
	// NoFastPath serves the data plane with net/http alone, without the
	// fast path (internal/fastpath) in front of it for plain requests.
	NoFastPath bool
	// AuditLog is the path of the audit log (JSON lines); "" writes none.
	AuditLog string
	// NoRecording leaves the migration recorder off the data plane, so that
	// a benchmark can measure what recording costs.
	NoRecording bool
	// WrapDataPlane, when set, wraps the data-plane handler on every data
	// listener: test tooling that records requests (imdstest).
	WrapDataPlane func(http.Handler) http.Handler
	// Guard serves imds guard on the data-plane listeners: a proxy in front
	// of the upstream IMDS configured in the guard section, in place of the
	// fleet's data plane. GuardUpstream, when set, replaces its upstream.
	Guard         bool
	GuardUpstream string
	Logger        *slog.Logger
	Now           func() time.Time
	// EventClock is when timed event steps fire; nil for the system clock.
	EventClock events.Clock
}

// ConfigError: the configuration file could not be read or is invalid.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Server is the running imds process.
type Server struct {
	opts     Options
	log      *slog.Logger
	st       store.Store
	reg      *registry.Registry
	creds    *credentials.Manager
	syncer   *fleet.Syncer
	events   *events.Runner
	handler  *dataplane.Handler
	guard    *guard.Guard // in guard mode
	admin    *controlplane.Handler
	recorder *migration.Recorder
	audit    *migration.AuditLog
	ops      *registry.OperatorCache
	limit    *ratelimit.Limiter
	metrics  *prometheus.Registry
	settings fleet.Settings

	listeners []boundListener
	adminLn   net.Listener
	reloadMu  sync.Mutex
}

type boundListener struct {
	net.Listener
	instance string // "" for a shared listener
}

// New opens the store, applies the configuration file (or the demo instance),
// and builds the first snapshot. It does not listen yet.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Listen) == 0 && len(o.Bind) == 0 {
		o.Listen = []string{DefaultListen}
	}
	s := &Server{opts: o, log: o.Logger.With("component", "server")}
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, &ConfigError{err}
	}
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	s.reg = registry.New(s.st, o.Now)
	if err := s.seed(ctx, cfg); err != nil {
		s.st.Close()
		return nil, err
	}
	tr, err := s.reg.EnsureTokenRing(ctx)
	if err != nil {
		s.st.Close()
		return nil, fmt.Errorf("token key ring: %w", err)
	}
	ring, err := token.NewRing(tr.TokenKeys(), o.Now)
	if err != nil {
		s.st.Close()
		return nil, err
	}
	if err := s.writeOperatorCredentials(ctx); err != nil {
		s.st.Close()
		return nil, err
	}

	sign, err := s.identitySigner(ctx)
	if err != nil {
		s.st.Close()
		return nil, fmt.Errorf("identity signing key: %w", err)
	}
	s.creds = credentials.NewManager(o.Logger.With("component", "credentials"), o.Now)
	if err := s.creds.UpdateIdentity(cfg.IdentityCredentials); err != nil {
		s.st.Close()
		return nil, fmt.Errorf("identity credentials: %w", err)
	}
	s.settings = fleet.SettingsOf(cfg)
	s.syncer = fleet.NewSyncer(fleet.SyncerOptions{
		Store:    s.st,
		Roles:    s.creds,
		Sign:     sign,
		OnTokens: s.setTokens,
		Settings: s.settings,
		Logger:   o.Logger.With("component", "fleet"),
		Clock:    o.Now,
		OnPublish: func() {
			if s.events != nil {
				s.events.Notify()
			}
		},
	})
	s.events = events.NewRunner(s.reg, func() events.Records { return s.syncer.Fleet().Load().Records }, o.EventClock, o.Logger)
	s.metrics = prometheus.NewRegistry()
	if err := s.newRecorder(ctx, cfg); err != nil {
		s.st.Close()
		return nil, err
	}
	s.limit = ratelimit.New(cfg.RateLimit.RequestsPerSecond, cfg.RateLimit.Burst, o.Now)
	s.handler = dataplane.New(s.syncer.Fleet(), ring, dataplane.Options{
		Logger:    o.Logger.With("component", "dataplane"),
		Now:       o.Now,
		KeepAlive: o.KeepAlive,
		Metrics:   dataplane.NewMetrics(s.metrics),
		Observer:  s.observer(),

		EmptyErrorBodies: cfg.ErrorBody == "empty",
		Versions:         apiVersions(cfg),
		RateLimit:        s.limit,
		RateLimitStatus:  rateLimitStatus(cfg.RateLimit.Response),
	})
	if o.Guard {
		if err := s.newGuard(cfg, ring); err != nil {
			s.st.Close()
			return nil, err
		}
	}
	if err := s.syncer.Sync(ctx); err != nil {
		s.st.Close()
		return nil, fmt.Errorf("load fleet: %w", err)
	}
	s.registerMetrics()
	mig := migration.NewService(s.recorder, s.migrationFleet())
	s.ops = registry.NewOperatorCache(s.reg, registry.OperatorCacheOptions{
		Now:    o.Now,
		Logger: o.Logger,
	})
	if _, err := s.ops.Load(ctx); err != nil {
		s.st.Close()
		return nil, err
	}
	s.admin = controlplane.New(controlplane.Options{
		Registry:  s.reg,
		Operators: s.ops,
		Ready:     s.ready,
		Gatherer:  s.metrics,
		Migration: mig,
		UI:        ui.New(ui.Options{Migration: mig, Logger: o.Logger, Now: o.Now}),
		Logger:    o.Logger,
		Now:       o.Now,
	})
	return s, nil
}

func (s *Server) setTokens(tr registry.TokenRing) {
	ring, err := token.NewRing(tr.TokenKeys(), s.opts.Now)
	if err != nil {
		s.log.Error("ignore invalid token key ring", "err", err)
		return
	}
	if s.handler != nil {
		s.handler.SetRing(ring)
	}
	if s.guard != nil {
		s.guard.SetRing(ring)
	}
}

func (s *Server) openStore(ctx context.Context) error {
	switch s.opts.Store {
	case "", "bolt":
		if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		st, err := boltstore.Open(filepath.Join(s.opts.DataDir, "imds.db"), 5*time.Second)
		if err != nil {
			return err
		}
		s.st = st
	case "etcd":
		st, err := etcdstore.Open(ctx, s.opts.Etcd)
		if err != nil {
			return err
		}
		s.st = st
	default:
		return fmt.Errorf("--store %q: want bolt or etcd", s.opts.Store)
	}
	return nil
}

// storeDesc says where the store is, for the log.
func (s *Server) storeDesc() string {
	if s.opts.Store == "etcd" {
		prefix := s.opts.Etcd.Prefix
		if prefix == "" {
			prefix = etcdstore.DefaultPrefix
		}
		return fmt.Sprintf("etcd %s, prefix %s", strings.Join(s.opts.Etcd.Endpoints, ","), prefix)
	}
	return "bolt " + filepath.Join(s.opts.DataDir, "imds.db")
}

func (s *Server) loadConfig() (*config.Config, error) {
	if s.opts.Config != nil {
		return s.opts.Config, s.opts.Config.Validate()
	}
	if s.opts.ConfigPath == "" && s.opts.Guard {
		return guardConfig(), nil
	}
	if s.opts.ConfigPath == "" {
		return config.Demo(), nil
	}
	return config.Load(s.opts.ConfigPath)
}

// seed applies the configuration file; the demo instance is seeded only into
// a store that has no instances.
func (s *Server) seed(ctx context.Context, cfg *config.Config) error {
	if s.opts.ConfigPath == "" && s.opts.Guard {
		return nil
	}
	if s.opts.ConfigPath == "" && s.opts.Config == nil {
		all, err := s.reg.Instances(ctx)
		if err != nil {
			return fmt.Errorf("read store: %w", err)
		}
		if len(all) > 0 {
			s.log.Info("no --config: serving the instances already in the store",
				"instances", len(all), "store", s.storeDesc())
			return nil
		}
	}
	res, err := s.reg.Seed(ctx, cfg)
	if err != nil {
		return fmt.Errorf("apply configuration: %w", err)
	}
	s.log.Info("configuration applied", "registered", res.Registered, "updated", res.Updated,
		"unchanged", res.Unchanged, "removed", res.Removed, "roles", res.Roles)
	return nil
}

// writeOperatorCredentials makes sure an operator key exists and that this
// host's data dir has it as an AWS shared-credentials file, profile "imds".
func (s *Server) writeOperatorCredentials(ctx context.Context) error {
	op, err := s.reg.EnsureOperator(ctx)
	if err != nil {
		return fmt.Errorf("operator credentials: %w", err)
	}
	path := filepath.Join(s.opts.DataDir, "credentials")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := adminapi.WriteCredentialsFile(path, adminapi.Credentials{AccessKeyID: op.AccessKeyID, SecretAccessKey: op.SecretAccessKey}); err != nil {
		return fmt.Errorf("write operator credentials: %w", err)
	}
	s.log.Info("wrote operator credentials", "path", path, "access_key_id", op.AccessKeyID)
	return nil
}

// Reload applies the configuration file again. On any error the running
// fleet keeps serving.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.audit != nil {
		if err := s.audit.Reopen(); err != nil {
			return err
		}
	}
	if s.opts.ConfigPath == "" {
		return nil
	}
	cfg, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return err
	}
	if s.guard != nil {
		if cfg.Guard == nil {
			return errors.New("the configuration has no guard section")
		}
		if s.opts.GuardUpstream != "" {
			cfg.Guard.Upstream = s.opts.GuardUpstream
		}
		if err := s.guard.Update(cfg.Guard, cfg.Roles); err != nil {
			return err
		}
	}
	if err := s.seed(ctx, cfg); err != nil {
		return err
	}
	s.log.Info("configuration reloaded", "path", s.opts.ConfigPath)
	return nil
}

// Handler is the data-plane handler, for tests and embedding.
func (s *Server) Handler() http.Handler {
	if s.guard != nil {
		return s.guard
	}
	return s.handler
}

// Registry is the fleet's registry, for tests and embedding.
func (s *Server) Registry() *registry.Registry { return s.reg }

// WaitRevision waits until the data plane serves every change of the store
// up to revision rev, the revision a registry write returned.
func (s *Server) WaitRevision(ctx context.Context, rev int64) error {
	return s.syncer.WaitRevision(ctx, rev)
}

// Listen binds every listener. Use port 0 to let the system choose.
func (s *Server) Listen(ctx context.Context) error {
	// The data plane's connections send no TCP keep-alive probes: their
	// life is bounded by the timeouts of Serve (IdleTimeout at most), so
	// the probes, 15 s after the last packet, would find nothing, and
	// turning them on costs four system calls per connection.
	data := net.ListenConfig{KeepAlive: -1}
	var lc net.ListenConfig
	listen := func(addr, instance string) error {
		l, err := data.Listen(ctx, "tcp", addr)
		if err != nil {
			s.Close()
			return fmt.Errorf("listen %s: %w%s", addr, err, listenHint(addr, err))
		}
		s.listeners = append(s.listeners, boundListener{l, instance})
		s.log.Info("listening", "addr", l.Addr().String(), "instance", instance)
		return nil
	}
	for _, addr := range s.opts.Listen {
		if err := listen(addr, ""); err != nil {
			return err
		}
	}
	for id, addr := range s.opts.Bind {
		if err := listen(addr, id); err != nil {
			return err
		}
	}
	if s.opts.AdminListen != "" {
		l, err := lc.Listen(ctx, "tcp", s.opts.AdminListen)
		if err != nil {
			s.Close()
			return fmt.Errorf("listen %s (control plane): %w", s.opts.AdminListen, err)
		}
		s.adminLn = l
		s.log.Info("control plane listening", "addr", l.Addr().String())
	}
	return nil
}

func listenHint(addr string, err error) string {
	host, _, _ := net.SplitHostPort(addr)
	if errors.Is(err, errAddrNotAvail) && (host == "169.254.169.254" || host == "fd00:ec2::254") {
		return " (add the address to an interface first, e.g. `ip addr add 169.254.169.254/32 dev lo`; see docs/deploy.md)"
	}
	return ""
}

// Addrs are the bound data-plane addresses, after Listen.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// AdminAddr is the control plane's address, after Listen; nil when disabled.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Close releases the listeners and the store of a server that will not Serve.
func (s *Server) Close() {
	for _, l := range s.listeners {
		l.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
	if s.st != nil {
		s.st.Close()
	}
}

// Serve runs until ctx is cancelled or a listener fails, then shuts down
// gracefully, letting requests in flight finish for up to five seconds.
func (s *Server) Serve(ctx context.Context) error {
	defer s.st.Close()
	errLog := log.New(slogWriter{s.log}, "", 0)
	g, gctx := errgroup.WithContext(ctx)
	var servers []httpServer
	data := s.Handler()
	if s.opts.WrapDataPlane != nil {
		data = s.opts.WrapDataPlane(data)
	}
	for _, l := range s.listeners {
		base := context.Background()
		if l.instance != "" {
			base = identity.WithBoundInstance(base, l.instance)
		}
		hs := newHTTPServer(data, base, errLog)
		var srv httpServer = hs
		if s.guard == nil && !s.opts.NoFastPath {
			srv = fastpath.New(hs)
		}
		servers = append(servers, srv)
		g.Go(func() error { return serve(srv, l) })
	}
	if s.adminLn != nil {
		srv := newHTTPServer(http.MaxBytesHandler(s.admin, 1<<20), context.Background(), errLog)
		servers = append(servers, srv)
		g.Go(func() error { return serve(srv, s.adminLn) })
	}
	g.Go(func() error { return s.syncer.Run(gctx) })
	g.Go(func() error { return s.creds.Run(gctx) })
	g.Go(func() error { return s.recorder.Run(gctx) })
	if s.guard != nil {
		g.Go(func() error { s.guard.Start(gctx); return nil })
	}
	if s.audit != nil {
		g.Go(func() error { return s.audit.Run(gctx) })
	}
	g.Go(func() error { return s.ops.Run(gctx) })
	g.Go(func() error { return s.limit.Run(gctx, time.Minute) })
	g.Go(func() error { return s.events.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range servers {
			errs = append(errs, srv.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})
	return g.Wait()
}

// newHTTPServer is the http.Server of a listener: its handler, the limits,
// and base as the context of every request.
func newHTTPServer(h http.Handler, base context.Context, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext:       dataplane.ConnContext,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          errLog,
	}
}

// httpServer is an http.Server, or the fast path in front of one.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

func serve(srv httpServer, l net.Listener) error {
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", l.Addr(), err)
	}
	return nil
}

func (s *Server) ready() (bool, []string) {
	st := s.syncer.Status()
	var reasons []string
	if !st.Synced {
		reasons = append(reasons, fmt.Sprintf("store: %s (serving the snapshot of %s)", st.LastError, st.LastSync.UTC().Format(time.RFC3339)))
	}
	for _, r := range s.creds.Status() {
		switch {
		case r.Expired > 0:
			reasons = append(reasons, fmt.Sprintf("role %s: %d of %d credential sets expired after failed fetches (%s); they answer the error form", r.Role, r.Expired, r.Sets, r.LastErrorKind))
		case r.Failing > 0:
			reasons = append(reasons, fmt.Sprintf("role %s: %d credential sets failing to renew (%s); the last good ones are served", r.Role, r.Failing, r.LastErrorKind))
		}
	}
	if s.guard != nil {
		_, r := s.guard.Ready()
		reasons = append(reasons, r...)
	}
	return len(reasons) == 0, reasons
}

// migrationFleet is what the migration view lists: the registry's
// instances, or the guard's upstream.
func (s *Server) migrationFleet() migration.Fleet {
	if s.guard != nil {
		return guardFleet{s.guard}
	}
	return registryFleet{s.reg}
}

func (s *Server) timeout() time.Duration { return registry.DefaultTimeout }

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("http", "msg", string(p))
	return len(p), nil
}

// rateLimitStatus is the data plane's status for a request over its rate
// limit: 0 drops the connection.
func rateLimitStatus(response string) int {
	switch response {
	case "503":
		return http.StatusServiceUnavailable
	case "drop":
		return 0
	}
	return http.StatusTooManyRequests
}

// apiVersions is the configured version list with "latest" last, or nil for
// the built-in one.
func apiVersions(c *config.Config) []string {
	if len(c.APIVersions) == 0 {
		return nil
	}
	return append(slices.Clone(c.APIVersions), "latest")
}
