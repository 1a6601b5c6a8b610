package migration

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/imds/imds/internal/identity"
)

// Class is what a caller's requests say of its readiness for IMDSv2.
type Class string

// The classes, from best to worst.
const (
	// ClassV2: every request carried a token.
	ClassV2 Class = "v2"
	// ClassV1: IMDSv1 without ever asking for a token: legacy code that needs
	// an SDK upgrade.
	ClassV1 Class = "v1"
	// ClassV1Fallback: asked for a token, then used IMDSv1 within the SDKs'
	// fallback window, the token never used: the token answer did not arrive
	// or was not accepted. The fix is the hop limit or the network.
	ClassV1Fallback Class = "v1-fallback"
	// ClassV1Rejected: IMDSv1 refused because tokens are required: broken now.
	ClassV1Rejected Class = "v1-rejected"
)

// Classes lists every class, from best to worst.
var Classes = []Class{ClassV2, ClassV1, ClassV1Fallback, ClassV1Rejected}

// ParseClass returns the class named s.
func ParseClass(s string) (Class, error) {
	for _, c := range Classes {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("class %q: want one of v2, v1, v1-fallback, v1-rejected", s)
}

// Counts are a caller's requests by kind.
type Counts struct {
	TokenPuts    uint64 `json:"token-put"`
	V2           uint64 `json:"v2"`
	V1           uint64 `json:"v1"`
	V1Rejected   uint64 `json:"v1-rejected"`
	InvalidToken uint64 `json:"invalid-token"`
	// V1Fallback counts the IMDSv1 requests (among V1) that were fallbacks.
	V1Fallback uint64 `json:"v1-fallback"`
}

func (c *Counts) add(o Counts) {
	c.TokenPuts += o.TokenPuts
	c.V2 += o.V2
	c.V1 += o.V1
	c.V1Rejected += o.V1Rejected
	c.InvalidToken += o.InvalidToken
	c.V1Fallback += o.V1Fallback
}

// Caller is one caller of an instance, as the CLI, the API and the page show
// it.
type Caller struct {
	Address   string `json:"address"`
	Via       string `json:"via"`
	UserAgent string `json:"user-agent"`
	// Process is the calling process, where imds guard found it.
	Process    string    `json:"process,omitempty"`
	SDK        string    `json:"sdk"`
	SDKVersion string    `json:"sdk-version,omitempty"`
	Class      Class     `json:"class"`
	Evidence   string    `json:"evidence"`
	FirstSeen  time.Time `json:"first-seen"`
	LastSeen   time.Time `json:"last-seen"`
	// LastV1 is the last IMDSv1 request, served or refused; nil when none.
	LastV1   *time.Time `json:"last-v1,omitempty"`
	Requests Counts     `json:"requests"`
	PathsV1  []string   `json:"paths-v1"`
}

// Instance is one instance's verdict and callers.
type Instance struct {
	InstanceID string `json:"instance-id"`
	HTTPTokens string `json:"http-tokens"`
	// Ready: no caller used IMDSv1 within the window, so http-tokens
	// required breaks nothing that was seen.
	Ready bool `json:"ready"`
	// Verdict says why, in words.
	Verdict string        `json:"verdict"`
	LastV1  *time.Time    `json:"last-v1,omitempty"`
	Classes map[Class]int `json:"classes"`
	Callers []Caller      `json:"callers"`
}

// Breaking returns the callers that used IMDSv1 within the window.
func (in *Instance) Breaking() []Caller {
	var out []Caller
	for _, c := range in.Callers {
		if c.Class != ClassV2 {
			out = append(out, c)
		}
	}
	return out
}

// View is the fleet's migration view.
type View struct {
	Window    string     `json:"window"`
	Generated time.Time  `json:"generated"`
	Instances []Instance `json:"instances"`
}

// stored is a record as it is kept in the store and merged across replicas.
type stored struct {
	Address      string `json:"address"`
	Via          string `json:"via"`
	UserAgent    string `json:"user-agent"`
	Process      string `json:"process,omitempty"`
	First        int64  `json:"first"`
	Last         int64  `json:"last"`
	Counts       Counts `json:"counts"`
	PathsV1      uint32 `json:"paths-v1,omitempty"`
	LastV1       int64  `json:"last-v1,omitempty"`
	LastRejected int64  `json:"last-rejected,omitempty"`
	LastFallback int64  `json:"last-fallback,omitempty"`
	LastPut      int64  `json:"last-put,omitempty"`
	PutStatus    int32  `json:"put-status,omitempty"`
	PutForwarded bool   `json:"put-forwarded,omitempty"`
	HopLimit     int32  `json:"hop-limit,omitempty"`
}

func (rec *record) stored() stored {
	s := stored{
		UserAgent:    rec.ua,
		Process:      rec.process,
		Via:          rec.via.String(),
		First:        rec.first,
		Last:         rec.last.Load(),
		PathsV1:      rec.pathsV1.Load(),
		LastV1:       rec.lastV1.Load(),
		LastRejected: rec.lastRejected.Load(),
		LastFallback: rec.lastFallback.Load(),
		LastPut:      rec.lastPut.Load(),
		PutStatus:    rec.putStatus.Load(),
		PutForwarded: rec.putForwarded.Load(),
		HopLimit:     rec.hopLimit.Load(),
		Counts: Counts{
			TokenPuts:    rec.n[kindTokenPut].Load(),
			V2:           rec.n[kindV2].Load(),
			V1:           rec.n[kindV1].Load(),
			V1Rejected:   rec.n[kindV1Rejected].Load(),
			InvalidToken: rec.n[kindInvalidToken].Load(),
			V1Fallback:   rec.n[kindFallback].Load(),
		},
	}
	if rec.addr.IsValid() {
		s.Address = rec.addr.String()
	}
	return s
}

// restore makes a live record of a stored one (after a restart).
func restore(in *inst, s stored) (key, *record) {
	addr, _ := netip.ParseAddr(s.Address)
	rec := &record{in: in, addr: addr, via: parseVia(s.Via), ua: s.UserAgent, process: s.Process, first: s.First}
	rec.last.Store(s.Last)
	rec.n[kindTokenPut].Store(s.Counts.TokenPuts)
	rec.n[kindV2].Store(s.Counts.V2)
	rec.n[kindV1].Store(s.Counts.V1)
	rec.n[kindV1Rejected].Store(s.Counts.V1Rejected)
	rec.n[kindInvalidToken].Store(s.Counts.InvalidToken)
	rec.n[kindFallback].Store(s.Counts.V1Fallback)
	rec.pathsV1.Store(s.PathsV1)
	rec.lastV1.Store(s.LastV1)
	rec.lastRejected.Store(s.LastRejected)
	rec.lastFallback.Store(s.LastFallback)
	rec.lastPut.Store(s.LastPut)
	rec.putStatus.Store(s.PutStatus)
	rec.putForwarded.Store(s.PutForwarded)
	rec.hopLimit.Store(s.HopLimit)
	return key{in.id, addr, agentKey(s.UserAgent, s.Process)}, rec
}

func parseVia(s string) identity.Via {
	for v := identity.ViaNone; v <= identity.ViaDefault; v++ {
		if v.String() == s {
			return v
		}
	}
	return identity.ViaNone
}

// merge adds o (the same caller seen by another replica) into s.
func (s *stored) merge(o stored) {
	if s.First == 0 || (o.First != 0 && o.First < s.First) {
		s.First = o.First
	}
	s.Last = max(s.Last, o.Last)
	s.Counts.add(o.Counts)
	s.PathsV1 |= o.PathsV1
	s.LastV1 = max(s.LastV1, o.LastV1)
	s.LastRejected = max(s.LastRejected, o.LastRejected)
	if o.LastFallback > s.LastFallback {
		s.LastFallback, s.HopLimit = o.LastFallback, o.HopLimit
	}
	if o.LastPut > s.LastPut {
		s.LastPut, s.PutStatus, s.PutForwarded = o.LastPut, o.PutStatus, o.PutForwarded
	}
}

// classify returns the caller's class as of now and the evidence for it.
// Only IMDSv1 use within the window counts.
func (s *stored) classify(now time.Time, window time.Duration) (Class, string) {
	since := now.Add(-window).UnixNano()
	switch {
	case s.LastRejected >= since && s.LastRejected != 0:
		return ClassV1Rejected, fmt.Sprintf("%d IMDSv1 %s refused with 401 because the instance requires tokens; last at %s: this caller is broken now",
			s.Counts.V1Rejected, plural(s.Counts.V1Rejected, "request", "requests"), stamp(s.LastRejected))
	case s.LastFallback >= since && s.LastFallback != 0:
		return ClassV1Fallback, fmt.Sprintf("%d IMDSv1 %s within the fallback window of a token request whose token was never used: %s",
			s.Counts.V1Fallback, plural(s.Counts.V1Fallback, "request", "requests"), s.fallbackCause())
	case s.LastV1 >= since && s.LastV1 != 0:
		if s.Counts.TokenPuts == 0 {
			return ClassV1, fmt.Sprintf("%d IMDSv1 %s and never a token request: legacy code; upgrade the SDK or tool", s.Counts.V1, plural(s.Counts.V1, "request", "requests"))
		}
		return ClassV1, fmt.Sprintf("%d IMDSv1 %s, not as a fallback from its %d token %s: code that reads metadata without a token; upgrade it",
			s.Counts.V1, plural(s.Counts.V1, "request", "requests"), s.Counts.TokenPuts, plural(s.Counts.TokenPuts, "request", "requests"))
	}
	if s.Counts.V1 > 0 || s.Counts.V1Rejected > 0 {
		return ClassV2, fmt.Sprintf("no IMDSv1 request within %s (the last at %s); %d with a token", window, stamp(max(s.LastV1, s.LastRejected)), s.Counts.V2)
	}
	return ClassV2, fmt.Sprintf("every request carried a token (%d token %s, %d with a token)", s.Counts.TokenPuts, plural(s.Counts.TokenPuts, "request", "requests"), s.Counts.V2)
}

// fallbackCause names what kept the token answer from the caller, from the
// last token request's answer.
func (s *stored) fallbackCause() string {
	switch {
	case s.PutForwarded:
		return "its token request carried X-Forwarded-For and was refused with 403: a proxy is in the way; fix the network (NO_PROXY=169.254.169.254 or no proxy to IMDS)"
	case s.PutStatus == 200:
		return fmt.Sprintf("the token was issued but its answer never reached the caller: the hop limit (http-put-response-hop-limit %d) is one short, as for a container behind a bridge; raise it to %d, or fix the network between caller and IMDS", s.HopLimit, s.HopLimit+1)
	case s.PutStatus == 403:
		return "the token request was refused with 403: a proxy or a token path IMDS refuses; fix the network or the client's endpoint"
	case s.PutStatus == 400:
		return "the token request was refused with 400: its TTL header is missing or out of 1-21600"
	case s.PutStatus == 0:
		return "the token request's connection was closed without an answer (IPv6 endpoint disabled); fix the endpoint or the network"
	}
	return fmt.Sprintf("the token request was answered %d; fix the network or the client", s.PutStatus)
}

func (s *stored) caller(now time.Time, window time.Duration) Caller {
	sdk, version := ParseUserAgent(s.UserAgent)
	if s.UserAgent == OverflowAgent {
		sdk, version = SDKOther, ""
	}
	class, evidence := s.classify(now, window)
	c := Caller{
		Address:    s.Address,
		Via:        s.Via,
		UserAgent:  s.UserAgent,
		Process:    s.Process,
		SDK:        sdk,
		SDKVersion: version,
		Class:      class,
		Evidence:   evidence,
		FirstSeen:  time.Unix(0, s.First).UTC(),
		LastSeen:   time.Unix(0, s.Last).UTC(),
		Requests:   s.Counts,
		PathsV1:    []string{},
	}
	if last := max(s.LastV1, s.LastRejected); last != 0 {
		t := time.Unix(0, last).UTC()
		c.LastV1 = &t
	}
	for _, p := range pathNames {
		if s.PathsV1&p.bit != 0 {
			c.PathsV1 = append(c.PathsV1, p.name)
		}
	}
	return c
}

// instanceView builds an instance's verdict from its merged records.
func instanceView(id, httpTokens string, recs []stored, now time.Time, window time.Duration) Instance {
	in := Instance{InstanceID: id, HTTPTokens: httpTokens, Classes: map[Class]int{}, Callers: make([]Caller, 0, len(recs))}
	for _, c := range Classes {
		in.Classes[c] = 0
	}
	for i := range recs {
		c := recs[i].caller(now, window)
		in.Classes[c.Class]++
		if c.LastV1 != nil && (in.LastV1 == nil || c.LastV1.After(*in.LastV1)) {
			t := *c.LastV1
			in.LastV1 = &t
		}
		in.Callers = append(in.Callers, c)
	}
	slices.SortFunc(in.Callers, func(a, b Caller) int {
		if d := cmp.Compare(classRank(b.Class), classRank(a.Class)); d != 0 {
			return d
		}
		if d := cmp.Compare(a.Address, b.Address); d != 0 {
			return d
		}
		if d := cmp.Compare(a.UserAgent, b.UserAgent); d != 0 {
			return d
		}
		return cmp.Compare(a.Process, b.Process)
	})
	breaking := len(in.Callers) - in.Classes[ClassV2]
	switch {
	case breaking > 0:
		in.Verdict = fmt.Sprintf("not ready: %d %s used IMDSv1 within %s", breaking, plural(uint64(breaking), "caller", "callers"), window)
	case len(in.Callers) == 0:
		in.Ready = true
		in.Verdict = fmt.Sprintf("ready: no request seen within %s", window)
	default:
		in.Ready = true
		in.Verdict = fmt.Sprintf("ready: %d %s, none used IMDSv1 within %s", len(in.Callers), plural(uint64(len(in.Callers)), "caller", "callers"), window)
	}
	return in
}

func classRank(c Class) int { return slices.Index(Classes, c) }

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }
