// Package imdstest runs an EC2-compatible Instance Metadata Service inside Go
// tests.
//
// New starts the data plane that `imds serve` runs (the same handler, token
// rules, metadata tree and credential manager, not a copy) on a free loopback
// port, over a store in a temporary directory, and stops it when the test
// ends. Point an SDK at URL:
//
//	srv := imdstest.New(t)
//	client := imds.New(imds.Options{Endpoint: srv.URL()})
//
// or set AWS_EC2_METADATA_SERVICE_ENDPOINT to it. Without options the server
// serves imds's demo instance (i-0123456789abcdef0, role imds-demo-role with
// AWS's documented example keys) to every caller. WithConfig takes the YAML of
// `imds serve --config`; the typed options change the first instance of it.
//
// While the test runs, SetMetadataOptions, the event methods and the
// credential methods change what the server serves; each returns once the
// data plane serves the change. Requests lists what clients asked.
//
// A Server holds no global state: a test binary can run many of them, in
// parallel tests. A method that fails, fails the test (t.Fatal), so call them
// from the test's goroutine.
package imdstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/server"
)

// Server is a running metadata service. Its embedded Instance is the first
// instance of its configuration: srv.SetMetadataOptions changes that one.
type Server struct {
	*Instance

	t    testing.TB
	srv  *server.Server
	url  string
	now  func() time.Time
	reqs *recorder
}

// Instance is one instance the server serves.
type Instance struct {
	s  *Server
	id string
}

type settings struct {
	yaml   string
	opts   *MetadataOptions
	role   string
	creds  *Credentials
	now    func() time.Time
	logger *slog.Logger
}

// Option configures New.
type Option func(*settings)

// WithConfig serves the configuration in yaml, the format of
// `imds serve --config` (instances, roles, server settings). When it sets no
// default-instance and has one instance, that instance answers every caller;
// otherwise callers are told apart by the instances' addresses (on loopback,
// 127.0.0.0/8).
func WithConfig(yaml string) Option { return func(s *settings) { s.yaml = yaml } }

// WithMetadataOptions sets the first instance's metadata options at launch.
func WithMetadataOptions(o MetadataOptions) Option { return func(s *settings) { s.opts = &o } }

// WithRole attaches role name to the first instance and serves c as its
// credentials (static keys; c.Expiration zero serves them as EC2 serves
// rotated keys, six hours at a time).
func WithRole(name string, c Credentials) Option {
	return func(s *settings) { s.role, s.creds = name, &c }
}

// WithClock gives the server a clock: token expiry, credential expiry and
// LastUpdated, launch time. Default time.Now.
func WithClock(now func() time.Time) Option { return func(s *settings) { s.now = now } }

// WithLogger sends the server's log to l. Default: discarded.
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.logger = l } }

// MetadataOptions are an instance's metadata options, spelt as the AWS CLI
// spells their values. An empty field (zero hop limit) leaves the option as
// it is.
type MetadataOptions struct {
	HTTPTokens              string // "optional" or "required"
	HTTPPutResponseHopLimit int    // 1 to 64
	HTTPEndpoint            string // "enabled" or "disabled"
	HTTPProtocolIPv6        string // "enabled" or "disabled"
	InstanceMetadataTags    string // "enabled" or "disabled"
}

// Credentials are a role's keys.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	// Expiration is when the keys stop working; zero serves them as keys
	// without an expiry, renewed every few hours like EC2's.
	Expiration time.Time
}

// New starts a server and stops it when the test ends. It fails the test if
// the configuration is invalid or the server cannot start.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var set settings
	for _, o := range opts {
		o(&set)
	}
	cfg, err := buildConfig(&set)
	if err != nil {
		t.Fatalf("imdstest: %v", err)
	}
	if set.now == nil {
		set.now = time.Now
	}
	if set.logger == nil {
		set.logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{t: t, now: set.now, reqs: &recorder{}}
	s.Instance = &Instance{s: s, id: cfg.Instances[0].InstanceID}
	srv, err := server.New(t.Context(), server.Options{
		Listen:        []string{"127.0.0.1:0"},
		Config:        cfg,
		DataDir:       t.TempDir(),
		Logger:        set.logger,
		Now:           set.now,
		WrapDataPlane: s.reqs.wrap,
	})
	if err != nil {
		t.Fatalf("imdstest: start: %v", err)
	}
	if err := srv.Listen(t.Context()); err != nil {
		t.Fatalf("imdstest: %v", err)
	}
	s.srv = srv
	s.url = "http://" + srv.Addrs()[0].String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("imdstest: serve: %v", err)
		}
	})
	return s
}

// buildConfig parses the YAML (or takes the demo) and applies the typed
// options to its first instance.
func buildConfig(set *settings) (*config.Config, error) {
	var cfg *config.Config
	if set.yaml == "" {
		cfg = config.Demo()
	} else {
		c, err := config.Parse([]byte(set.yaml))
		if err != nil {
			return nil, fmt.Errorf("WithConfig:\n%w", err)
		}
		cfg = c
	}
	if len(cfg.Instances) == 0 {
		return nil, errors.New("the configuration has no instance to serve")
	}
	first := &cfg.Instances[0]
	if cfg.DefaultInstance == "" && len(cfg.Instances) == 1 {
		cfg.DefaultInstance = first.InstanceID
	}
	if o := set.opts; o != nil {
		m := &first.MetadataOptions
		setIf(&m.HTTPTokens, o.HTTPTokens)
		setIf(&m.HTTPEndpoint, o.HTTPEndpoint)
		setIf(&m.HTTPProtocolIPv6, o.HTTPProtocolIPv6)
		setIf(&m.InstanceMetadataTags, o.InstanceMetadataTags)
		if o.HTTPPutResponseHopLimit != 0 {
			m.HTTPPutResponseHopLimit = imdsopt.HopLimit(o.HTTPPutResponseHopLimit)
		}
	}
	if set.creds != nil {
		first.IAMRole = set.role
		if cfg.Roles == nil {
			cfg.Roles = map[string]*config.Role{}
		}
		cfg.Roles[set.role] = staticRole(*set.creds)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("options:\n%w", err)
	}
	return cfg, nil
}

func setIf[T ~string](dst *T, v string) {
	if v != "" {
		*dst = T(v)
	}
}

// optional is v as an option change: nil, to keep the option, when v is
// empty.
func optional[T ~string](v string) *T {
	if v == "" {
		return nil
	}
	return new(T(v))
}

func staticRole(c Credentials) *config.Role {
	st := &config.StaticSource{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	if !c.Expiration.IsZero() {
		st.Expiration = c.Expiration.UTC().Format(time.RFC3339)
	}
	return &config.Role{Static: st}
}

// URL is the endpoint to give an SDK, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// ForInstance returns the instance id, one of the configuration's. It fails the
// test when there is no such instance.
func (s *Server) ForInstance(id string) *Instance {
	s.t.Helper()
	if _, err := s.srv.Registry().Instance(s.t.Context(), id); err != nil {
		s.t.Fatalf("imdstest: %v", err)
	}
	return &Instance{s: s, id: id}
}

// ID is the instance id.
func (i *Instance) ID() string { return i.id }

// SetMetadataOptions changes the instance's metadata options, as
// ModifyInstanceMetadataOptions does; empty fields keep their value.
func (i *Instance) SetMetadataOptions(o MetadataOptions) {
	s := i.s
	s.t.Helper()
	var c registry.OptionChanges
	c.HTTPTokens, c.HTTPEndpoint = optional[imdsopt.Tokens](o.HTTPTokens), optional[imdsopt.State](o.HTTPEndpoint)
	c.HTTPProtocolIPv6, c.InstanceMetadataTags = optional[imdsopt.State](o.HTTPProtocolIPv6), optional[imdsopt.State](o.InstanceMetadataTags)
	if o.HTTPPutResponseHopLimit != 0 {
		c.HTTPPutResponseHopLimit = new(imdsopt.HopLimit(o.HTTPPutResponseHopLimit))
	}
	in, err := s.srv.Registry().ModifyOptions(s.t.Context(), i.id, c)
	if err != nil {
		s.t.Fatalf("imdstest: SetMetadataOptions %s: %v", i.id, err)
	}
	s.wait(in.Revision)
}

// wait returns once the data plane serves revision rev of the store.
func (s *Server) wait(rev int64) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	defer cancel()
	if err := s.srv.WaitRevision(ctx, rev); err != nil {
		s.t.Fatalf("imdstest: %v", err)
	}
}

// update changes the instance's spec, keeping its options and launch time.
func (i *Instance) update(what string, f func(*config.Instance)) {
	s := i.s
	s.t.Helper()
	reg := s.srv.Registry()
	for range 10 {
		cur, err := reg.Instance(s.t.Context(), i.id)
		if err != nil {
			s.t.Fatalf("imdstest: %s: %v", what, err)
		}
		spec := cur.Spec
		f(&spec)
		rec, err := reg.Put(s.t.Context(), spec, cur.Revision, cur.SeedHash)
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err != nil {
			s.t.Fatalf("imdstest: %s %s: %v", what, i.id, err)
		}
		s.wait(rec.Revision)
		return
	}
	s.t.Fatalf("imdstest: %s %s: the instance keeps changing", what, i.id)
}
