package guard

import (
	"net/netip"
	"strings"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/metadata"
)

// rule is one caller policy, ready to apply.
type rule struct {
	name     string // "default" for the default policy
	match    []netip.Prefix
	v1       config.V1Policy
	role     string
	hostRole bool
	deny     []string
	creds    metadata.DynamicFunc // iam/security-credentials/ROLE; nil without a role
	extended metadata.DynamicFunc // ...-extended/ROLE; nil where unknown
}

// policy is the set of rules a request is judged by; replaced whole on reload.
type policy struct {
	rules []*rule
	def   *rule
}

// defaultName is the name of the default policy; caller names cannot take it
// over since the default is looked up last and by position.
const defaultName = "default"

func (p *policy) match(a netip.Addr) *rule {
	for _, r := range p.rules {
		for _, m := range r.match {
			if m.Contains(a) {
				return r
			}
		}
	}
	return p.def
}

// buildPolicy makes the rules of g, registering the credential sets of their
// roles with creds.
func buildPolicy(g *config.Guard, creds *credentials.Manager) *policy {
	mk := func(name string, pol config.GuardPolicy, match []netip.Prefix) *rule {
		r := &rule{name: name, match: match, v1: pol.IMDSv1, role: pol.Role, hostRole: pol.HostCredentials, deny: pol.DenyPaths}
		if r.v1 == "" {
			r.v1 = config.V1Upgrade
		}
		// Each rule is a subject of its own, so that an assume-role session
		// is named after the caller rule.
		sub := credentials.Subject{Role: pol.Role, InstanceID: "guard-" + name}
		r.creds = creds.For(sub)
		if r.creds != nil {
			r.extended = creds.ForExtended(sub)
		}
		return r
	}
	p := &policy{def: mk(defaultName, g.Default, nil)}
	for i := range g.Callers {
		c := &g.Callers[i]
		p.rules = append(p.rules, mk(c.Name, c.GuardPolicy, c.Prefixes()))
	}
	return p
}

// Kinds of metadata path, as the guard's policy sees them.
const (
	pathOther       = iota
	pathCredentials // iam/security-credentials[/ROLE]
	pathExtended    // iam/security-credentials-extended[/ROLE]
	pathIdentity    // identity-credentials/...
)

// splitPath returns the path after its version ("meta-data/iam/info",
// "user-data") and after meta-data/ ("iam/info"; "" outside meta-data).
func splitPath(p string) (rel, meta string, ok bool) {
	if !strings.HasPrefix(p, "/") {
		return "", "", false
	}
	_, rel, ok = strings.Cut(p[1:], "/")
	if !ok {
		return "", "", false
	}
	meta, _ = strings.CutPrefix(rel, "meta-data/")
	if meta == rel {
		meta = ""
	}
	return rel, meta, true
}

// denied: a prefix of r's deny-paths covers the path, relative to its
// version or to meta-data.
func (r *rule) denied(rel, meta string) bool {
	for _, d := range r.deny {
		if under(rel, d) || (meta != "" && under(meta, d)) {
			return true
		}
	}
	return false
}

// under: path p is prefix d, or inside it. "iam/" and "iam" both cover
// "iam", "iam/" and "iam/info"; "user-data" does not cover "user-datax".
func under(p, d string) bool {
	d = strings.TrimSuffix(d, "/")
	if !strings.HasPrefix(p, d) {
		return false
	}
	return len(p) == len(d) || p[len(d)] == '/'
}

// credentialKind says whether meta (the path after meta-data/) is a
// credentials path, and the role leaf after it ("" for the listing).
func credentialKind(meta string) (kind int, leaf string) {
	for _, c := range []struct {
		prefix string
		kind   int
	}{
		{"iam/security-credentials-extended", pathExtended},
		{"iam/security-credentials", pathCredentials},
		{"identity-credentials", pathIdentity},
	} {
		if under(meta, c.prefix) {
			rest := strings.TrimPrefix(meta[len(c.prefix):], "/")
			return c.kind, rest
		}
	}
	return pathOther, ""
}
