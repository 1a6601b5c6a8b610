// Package credentials serves role credentials in EC2's shape.
package credentials

import (
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/metadata"
)

// Static serves fixed keys as if they were rotated the way EC2 rotates role
// credentials: the document is renewed every Refresh, and each one is valid
// for Lifetime after its LastUpdated, so a client always sees at least
// Lifetime-Refresh left, well above EC2's five-minute promise.
type Static struct {
	AccessKeyID, SecretAccessKey, SessionToken string

	Lifetime time.Duration    // default 6h
	Refresh  time.Duration    // default 1h
	Now      func() time.Time // default time.Now

	cur atomic.Pointer[rendered]
}

type rendered struct {
	body    []byte
	renewAt time.Time
}

// Body renders the credentials document; it implements metadata.DynamicFunc.
func (s *Static) Body(metadata.Request) ([]byte, bool) {
	now := s.now()
	if r := s.cur.Load(); r != nil && now.Before(r.renewAt) {
		return r.body, true
	}
	life, refresh := s.Lifetime, s.Refresh
	if life == 0 {
		life = 6 * time.Hour
	}
	if refresh == 0 {
		refresh = time.Hour
	}
	updated := now.Truncate(time.Second)
	r := &rendered{
		body:    metadata.CredentialsJSON(s.AccessKeyID, s.SecretAccessKey, s.SessionToken, updated, updated.Add(life)),
		renewAt: updated.Add(refresh),
	}
	s.cur.Store(r)
	return r.body, true
}

func (s *Static) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
