package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/imds/imds/internal/imdsopt"
)

// Guard configures `imds guard`, a proxy in front of EC2's own IMDS.
type Guard struct {
	// Upstream is the IMDS the guard forwards to; default
	// http://169.254.169.254.
	Upstream string `yaml:"upstream" json:"upstream,omitempty"`
	// HopLimit is the IP TTL of the guard's own token answers, 1 to 64;
	// default 2 (a container one bridge away).
	HopLimit int `yaml:"hop-limit" json:"hop-limit,omitempty"`
	// Default is the policy of a caller that no entry of Callers matches.
	Default GuardPolicy `yaml:"default" json:"default,omitzero"`
	// Callers are matched in order; the first whose match contains the
	// caller's address applies.
	Callers []GuardCaller `yaml:"callers" json:"callers,omitempty"`
}

// GuardPolicy is what the guard lets a caller do.
type GuardPolicy struct {
	// IMDSv1 is what a token-less GET gets: upgrade, allow or refuse.
	IMDSv1 V1Policy `yaml:"imdsv1" json:"imdsv1,omitempty"`
	// Role names a role under roles: its credentials are served at
	// iam/security-credentials/ in place of the host's.
	Role string `yaml:"role" json:"role,omitempty"`
	// HostCredentials passes the host's own role credentials through. Off
	// by default: without Role, credentials answer 404.
	HostCredentials bool `yaml:"host-credentials" json:"host-credentials,omitempty"`
	// DenyPaths are path prefixes answered 404, relative to the version
	// ("user-data", "dynamic/") or to meta-data ("iam/", "tags/").
	DenyPaths []string `yaml:"deny-paths" json:"deny-paths,omitempty"`
}

// GuardCaller is a policy for the callers whose address is in Match.
type GuardCaller struct {
	// Name identifies the caller in logs and, for assume-role, the session.
	Name string `yaml:"name" json:"name,omitempty"`
	// Match are addresses or CIDR prefixes.
	Match       []string `yaml:"match" json:"match,omitempty"`
	GuardPolicy `yaml:",inline" json:",inline"`
}

// V1Policy says what the guard does with an IMDSv1 (token-less) request.
type V1Policy string

const (
	// V1Upgrade serves it through the guard's own upstream token.
	V1Upgrade V1Policy = "upgrade"
	// V1Allow forwards it without a token; the upstream may refuse it.
	V1Allow V1Policy = "allow"
	// V1Refuse answers 401, as EC2 does under http-tokens required.
	V1Refuse V1Policy = "refuse"
)

// Validate reports a value that is not a V1Policy; "" is valid (the default).
func (p V1Policy) Validate() error {
	switch p {
	case "", V1Upgrade, V1Allow, V1Refuse:
		return nil
	}
	return fmt.Errorf("want upgrade, allow or refuse")
}

// Guard defaults.
const (
	DefaultGuardUpstream = "http://169.254.169.254"
	DefaultGuardHopLimit = 2
)

var (
	callerNameRe = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	denyPathRe   = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$`)
)

// Prefixes parses Match; Validate has checked it. An address is a /32 or
// /128 prefix.
func (c *GuardCaller) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Match))
	for _, m := range c.Match {
		if p, err := parsePrefix(m); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// guard checks the guard section and fills its defaults.
func (v *validator) guard(g *Guard, roles map[string]*Role) {
	if g.Upstream == "" {
		g.Upstream = DefaultGuardUpstream
	}
	if u, err := url.Parse(g.Upstream); err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		v.add("guard.upstream", g.Upstream, "want an http URL with no path, such as http://169.254.169.254")
	}
	if g.HopLimit == 0 {
		g.HopLimit = DefaultGuardHopLimit
	}
	v.check("guard.hop-limit", strconv.Itoa(g.HopLimit), imdsopt.HopLimit(g.HopLimit).Validate())
	if g.Default.IMDSv1 == "" {
		g.Default.IMDSv1 = V1Upgrade
	}
	v.guardPolicy("guard.default", &g.Default, roles)
	names := map[string]int{}
	for i := range g.Callers {
		c := &g.Callers[i]
		p := fmt.Sprintf("guard.callers[%d]", i)
		switch {
		case c.Name == "":
			v.add(p+".name", "", "required")
		case !callerNameRe.MatchString(c.Name):
			v.add(p+".name", c.Name, "a caller name has 1 to 64 characters from [A-Za-z0-9+=,.@_-]")
		default:
			if j, dup := names[c.Name]; dup {
				v.add(p+".name", c.Name, fmt.Sprintf("duplicate: guard.callers[%d] has the same name", j))
			}
			names[c.Name] = i
		}
		if len(c.Match) == 0 {
			v.add(p+".match", "", "at least one address or CIDR prefix is needed")
		}
		for j, m := range c.Match {
			if _, err := parsePrefix(m); err != nil {
				v.add(fmt.Sprintf("%s.match[%d]", p, j), m, "not an address or CIDR prefix such as 172.17.0.2 or 172.17.0.0/16")
			}
		}
		if c.IMDSv1 == "" {
			c.IMDSv1 = g.Default.IMDSv1
		}
		v.guardPolicy(p, &c.GuardPolicy, roles)
	}
}

func (v *validator) guardPolicy(p string, pol *GuardPolicy, roles map[string]*Role) {
	if err := pol.IMDSv1.Validate(); err != nil {
		v.add(p+".imdsv1", string(pol.IMDSv1), err.Error())
	}
	if pol.Role != "" {
		if _, ok := roles[pol.Role]; !ok {
			v.add(p+".role", pol.Role, "no such role under roles")
		}
		if pol.HostCredentials {
			v.add(p+".host-credentials", "true", "a caller with a role never gets the host's credentials")
		}
	}
	for i, d := range pol.DenyPaths {
		if !denyPathRe.MatchString(d) {
			v.add(fmt.Sprintf("%s.deny-paths[%d]", p, i), d, "want a path prefix such as iam/ or user-data (no leading slash, no version)")
		}
	}
}
