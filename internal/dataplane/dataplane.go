// Package dataplane is the IMDS HTTP handler: it identifies the calling
// instance, enforces its metadata options and IMDSv2 tokens, and answers from
// the instance's metadata tree exactly as EC2 does, headers and error pages
// included. Packets of a token response leave with the instance's hop limit.
package dataplane

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/identity"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/ratelimit"
	"github.com/imds/imds/internal/token"
)

// Header names, in the form EC2 writes them.
const (
	hdrToken    = "X-Aws-Ec2-Metadata-Token"
	hdrTTL      = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	hdrForwards = "X-Forwarded-For"
	tokenPath   = "/latest/api/token"
)

// Handler serves the data plane. Create it with New.
type Handler struct {
	fleet       *fleet.Fleet
	ring        atomic.Pointer[token.Ring]
	log         *slog.Logger
	now         func() time.Time
	keepAlive   bool
	metrics     *Metrics
	observer    Observer
	emptyErrors bool
	versions    map[string]bool
	versionLs   []byte
	versionLen  []string
	limit       *ratelimit.Limiter
	limitCode   int // 429 or 503; 0 drops the connection
}

// Options configure a Handler.
type Options struct {
	Logger *slog.Logger
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// KeepAlive lets clients reuse a connection for GETs. EC2 closes every
	// connection after one response, and so does imds unless this is set.
	// Token responses always close: their packets carry the hop limit.
	KeepAlive bool
	// Metrics, when set, counts requests.
	Metrics *Metrics
	// Observer, when set, is told the outcome of every request from a
	// known instance.
	Observer Observer
	// Versions are the API versions listed at "/" and accepted as path
	// prefixes, "latest" last; nil means metadata.Versions.
	Versions []string
	// EmptyErrorBodies answers 400 and 401 with an empty body rather than
	// EC2's XHTML error page (what real IMDS sends there is not known).
	EmptyErrorBodies bool
	// RateLimit, when set, throttles each instance's requests (nil: no
	// limit); a request over it gets RateLimitStatus with an empty body, or
	// with 0 its connection is closed without an answer.
	RateLimit       *ratelimit.Limiter
	RateLimitStatus int
}

// New returns the data-plane handler for f, verifying tokens with ring.
func New(f *fleet.Fleet, ring *token.Ring, o Options) *Handler {
	h := &Handler{fleet: f, log: o.Logger, now: o.Now, keepAlive: o.KeepAlive, metrics: o.Metrics, observer: o.Observer, versions: map[string]bool{},
		limit: o.RateLimit, limitCode: o.RateLimitStatus}
	if o.EmptyErrorBodies {
		h.emptyErrors = true
	}
	h.ring.Store(ring)
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	versions := o.Versions
	if len(versions) == 0 {
		versions = metadata.Versions
	}
	for _, v := range versions {
		h.versions[v] = true
	}
	h.versionLs = []byte(strings.Join(versions, "\n"))
	h.versionLen = []string{strconv.Itoa(len(h.versionLs))}
	return h
}

// SetRing replaces the token key ring (after a rotation); tokens of keys
// still in the new ring stay valid.
func (h *Handler) SetRing(r *token.Ring) { h.ring.Store(r) }

type connKey struct{}

// ConnContext stores the connection in the request context so that a token
// response can set the hop limit on it. Use it as http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// refusedLogAddrs is how many of the fleet's addresses a refused caller's
// log line lists.
const refusedLogAddrs = 8

// Shared header values; net/http never modifies them.
var (
	valServer     = []string{"EC2ws"}
	valClose      = []string{"close"}
	valText       = []string{"text/plain"}
	valHTML       = []string{"text/html"}
	valNone       = []string{"none"}
	valZero       = []string{"0"}
	valTokenAllow = []string{"OPTIONS, PUT"}
)

// Observer is told what each request from a known instance did. Observe runs
// on the request path, once per request, from many goroutines at once: it
// must not block, and must not modify the Outcome's Body.
type Observer interface {
	Observe(Outcome)
}

// Outcome is what one request did, as an Observer sees it.
type Outcome struct {
	Instance   string       // the calling instance's id
	Via        identity.Via // the rule of the identity chain that found it
	Source     netip.Addr   // the connection's source address
	UserAgent  string
	Method     string
	Path       string
	Forwarded  bool // the request carried X-Forwarded-For
	Token      bool // the request carried X-aws-ec2-metadata-token
	TokenValid bool // ... and it was valid for this instance
	// Status is the answer's code; 0 when the connection was dropped.
	Status int
	// HopLimit and TokensRequired are the instance's options when it was
	// served.
	HopLimit       int
	TokensRequired bool
	// Body is the body of a 200 answer to a GET; read only.
	Body []byte
	// Process describes the calling process where the server could find it
	// (the guard, for callers in its own network namespace); "" otherwise.
	Process string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var o Outcome
	route, code, version := h.serve(w, r, &o)
	h.metrics.observe(route, code, version)
	if h.observer != nil && o.Instance != "" {
		o.Status = code
		h.observer.Observe(o)
	}
}

// Route categories for metrics.
const (
	routeToken   = "token"
	routeMeta    = "meta-data"
	routeDynamic = "dynamic"
	routeUser    = "user-data"
	routeOther   = "other"
)

func routeOf(path string) string {
	switch {
	case path == tokenPath:
		return routeToken
	case strings.Contains(path, "/meta-data"):
		return routeMeta
	case strings.Contains(path, "/dynamic"):
		return routeDynamic
	case strings.Contains(path, "/user-data"):
		return routeUser
	}
	return routeOther
}

// serve answers one request and reports what it did.
// It fills o for the observer once the caller is known.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, o *Outcome) (route string, code int, version string) {
	hd := w.Header()
	hd["Server"] = valServer
	if !h.keepAlive || r.Method == http.MethodPut {
		hd["Connection"] = valClose
	}
	path := r.URL.Path
	if path == "" {
		// An absolute-form target without a path (GET http://169.254.169.254
		// HTTP/1.1) means "/" (RFC 9110, 4.2.3).
		path = "/"
	}
	route, version = routeOf(path), "none"

	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return route, h.writeError(w, http.StatusForbidden), version
	}
	snap := h.fleet.Load()
	e, via, err := identity.Resolve(snap, r, src.Addr().Unmap())
	if err != nil {
		known, total := snap.SomeAddrs(refusedLogAddrs)
		h.log.Warn("refused caller", "remote", src.Addr().Unmap().String(), "reason", err,
			"fleet_instances", snap.Len(), "fleet_addresses", total, "known_addresses", known)
		return route, h.writeError(w, http.StatusForbidden), version
	}
	if !h.limit.Allow(e.Instance.ID) {
		return route, h.throttled(w), version
	}
	opts := &e.Instance.Options
	if h.observer != nil {
		*o = Outcome{
			Instance: e.Instance.ID, Via: via, Source: src.Addr().Unmap(),
			UserAgent: r.Header.Get("User-Agent"), Method: r.Method, Path: path,
			HopLimit: opts.HopLimit, TokensRequired: opts.TokensRequired,
		}
		_, o.Forwarded = r.Header[hdrForwards]
	}
	if isIPv6Endpoint(r) && !opts.IPv6Enabled {
		if snap.Settings.IPv6DropDisabled {
			drop(w)
			return route, 0, version
		}
		return route, h.writeError(w, http.StatusForbidden), version
	}
	if !opts.EndpointEnabled {
		return route, h.writeError(w, http.StatusForbidden), version
	}

	var a Admission
	h.admit(w, r, &Access{
		ID: e.Instance.ID, HopLimit: opts.HopLimit, TokensRequired: opts.TokensRequired,
		InvalidTokenAsV1: snap.Settings.InvalidTokenAsV1,
	}, &a)
	o.Token, o.TokenValid = a.Token, a.TokenValid
	if a.Answered {
		return route, a.Code, a.Version
	}
	return route, h.serveMetadata(w, r, snap, e, path, a.V2, a.Left, o), a.Version
}

func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request, snap *fleet.Snapshot, e *fleet.Entry, path string, v2 bool, left time.Duration, o *Outcome) int {
	var (
		body      []byte
		lenHeader []string
	)
	contentType := valText
	if path == "/" {
		body, lenHeader = h.versionLs, h.versionLen
	} else {
		rest := path[1:]
		version, sub, _ := strings.Cut(rest, "/")
		if !h.versions[version] {
			return h.writeError(w, http.StatusNotFound)
		}
		n, found := e.Tree.Lookup(sub)
		if !found {
			return h.writeError(w, http.StatusNotFound)
		}
		slash := strings.HasSuffix(path, "/")
		if n.IsDir() && !slash && (n.RedirectWithoutSlash() || snap.Settings.RedirectDirectories) {
			return redirect(w, r, path+"/")
		}
		var ok bool
		body, ok = n.Body(metadata.Request{V2: v2})
		if !ok {
			return h.writeError(w, http.StatusNotFound)
		}
		if n.ContentType() == "application/octet-stream" {
			contentType = valOctet
		}
		lenHeader = metadata.ContentLength(len(body))
		w.Header()["Last-Modified"] = e.LastModifiedHeader
	}
	hd := w.Header()
	hd["Content-Type"] = contentType
	hd["Accept-Ranges"] = valNone
	if n := lenHeader; n != nil {
		hd["Content-Length"] = n
	} else {
		hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	if v2 {
		hd[hdrTTL] = []string{strconv.FormatInt(ceilSeconds(left), 10)}
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
		o.Body = body
	}
	return http.StatusOK
}

var (
	valOctet    = []string{"application/octet-stream"}
	valTokenLen = []string{strconv.Itoa(token.EncodedLen)}
)

func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, id string, hops int) int {
	if _, fwd := r.Header[hdrForwards]; fwd {
		return h.writeError(w, http.StatusForbidden)
	}
	ttl, ok := parseTTL(r.Header[hdrTTL])
	if !ok {
		return h.writeError(w, http.StatusBadRequest)
	}
	tok := h.ring.Load().Issue(id, time.Duration(ttl)*time.Second)
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if err := setHopLimit(c, hops); err != nil {
			h.log.Error("set hop limit on token response", "err", err)
		}
	}
	hd := w.Header()
	hd["Content-Type"] = valText
	hd["Accept-Ranges"] = valNone
	hd["Content-Length"] = valTokenLen
	hd[hdrTTL] = []string{strconv.Itoa(ttl)}
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, tok)
	if h.metrics != nil {
		h.metrics.tokens.Inc()
	}
	return http.StatusOK
}

// parseTTL accepts exactly one header value of 1 to 21600 decimal digits.
func parseTTL(vals []string) (int, bool) {
	if len(vals) != 1 {
		return 0, false
	}
	v := vals[0]
	if v == "" || len(v) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > int(token.MaxTTL/time.Second) {
		return 0, false
	}
	return n, true
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func isIPv6Endpoint(r *http.Request) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	ta, ok := la.(*net.TCPAddr)
	return ok && ta.IP.To4() == nil
}
