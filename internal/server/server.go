// Package server wires the data plane to its listeners and runs them together:
// the first failure stops all, and a cancelled context shuts them down
// gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/token"
)

// DefaultListen is where `imds serve` answers without --listen: loopback, so
// that a developer needs no privileges and exposes nothing.
const DefaultListen = "127.0.0.1:1338"

// Options configure a Server.
type Options struct {
	Listen     []string // data-plane addresses, host:port
	ConfigPath string   // "" serves the built-in demo instance
	DataDir    string   // holds the token key ring
	KeepAlive  bool     // see dataplane.Options.KeepAlive
	Logger     *slog.Logger
	Now        func() time.Time
}

// Server is the running imds process.
type Server struct {
	opts      Options
	log       *slog.Logger
	fleet     *fleet.Fleet
	creds     *credentials.Manager
	handler   *dataplane.Handler
	listeners []net.Listener
	reloadMu  sync.Mutex
}

// New loads the configuration and the key ring and builds the first snapshot.
// It does not listen yet.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Listen) == 0 {
		o.Listen = []string{DefaultListen}
	}
	s := &Server{opts: o, log: o.Logger.With("component", "server")}
	s.creds = credentials.NewManager(o.Logger.With("component", "credentials"), o.Now)
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, err
	}
	s.creds.Update(cfg.Roles)
	snap, err := fleet.FromConfig(cfg, o.Now, s.creds)
	if err != nil {
		return nil, err
	}
	keys, err := token.LoadOrCreateKeys(filepath.Join(o.DataDir, "token-keys.json"))
	if err != nil {
		return nil, err
	}
	ring, err := token.NewRing(keys, o.Now)
	if err != nil {
		return nil, err
	}
	s.fleet = fleet.New(snap)
	s.handler = dataplane.New(s.fleet, ring, dataplane.Options{
		Logger:    o.Logger.With("component", "dataplane"),
		Now:       o.Now,
		KeepAlive: o.KeepAlive,
	})
	return s, nil
}

func (s *Server) loadConfig() (*config.Config, error) {
	if s.opts.ConfigPath == "" {
		return config.Demo(), nil
	}
	return config.Load(s.opts.ConfigPath)
}

// Reload reads the configuration again and swaps it in. On any error the
// running snapshot keeps serving.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := s.loadConfig()
	if err != nil {
		return err
	}
	s.creds.Update(cfg.Roles)
	snap, err := fleet.FromConfig(cfg, s.opts.Now, s.creds)
	if err != nil {
		return err
	}
	s.fleet.Swap(snap)
	s.log.Info("configuration reloaded", "instances", snap.Len())
	return nil
}

// Handler is the data-plane handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds every listener. Use port 0 to let the system choose.
func (s *Server) Listen(ctx context.Context) error {
	var lc net.ListenConfig
	for _, addr := range s.opts.Listen {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			s.Close()
			return fmt.Errorf("listen %s: %w%s", addr, err, listenHint(addr, err))
		}
		s.listeners = append(s.listeners, l)
		s.log.Info("listening", "addr", l.Addr().String())
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

// Addrs are the bound addresses, after Listen.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Close releases the listeners of a server that will not Serve.
func (s *Server) Close() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// Serve runs until ctx is cancelled or a listener fails, then shuts down
// gracefully, letting requests in flight finish for up to five seconds.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext:       dataplane.ConnContext,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range s.listeners {
		g.Go(func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("http", "msg", string(p))
	return len(p), nil
}
