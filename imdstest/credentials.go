package imdstest

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"time"

	"github.com/imds/imds/internal/config"
)

// Credentials returns the keys the server has for role, a role with static
// keys (the demo role, WithRole, or `static:` in WithConfig).
func (s *Server) Credentials(role string) Credentials {
	s.t.Helper()
	st, _ := s.staticRole(role)
	c := Credentials{AccessKeyID: st.AccessKeyID, SecretAccessKey: st.SecretAccessKey, SessionToken: st.SessionToken}
	if st.Expiration != "" {
		c.Expiration, _ = time.Parse(time.RFC3339, st.Expiration)
	}
	return c
}

// SetCredentials replaces the keys of role (which must exist) with c: the
// instances of the role serve c from now on.
func (s *Server) SetCredentials(role string, c Credentials) {
	s.t.Helper()
	_, rev := s.staticRole(role)
	s.putRole(role, staticRole(c), rev)
}

// RotateCredentials gives role fresh random keys, as when EC2 renews a role
// session, and returns them.
func (s *Server) RotateCredentials(role string) Credentials {
	s.t.Helper()
	c := Credentials{
		AccessKeyID:     "ASIA" + base32.StdEncoding.EncodeToString(random(10)),
		SecretAccessKey: base64.StdEncoding.EncodeToString(random(30)),
		SessionToken:    base64.StdEncoding.EncodeToString(random(90)),
	}
	s.SetCredentials(role, c)
	return c
}

// ExpireCredentials makes the keys of role expire now: their document
// answers EC2's error form (a Code other than Success) until SetCredentials
// or RotateCredentials gives the role new keys.
func (s *Server) ExpireCredentials(role string) {
	s.t.Helper()
	c := s.Credentials(role)
	c.Expiration = s.now().Truncate(time.Second)
	s.SetCredentials(role, c)
}

// staticRole reads role and checks that it has static keys.
func (s *Server) staticRole(role string) (*config.StaticSource, int64) {
	s.t.Helper()
	r, rev, err := s.srv.Registry().Role(s.t.Context(), role)
	if err != nil {
		s.t.Fatalf("imdstest: %v", err)
	}
	if r.Static == nil {
		s.t.Fatalf("imdstest: role %s has a %s source; only static keys can be changed here", role, r.SourceName())
	}
	return r.Static, rev
}

func (s *Server) putRole(name string, r *config.Role, ifRev int64) {
	s.t.Helper()
	rev, err := s.srv.Registry().PutRole(s.t.Context(), name, r, ifRev)
	if err != nil {
		s.t.Fatalf("imdstest: role %s: %v", name, err)
	}
	s.wait(rev)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
