package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// Bounds of the session store: a flood of `imds ui` calls or logins evicts
// the entries closest to expiry instead of growing without end.
const (
	maxLogins   = 1000
	maxSessions = 10000
)

// session is a logged-in browser: its expiry and its CSRF token.
type session struct {
	csrf    string
	expires time.Time
}

// sessions holds the one-time login tokens and the sessions of this replica,
// in memory: a restart, or another replica, knows none of them. Tokens and
// session ids are kept by their SHA-256 only.
type sessions struct {
	now        func() time.Time
	loginTTL   time.Duration
	sessionTTL time.Duration

	mu       sync.Mutex
	logins   map[[32]byte]time.Time // token hash -> expiry
	sessions map[[32]byte]*session  // session id hash -> session
}

func newSessions(now func() time.Time, loginTTL, sessionTTL time.Duration) *sessions {
	return &sessions{
		now: now, loginTTL: loginTTL, sessionTTL: sessionTTL,
		logins:   map[[32]byte]time.Time{},
		sessions: map[[32]byte]*session{},
	}
}

// random returns 256 random bits, URL-safe base64 without padding.
func random() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hash(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// newLogin mints a one-time login token.
func (s *sessions) newLogin() (token string, expires time.Time) {
	token = random()
	now := s.now()
	expires = now.Add(s.loginTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	prune(s.logins, now, func(e time.Time) time.Time { return e })
	evict(s.logins, maxLogins, func(e time.Time) time.Time { return e })
	s.logins[hash(token)] = expires
	return token, expires
}

// login consumes a login token and starts a session. ok is false when the
// token is unknown, used or expired; it can never be used again.
func (s *sessions) login(token string) (id string, sess *session, ok bool) {
	now := s.now()
	h := hash(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	expires, found := s.logins[h]
	delete(s.logins, h)
	if !found || !now.Before(expires) {
		return "", nil, false
	}
	prune(s.sessions, now, func(e *session) time.Time { return e.expires })
	evict(s.sessions, maxSessions, func(e *session) time.Time { return e.expires })
	id = random()
	sess = &session{csrf: random(), expires: now.Add(s.sessionTTL)}
	s.sessions[hash(id)] = sess
	return id, sess, true
}

// lookup returns the live session with id.
func (s *sessions) lookup(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	now := s.now()
	h := hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[h]
	if !ok {
		return nil, false
	}
	if !now.Before(sess.expires) {
		delete(s.sessions, h)
		return nil, false
	}
	return sess, true
}

// logout ends the session with id.
func (s *sessions) logout(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, hash(id))
}

// prune deletes the expired entries of m.
func prune[V any](m map[[32]byte]V, now time.Time, expiry func(V) time.Time) {
	for k, v := range m {
		if !now.Before(expiry(v)) {
			delete(m, k)
		}
	}
}

// evict deletes the entries closest to expiry until m has room for one more.
func evict[V any](m map[[32]byte]V, limit int, expiry func(V) time.Time) {
	for len(m) >= limit {
		var (
			first   [32]byte
			soonest time.Time
		)
		for k, v := range m {
			if e := expiry(v); soonest.IsZero() || e.Before(soonest) {
				first, soonest = k, e
			}
		}
		delete(m, first)
	}
}
