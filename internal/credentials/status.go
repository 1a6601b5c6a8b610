package credentials

import (
	"cmp"
	"slices"
	"time"
)

// RoleStatus is the health of one role's credentials, for /readyz, metrics
// and the admin API. Figures per instance stay here, not in metric labels.
type RoleStatus struct {
	Role     string // the role name; "ec2-instance" for identity credentials
	Identity bool   // the instance identity credentials, not a role
	Source   string // static, assume-role or process

	Sets    int // credential sets served (per instance and delivery)
	Serving int // sets with unexpired credentials
	Pending int // sets whose first fetch has not ended
	Failing int // sets whose last fetch failed (some may still be Serving)
	Expired int // sets answering the error form after a fetch: Sets-Serving-Pending

	LastSuccess time.Time // latest successful fetch of any set
	LastError   time.Time // latest failed fetch of any set
	// LastErrorKind is denied, unavailable or invalid, for the latest
	// failure; "" when there was none.
	LastErrorKind string
	NextExpiry    time.Time // earliest expiry of a serving set

	// Fetches and Failures count source calls since the role's source was
	// configured (a changed role starts again from zero).
	Fetches, Failures uint64
}

// Ready says that every set of the role has unexpired credentials.
func (s RoleStatus) Ready() bool { return s.Serving == s.Sets }

// Status reports every served role, sorted by name, identity credentials
// last.
func (m *Manager) Status() []RoleStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	byRole := map[*role]*RoleStatus{}
	add := func(r *role) *RoleStatus {
		st := byRole[r]
		if st == nil {
			st = &RoleStatus{Role: r.name, Identity: r.identity, Source: r.kind,
				Fetches: r.fetches.Load(), Failures: r.failures.Load()}
			byRole[r] = st
		}
		return st
	}
	for _, r := range m.roles {
		add(r)
	}
	if m.identity != nil {
		add(m.identity)
	}
	for _, s := range m.sets {
		st := add(s.role)
		st.Sets++
		v := s.cur.Load()
		switch {
		case v.ok != nil && now.Before(v.expires):
			st.Serving++
			if st.NextExpiry.IsZero() || v.expires.Before(st.NextExpiry) {
				st.NextExpiry = v.expires
			}
		case !s.attempted:
			st.Pending++
		default:
			st.Expired++
		}
		if s.failures > 0 {
			st.Failing++
		}
		if s.lastSuccess.After(st.LastSuccess) {
			st.LastSuccess = s.lastSuccess
		}
		if s.lastErr != nil && s.lastError.After(st.LastError) {
			st.LastError, st.LastErrorKind = s.lastError, s.lastErr.kind.String()
		}
	}
	out := make([]RoleStatus, 0, len(byRole))
	for _, st := range byRole {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b RoleStatus) int {
		if a.Identity != b.Identity {
			if a.Identity {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Role, b.Role)
	})
	return out
}
