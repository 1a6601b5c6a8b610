package config

import (
	"github.com/imds/imds/internal/ec2id"

	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Role is a role credential source. Exactly one source is set.
type Role struct {
	Static     *StaticSource     `yaml:"static" json:"static,omitempty"`
	AssumeRole *AssumeRoleSource `yaml:"assume-role" json:"assume-role,omitempty"`
	Process    *ProcessSource    `yaml:"process" json:"process,omitempty"`
}

// SourceName is the config key of the role's source: static, assume-role or
// process; "" when none is set.
func (r *Role) SourceName() string {
	switch {
	case r == nil:
		return ""
	case r.Static != nil:
		return "static"
	case r.AssumeRole != nil:
		return "assume-role"
	case r.Process != nil:
		return "process"
	}
	return ""
}

// StaticSource serves fixed keys: the simplest source, for development and for
// keys managed elsewhere.
type StaticSource struct {
	AccessKeyID     string `yaml:"access-key-id" json:"access-key-id,omitempty"`
	SecretAccessKey string `yaml:"secret-access-key" json:"secret-access-key,omitempty"`
	SessionToken    string `yaml:"session-token" json:"session-token,omitempty"`
	// AccountID is served as AccountId in iam/security-credentials-extended;
	// without it that path answers 404 and SDKs fall back to the legacy one.
	AccountID string `yaml:"account-id" json:"account-id,omitempty"`
	// Expiration (RFC 3339) is when temporary keys stop working; they are
	// served with it, and answer EC2's error form once it has passed. Empty:
	// keys without an expiry, served as if EC2 rotated them.
	Expiration string `yaml:"expiration" json:"expiration,omitempty"`
}

// AssumeRoleSource mints credentials with STS AssumeRole, signed with the
// server's own credentials: the AWS SDK's default chain (environment, shared
// files, web identity, container) without IMDS, or SourceProfile.
type AssumeRoleSource struct {
	RoleARN    string `yaml:"role-arn" json:"role-arn,omitempty"`
	ExternalID string `yaml:"external-id" json:"external-id,omitempty"`
	// Duration is the session lifetime asked of STS, 15m to 12h; default 1h.
	Duration string `yaml:"duration" json:"duration,omitempty"`
	// SessionName is the role session name. {instance-id} and {role-delivery}
	// (1.0 for IMDSv1, 2.0 for IMDSv2) are replaced. Default "{instance-id}",
	// as on EC2: every instance gets its own session. Without {instance-id}
	// the instances of the role share one session.
	SessionName string `yaml:"session-name" json:"session-name,omitempty"`
	// SourceProfile names a profile of the shared AWS config files that holds
	// the server's own credentials; empty uses the SDK's default chain.
	SourceProfile string `yaml:"source-profile" json:"source-profile,omitempty"`
	// SourceCredentials "upstream" signs with the host's own role
	// credentials, read from the IMDS that imds guard stands in front of
	// (imds guard only); "" uses the default chain or SourceProfile.
	SourceCredentials string `yaml:"source-credentials" json:"source-credentials,omitempty"`
	STSEndpoint       string `yaml:"sts-endpoint" json:"sts-endpoint,omitempty"`
	Region            string `yaml:"region" json:"region,omitempty"`
	// Timeout bounds one AssumeRole call, retries included; default 30s.
	Timeout string `yaml:"timeout" json:"timeout,omitempty"`
}

// ProcessSource runs a command that prints credentials in the JSON of the AWS
// CLI's credential_process. {instance-id}, {role} and {role-delivery} are
// replaced in the arguments. Without {instance-id} the instances of the role
// share the credentials. The command runs with the server's environment; what
// it prints on stderr is never logged, since it may hold secrets.
type ProcessSource struct {
	Command []string `yaml:"command" json:"command,omitempty"`
	// Timeout bounds one run; default 30s.
	Timeout string `yaml:"timeout" json:"timeout,omitempty"`
}

// Defaults and bounds of the role sources.
const (
	DefaultSessionDuration = time.Hour
	MinSessionDuration     = 15 * time.Minute
	MaxSessionDuration     = 12 * time.Hour
	DefaultSessionName     = "{instance-id}"
	// SourceUpstream is the source-credentials of an assume-role signed
	// with the credentials the guard's upstream IMDS serves the host.
	SourceUpstream       = "upstream"
	DefaultSourceTimeout = 30 * time.Second
	MaxSourceTimeout     = 10 * time.Minute
)

// SessionDuration is the parsed Duration, or its default.
func (a *AssumeRoleSource) SessionDuration() time.Duration {
	return parseDuration(a.Duration, DefaultSessionDuration)
}

// SessionNameTemplate is SessionName, or its default.
func (a *AssumeRoleSource) SessionNameTemplate() string {
	if a.SessionName == "" {
		return DefaultSessionName
	}
	return a.SessionName
}

// CallTimeout is the parsed Timeout, or its default.
func (a *AssumeRoleSource) CallTimeout() time.Duration {
	return parseDuration(a.Timeout, DefaultSourceTimeout)
}

// AccountID is the account of RoleARN, "" if it has none.
func (a *AssumeRoleSource) AccountID() string {
	parts := strings.SplitN(a.RoleARN, ":", 6)
	if len(parts) == 6 {
		return parts[4]
	}
	return ""
}

// RunTimeout is the parsed Timeout, or its default.
func (p *ProcessSource) RunTimeout() time.Duration {
	return parseDuration(p.Timeout, DefaultSourceTimeout)
}

// parseDuration parses a validated duration; "" gives def.
func parseDuration(s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return def
	}
	return d
}

var (
	roleARNRe    = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
	externalIDRe = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	// sessionNameRe is what STS accepts in RoleSessionName.
	sessionNameRe = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	// Longest values of the session-name placeholders.
	sessionPlaceholders = map[string]string{"{instance-id}": "i-0123456789abcdef0", "{role-delivery}": "2.0"}
)

// roles checks the role sources.
func (v *validator) roles(roles map[string]*Role) {
	for name, r := range roles {
		p := "roles." + name
		if !roleNameRe.MatchString(name) {
			v.add(p, name, "a role name has 1 to 64 characters from [A-Za-z0-9+=,.@_-]")
		}
		v.source(p, r)
	}
}

// identityCredentials checks the source of the instance identity credentials
// (identity-credentials/ec2/security-credentials/ec2-instance), if any.
func (v *validator) identityCredentials(key string, r *Role) {
	if r != nil {
		v.source(key, r)
	}
}

// source checks that r sets exactly one source, and that source.
func (v *validator) source(p string, r *Role) {
	n := 0
	if r != nil {
		for _, set := range []bool{r.Static != nil, r.AssumeRole != nil, r.Process != nil} {
			if set {
				n++
			}
		}
	}
	switch {
	case n == 0:
		v.add(p, "", "a source is needed (static, assume-role or process)")
		return
	case n > 1:
		v.add(p, "", "set one source (static, assume-role or process), not several")
		return
	}
	switch {
	case r.Static != nil:
		s, sp := r.Static, p+".static"
		if s.AccessKeyID == "" {
			v.add(sp+".access-key-id", "", "required")
		}
		if s.SecretAccessKey == "" {
			v.add(sp+".secret-access-key", "", "required")
		}
		v.id(sp+".account-id", s.AccountID, ec2id.Account)
		v.timestamp(sp+".expiration", s.Expiration)
	case r.AssumeRole != nil:
		v.assumeRole(p+".assume-role", r.AssumeRole)
	case r.Process != nil:
		pp := r.Process
		if len(pp.Command) == 0 || pp.Command[0] == "" {
			v.add(p+".process.command", "", "required: the program and its arguments, e.g. [/usr/local/bin/broker, --role, \"{role}\"]")
		}
		v.duration(p+".process.timeout", pp.Timeout, time.Second, MaxSourceTimeout)
	}
}

func (v *validator) assumeRole(p string, a *AssumeRoleSource) {
	if a.RoleARN == "" {
		v.add(p+".role-arn", "", "required")
	}
	v.match(p+".role-arn", a.RoleARN, roleARNRe, "a role ARN such as arn:aws:iam::123456789012:role/app")
	// The external id is a shared secret of sorts: never echo it.
	if a.ExternalID != "" && (len(a.ExternalID) < 2 || len(a.ExternalID) > 1224 || !externalIDRe.MatchString(a.ExternalID)) {
		v.add(p+".external-id", "", "2 to 1224 characters from [A-Za-z0-9+=,.@:/_-]")
	}
	v.duration(p+".duration", a.Duration, MinSessionDuration, MaxSessionDuration)
	if d, err := time.ParseDuration(a.Duration); a.Duration != "" && err == nil && d%time.Second != 0 {
		v.add(p+".duration", a.Duration, "want whole seconds")
	}
	if a.SessionName != "" {
		longest := a.SessionName
		for ph, val := range sessionPlaceholders {
			longest = strings.ReplaceAll(longest, ph, val)
		}
		if !sessionNameRe.MatchString(longest) {
			v.add(p+".session-name", a.SessionName, "once {instance-id} and {role-delivery} are replaced, a session name has 2 to 64 characters from [A-Za-z0-9+=,.@_-]")
		}
	}
	if a.SourceProfile != "" && strings.TrimSpace(a.SourceProfile) != a.SourceProfile {
		v.add(p+".source-profile", a.SourceProfile, "a profile name has no surrounding spaces")
	}
	v.oneOf(p+".source-credentials", a.SourceCredentials, SourceUpstream)
	if a.SourceCredentials != "" && a.SourceProfile != "" {
		v.add(p+".source-credentials", a.SourceCredentials, "source-profile and source-credentials exclude each other")
	}
	if a.STSEndpoint != "" {
		u, err := url.Parse(a.STSEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".sts-endpoint", a.STSEndpoint, "not an http or https URL")
		}
	}
	v.id(p+".region", a.Region, ec2id.Region)
	v.duration(p+".timeout", a.Timeout, time.Second, MaxSourceTimeout)
}

// duration checks an optional duration such as 1h or 90s against [lo, hi].
func (v *validator) duration(key, value string, lo, hi time.Duration) {
	if value == "" {
		return
	}
	d, err := time.ParseDuration(value)
	switch {
	case err != nil:
		v.add(key, value, "not a duration such as 90s, 15m or 1h")
	case d < lo || d > hi:
		v.add(key, value, fmt.Sprintf("want %s to %s", fmtDuration(lo), fmtDuration(hi)))
	}
}

// fmtDuration writes 15m rather than 15m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
