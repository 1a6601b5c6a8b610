package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/guard"
	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/token"
)

// guardConfig is the configuration of a guard run without --config: the
// guard section's defaults (IMDSv1 upgraded, no credentials to anyone).
func guardConfig() *config.Config {
	c := &config.Config{Guard: &config.Guard{}}
	if err := c.Validate(); err != nil {
		panic("default guard config is invalid: " + err.Error())
	}
	return c
}

// newGuard builds the guard that the data-plane listeners serve in guard
// mode; it reports to the same migration recorder as the data plane would.
func (s *Server) newGuard(cfg *config.Config, ring *token.Ring) error {
	if cfg.Guard == nil {
		return &ConfigError{errors.New("imds guard needs a guard section in the configuration")}
	}
	if s.opts.GuardUpstream != "" {
		cfg.Guard.Upstream = s.opts.GuardUpstream
		if err := cfg.Validate(); err != nil {
			return &ConfigError{fmt.Errorf("--upstream: %w", err)}
		}
	}
	var procs guard.ProcessFinder
	if !s.opts.NoRecording {
		procs = guard.Procfs{}
	}
	g, err := guard.New(guard.Options{
		Config: cfg.Guard, Roles: cfg.Roles, Ring: ring,
		// One manager for the roles, which the fleet's syncer updates too
		// (from the same file, through the store).
		Credentials: s.creds,
		Observer:    s.observer(), Processes: procs,
		KeepAlive: s.opts.KeepAlive, EmptyErrorBodies: cfg.ErrorBody == "empty",
		Logger: s.opts.Logger, Now: s.opts.Now,
	})
	if err != nil {
		return &ConfigError{err}
	}
	s.guard = g
	s.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "imds_guard_upstream_up",
		Help: "1 when the guard's last upstream request succeeded, 0 while cached metadata answers.",
	}, func() float64 {
		if ok, _ := g.UpstreamUp(); ok {
			return 1
		}
		return 0
	}))
	return nil
}

// guardFleet is the guard's one instance, the upstream, as the migration
// view sees it.
type guardFleet struct{ g *guard.Guard }

func (f guardFleet) Instances(context.Context) ([]migration.InstanceInfo, error) {
	id := f.g.Instance()
	if id == "" {
		return nil, nil
	}
	return []migration.InstanceInfo{{ID: id, HTTPTokens: "guarded"}}, nil
}

func (f guardFleet) RequireTokens(context.Context, string) error {
	return &migration.RequestError{Msg: "imds guard cannot change EC2's http-tokens: set the callers' imdsv1 to refuse, or use aws ec2 modify-instance-metadata-options"}
}
