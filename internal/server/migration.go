package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/registry"
)

// newRecorder opens the audit log, if any, and builds the migration recorder
// from the store.
func (s *Server) newRecorder(ctx context.Context, cfg *config.Config) error {
	replica, err := s.replicaID()
	if err != nil {
		return err
	}
	if s.opts.AuditLog != "" {
		a, err := migration.OpenAuditLog(s.opts.AuditLog, s.opts.Logger.With("component", "audit"))
		if err != nil {
			return err
		}
		s.audit = a
	}
	m := cfg.Migration
	window, fallback, flush := m.Durations()
	s.recorder = migration.NewRecorder(migration.Options{
		Config: migration.Config{
			Window: window, FallbackWindow: fallback,
			CallersPerInstance: m.CallersPerInstance, AgentsPerCaller: m.AgentsPerCaller,
			FlushInterval: flush, FlushMax: m.FlushMax,
		},
		Store:   s.st,
		Replica: replica,
		Audit:   s.audit,
		Logger:  s.opts.Logger.With("component", "migration"),
		Now:     s.opts.Now,
	})
	if err := s.recorder.Load(ctx); err != nil {
		return err
	}
	s.metrics.MustRegister(migration.NewCollector(s.recorder, m.MetricsInstances))
	return nil
}

// observer is what the data plane reports requests to.
func (s *Server) observer() dataplane.Observer {
	if s.opts.NoRecording {
		return nil
	}
	return s.recorder
}

// replicaID names this server's migration records in the store: a random id
// kept in the data dir, so that replicas sharing a store never collide and a
// restart finds its own records again.
func (s *Server) replicaID() (string, error) {
	path := filepath.Join(s.opts.DataDir, "replica-id")
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read replica id: %w", err)
	}
	var r [8]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write replica id: %w", err)
	}
	return id, nil
}

// registryFleet is the registry as the migration service needs it.
type registryFleet struct{ reg *registry.Registry }

func (f registryFleet) Instances(ctx context.Context) ([]migration.InstanceInfo, error) {
	all, err := f.reg.Instances(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]migration.InstanceInfo, len(all))
	for i, in := range all {
		out[i] = migration.InstanceInfo{ID: in.Spec.InstanceID, HTTPTokens: string(in.Options.HTTPTokens)}
	}
	return out, nil
}

func (f registryFleet) RequireTokens(ctx context.Context, id string) error {
	_, err := f.reg.ModifyOptions(ctx, id, registry.OptionChanges{HTTPTokens: new(imdsopt.Required)})
	return err
}
