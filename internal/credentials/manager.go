package credentials

import (
	"log/slog"
	"sync"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
)

// Manager owns the credential sources of every role and outlives snapshots, so
// that a configuration reload keeps the credentials already fetched for
// unchanged roles.
type Manager struct {
	log   *slog.Logger
	clock func() time.Time

	mu    sync.Mutex
	roles map[string]*Static
}

// NewManager returns a manager with no roles; call Update.
func NewManager(log *slog.Logger, clock func() time.Time) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Manager{log: log, clock: clock, roles: map[string]*Static{}}
}

// Update sets the roles to serve. Roles whose source is unchanged keep their
// state.
func (m *Manager) Update(roles map[string]*config.Role) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*Static, len(roles))
	for name, r := range roles {
		s := &Static{
			AccessKeyID:     r.Static.AccessKeyID,
			SecretAccessKey: r.Static.SecretAccessKey,
			SessionToken:    r.Static.SessionToken,
			Now:             m.clock,
		}
		if old, ok := m.roles[name]; ok && old.AccessKeyID == s.AccessKeyID &&
			old.SecretAccessKey == s.SecretAccessKey && old.SessionToken == s.SessionToken {
			s = old
		}
		next[name] = s
	}
	m.roles = next
}

// For returns the renderer of role's credentials document, or nil when the
// role is unknown.
func (m *Manager) For(role string) metadata.DynamicFunc {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.roles[role]; ok {
		return s.Body
	}
	return nil
}
