package dataplane

import (
	"net/http"
	"time"

	"github.com/imds/imds/internal/token"
)

// Access is what the IMDSv2 rules need to know of a known caller.
type Access struct {
	// ID is what the caller's tokens are bound to: an instance id.
	ID string
	// HopLimit is the IP TTL of token answers.
	HopLimit int
	// TokensRequired refuses token-less GETs with 401.
	TokensRequired bool
	// InvalidTokenAsV1 serves a GET with an invalid token as a token-less one
	// when tokens are optional.
	InvalidTokenAsV1 bool
}

// Admission is what the IMDSv2 rules decided for one request.
type Admission struct {
	// Answered: the rules answered the request themselves (a token PUT,
	// OPTIONS, a refusal) with Code; otherwise it is to be served.
	Answered bool
	Code     int
	// Version is "v2" for token requests and token-carrying GETs, "v1" for
	// GETs served without a valid token, "none" otherwise.
	Version string
	// V2: serve as IMDSv2 (a valid token came with the request); Left is the
	// token's remaining time.
	V2   bool
	Left time.Duration
	// Token: the request carried the token header; TokenValid: and it was
	// valid for Access.ID.
	Token, TokenValid bool
}

// admit applies the IMDSv2 rules to a request from a known caller: token
// PUTs (TTL, X-Forwarded-For, hop limit), OPTIONS and methods on the token
// path, and the token of a GET. It answers what it decides itself.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, acc *Access, a *Admission) {
	path := r.URL.Path
	if r.Method == http.MethodPut {
		if path != tokenPath {
			// Version-specific token paths and a trailing slash are refused
			// with 403, as EC2 does.
			*a = Admission{Answered: true, Code: h.writeError(w, http.StatusForbidden), Version: "v2"}
			return
		}
		*a = Admission{Answered: true, Code: h.issueToken(w, r, acc.ID, acc.HopLimit), Version: "v2"}
		return
	}
	if path == tokenPath {
		if r.Method == http.MethodOptions {
			hd := w.Header()
			hd["Allow"] = valTokenAllow
			hd["Content-Type"] = valText
			hd["Content-Length"] = valZero
			w.WriteHeader(http.StatusOK)
			*a = Admission{Answered: true, Code: http.StatusOK, Version: "none"}
			return
		}
		*a = Admission{Answered: true, Code: notAllowed(w, "OPTIONS, PUT"), Version: "none"}
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		*a = Admission{Answered: true, Code: notAllowed(w, "GET, HEAD"), Version: "none"}
		return
	}

	// IMDSv2 is a request that carries the token header, even empty.
	tokens, v2 := r.Header[hdrToken]
	a.Token = v2
	if !v2 {
		a.Version = "v1"
		if acc.TokensRequired {
			a.Answered, a.Code = true, h.writeError(w, http.StatusUnauthorized)
		}
		return
	}
	a.Version = "v2"
	if _, fwd := r.Header[hdrForwards]; fwd {
		a.Answered, a.Code = true, h.writeError(w, http.StatusForbidden)
		return
	}
	if len(tokens) != 1 {
		a.Answered, a.Code = true, h.writeError(w, http.StatusUnauthorized)
		return
	}
	left, err := h.ring.Load().Verify(tokens[0], acc.ID)
	a.TokenValid = err == nil
	switch {
	case err == nil:
		a.V2, a.Left = true, left
	case !acc.TokensRequired && acc.InvalidTokenAsV1:
		a.Version = "v1"
	default:
		a.Answered, a.Code = true, h.writeError(w, http.StatusUnauthorized)
	}
}

// Gate applies the data plane's IMDSv2 rules for a handler that answers
// from elsewhere (imds guard): one implementation of token issue and
// verification, hop limit, X-Forwarded-For and EC2's error answers.
type Gate struct{ h *Handler }

// NewGate returns a Gate issuing and verifying tokens with ring. Of o, only
// Logger, Now, KeepAlive, Metrics (token count) and EmptyErrorBodies apply.
func NewGate(ring *token.Ring, o Options) *Gate {
	o.Observer = nil
	return &Gate{h: New(nil, ring, o)}
}

// SetRing replaces the key ring.
func (g *Gate) SetRing(r *token.Ring) { g.h.SetRing(r) }

// Admit writes EC2's headers (Server, Connection) and applies the IMDSv2
// rules to r for a caller known as acc. When the Admission is Answered, the
// answer has been written; otherwise the caller of Admit serves r.
func (g *Gate) Admit(w http.ResponseWriter, r *http.Request, acc Access) Admission {
	hd := w.Header()
	hd["Server"] = valServer
	if !g.h.keepAlive || r.Method == http.MethodPut {
		hd["Connection"] = valClose
	}
	var a Admission
	g.h.admit(w, r, &acc, &a)
	return a
}

// WriteError answers code with EC2's body for it, as the data plane does.
func (g *Gate) WriteError(w http.ResponseWriter, code int) int {
	hd := w.Header()
	hd["Server"] = valServer
	if !g.h.keepAlive {
		hd["Connection"] = valClose
	}
	return g.h.writeError(w, code)
}
