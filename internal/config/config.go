// Package config loads and validates the declarative YAML configuration of imds:
// the instances it serves, the roles they use and the server's own settings.
//
// Loading follows one path for `imds serve` and `imds validate`: defaults, then
// the file (unknown keys rejected), then Validate. Every error names the key, the
// value and the line it came from.
package config

import (
	"github.com/imds/imds/internal/ec2id"
	"github.com/imds/imds/internal/imdsopt"

	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole declarative configuration.
type Config struct {
	// DefaultInstance, when set, serves callers that match no instance address.
	// Meant for a laptop or CI job with a single instance; leave it empty on a
	// host that serves a fleet, so an unknown caller is refused.
	DefaultInstance string `yaml:"default-instance" json:"default-instance,omitempty"`
	// IPv6Disabled says what the IPv6 endpoint does for an instance whose
	// http-protocol-ipv6 is disabled: "drop" closes the connection without an
	// answer (on EC2 the address is not routed at all), "forbidden" answers 403.
	IPv6Disabled string `yaml:"ipv6-disabled-response" json:"ipv6-disabled-response,omitempty"`
	// DirectoryWithoutSlash says what a directory asked for without its
	// trailing slash answers: "listing" (200, as captures of EC2 show for
	// most directories) or "redirect" (301 to the path with the slash, as
	// captures show for iam/security-credentials, which always redirects).
	DirectoryWithoutSlash string `yaml:"directory-without-slash" json:"directory-without-slash,omitempty"`
	// InvalidTokenWhenOptional says what a GET with an invalid or expired
	// token gets from an instance whose tokens are optional: "unauthorized"
	// (401, as under required) or "v1" (served as a token-less request).
	InvalidTokenWhenOptional string `yaml:"invalid-token-when-optional" json:"invalid-token-when-optional,omitempty"`
	// ErrorBody is the body of 400 and 401 answers: "page" (EC2's XHTML error
	// page, as its 404 has) or "empty".
	ErrorBody string `yaml:"error-body" json:"error-body,omitempty"`
	// APIVersions replaces the API versions listed at "/" and accepted as
	// path prefixes (the current list on EC2 is not published); "latest" is
	// always added last.
	APIVersions []string `yaml:"api-versions" json:"api-versions,omitempty"`
	// RateLimit throttles each instance's requests, as EC2 does; unset
	// serves without a limit.
	RateLimit RateLimit  `yaml:"rate-limit" json:"rate-limit,omitzero"`
	Instances []Instance `yaml:"instances" json:"instances,omitempty"`
	// IdentityCredentials is the source of the instance identity credentials
	// (identity-credentials/ec2/security-credentials/ec2-instance); unset
	// leaves them out.
	IdentityCredentials *Role            `yaml:"identity-credentials" json:"identity-credentials,omitempty"`
	Roles               map[string]*Role `yaml:"roles" json:"roles,omitempty"`
	// Migration sets the IMDSv2 migration view's window and bounds.
	Migration Migration `yaml:"migration" json:"migration,omitzero"`
	// Guard configures `imds guard`; a file with a guard section needs no
	// instances.
	Guard *Guard `yaml:"guard" json:"guard,omitempty"`

	// lines maps a key path ("instances[0].metadata-options.http-tokens") to its
	// line in the file, so that Validate can name it.
	lines map[string]int
}

// Migration configures the IMDSv2 migration view. Durations are Go
// durations ("24h", "90s"); zero values take the defaults.
type Migration struct {
	// Window: IMDSv1 use older than this no longer counts against an
	// instance's readiness, and callers unseen for this long expire. 24h.
	Window string `yaml:"window" json:"window,omitempty"`
	// FallbackWindow: an IMDSv1 request this soon after a token request
	// whose token was never used is a fallback. 10s.
	FallbackWindow string `yaml:"fallback-window" json:"fallback-window,omitempty"`
	// CallersPerInstance (addresses) and AgentsPerCaller (User-Agents) cap
	// the records; requests past them count in an overflow record. 64 and 8.
	CallersPerInstance int `yaml:"callers-per-instance" json:"callers-per-instance,omitempty"`
	AgentsPerCaller    int `yaml:"agents-per-caller" json:"agents-per-caller,omitempty"`
	// FlushInterval and FlushMax bound the writes of records to the store:
	// at most FlushMax instances every FlushInterval. 10s and 500.
	FlushInterval string `yaml:"flush-interval" json:"flush-interval,omitempty"`
	FlushMax      int    `yaml:"flush-max" json:"flush-max,omitempty"`
	// MetricsInstances is how many instances get metric series of their own;
	// the rest are summed under instance_id="_other". 500.
	MetricsInstances int `yaml:"metrics-instances" json:"metrics-instances,omitempty"`
}

// Durations returns the migration durations, zero where unset; Validate has
// checked them.
func (m Migration) Durations() (window, fallback, flush time.Duration) {
	window, _ = time.ParseDuration(m.Window)
	fallback, _ = time.ParseDuration(m.FallbackWindow)
	flush, _ = time.ParseDuration(m.FlushInterval)
	return window, fallback, flush
}

func (v *validator) migration(m Migration) {
	durations := []struct {
		key, val string
		min      time.Duration
	}{
		{"migration.window", m.Window, time.Minute},
		{"migration.fallback-window", m.FallbackWindow, time.Second},
		{"migration.flush-interval", m.FlushInterval, time.Second},
	}
	for _, d := range durations {
		if d.val == "" {
			continue
		}
		dur, err := time.ParseDuration(d.val)
		if err != nil || dur < d.min {
			v.add(d.key, d.val, fmt.Sprintf("want a duration of at least %s, such as 24h or 90s", d.min))
		}
	}
	ints := []struct {
		key string
		val int
	}{
		{"migration.callers-per-instance", m.CallersPerInstance},
		{"migration.agents-per-caller", m.AgentsPerCaller},
		{"migration.flush-max", m.FlushMax},
		{"migration.metrics-instances", m.MetricsInstances},
	}
	for _, n := range ints {
		if n.val < 0 || n.val > 100000 {
			v.add(n.key, fmt.Sprint(n.val), "want 1 to 100000 (0 or unset: the default)")
		}
	}
}

// RateLimit is the data plane's per-instance request limit.
type RateLimit struct {
	// RequestsPerSecond is each instance's steady rate; 0 is no limit.
	RequestsPerSecond float64 `yaml:"requests-per-second" json:"requests-per-second,omitempty"`
	// Burst is how many requests an idle instance may make at once; default
	// the rate rounded up, at least 1.
	Burst int `yaml:"burst" json:"burst,omitempty"`
	// Response is what a request over the limit gets: "429" (Too Many
	// Requests, what clients have reported from EC2), "503" (what AWS's
	// documentation names) or "drop" (the connection is closed without an
	// answer, as when EC2 drops packets over its rate).
	Response string `yaml:"response" json:"response,omitempty"`
}

// Instance is one instance as the operator describes it. Unset fields are
// derived (see Instance fields in package metadata) or absent from the tree.
type Instance struct {
	InstanceID         string             `yaml:"instance-id" json:"instance-id,omitempty"`
	Addresses          []string           `yaml:"addresses" json:"addresses,omitempty"`
	AccountID          string             `yaml:"account-id" json:"account-id,omitempty"`
	AMIID              string             `yaml:"ami-id" json:"ami-id,omitempty"`
	AMILaunchIndex     int                `yaml:"ami-launch-index" json:"ami-launch-index,omitempty"`
	InstanceType       string             `yaml:"instance-type" json:"instance-type,omitempty"`
	Architecture       string             `yaml:"architecture" json:"architecture,omitempty"`
	AvailabilityZone   string             `yaml:"availability-zone" json:"availability-zone,omitempty"`
	AvailabilityZoneID string             `yaml:"availability-zone-id" json:"availability-zone-id,omitempty"`
	Region             string             `yaml:"region" json:"region,omitempty"`
	LocalIPv4          string             `yaml:"local-ipv4" json:"local-ipv4,omitempty"`
	PublicIPv4         string             `yaml:"public-ipv4" json:"public-ipv4,omitempty"`
	IPv6               string             `yaml:"ipv6" json:"ipv6,omitempty"`
	MAC                string             `yaml:"mac" json:"mac,omitempty"`
	Hostname           string             `yaml:"hostname" json:"hostname,omitempty"`
	PublicHostname     string             `yaml:"public-hostname" json:"public-hostname,omitempty"`
	ReservationID      string             `yaml:"reservation-id" json:"reservation-id,omitempty"`
	InterfaceID        string             `yaml:"interface-id" json:"interface-id,omitempty"`
	SubnetID           string             `yaml:"subnet-id" json:"subnet-id,omitempty"`
	SubnetCIDR         string             `yaml:"subnet-ipv4-cidr-block" json:"subnet-ipv4-cidr-block,omitempty"`
	VPCID              string             `yaml:"vpc-id" json:"vpc-id,omitempty"`
	VPCCIDR            string             `yaml:"vpc-ipv4-cidr-block" json:"vpc-ipv4-cidr-block,omitempty"`
	SecurityGroups     []string           `yaml:"security-groups" json:"security-groups,omitempty"`
	SecurityGroupIDs   []string           `yaml:"security-group-ids" json:"security-group-ids,omitempty"`
	PublicKeys         OrderedMap         `yaml:"public-keys" json:"public-keys,omitempty"`
	UserData           *string            `yaml:"user-data" json:"user-data,omitempty"`
	UserDataBase64     string             `yaml:"user-data-base64" json:"user-data-base64,omitempty"`
	Tags               OrderedMap         `yaml:"tags" json:"tags,omitempty"`
	IAMRole            string             `yaml:"iam-role" json:"iam-role,omitempty"`
	InstanceProfile    string             `yaml:"instance-profile" json:"instance-profile,omitempty"`
	LifeCycle          string             `yaml:"instance-life-cycle" json:"instance-life-cycle,omitempty"`
	LaunchTime         string             `yaml:"launch-time" json:"launch-time,omitempty"`
	Spot               *SpotAction        `yaml:"spot" json:"spot,omitempty"`
	Rebalance          string             `yaml:"rebalance-notice-time" json:"rebalance-notice-time,omitempty"`
	Events             []MaintenanceEvent `yaml:"maintenance-events" json:"maintenance-events,omitempty"`
	// TargetLifecycleState is served at autoscaling/target-lifecycle-state.
	TargetLifecycleState string          `yaml:"target-lifecycle-state" json:"target-lifecycle-state,omitempty"`
	MetadataOptions      MetadataOptions `yaml:"metadata-options" json:"metadata-options,omitempty"`
}

// MetadataOptions are EC2's instance metadata options, with the AWS CLI's
// spelling. Empty fields take EC2's built-in defaults.
type MetadataOptions struct {
	HTTPTokens              imdsopt.Tokens   `yaml:"http-tokens" json:"http-tokens,omitempty"`
	HTTPPutResponseHopLimit imdsopt.HopLimit `yaml:"http-put-response-hop-limit" json:"http-put-response-hop-limit,omitempty"`
	HTTPEndpoint            imdsopt.State    `yaml:"http-endpoint" json:"http-endpoint,omitempty"`
	HTTPProtocolIPv6        imdsopt.State    `yaml:"http-protocol-ipv6" json:"http-protocol-ipv6,omitempty"`
	InstanceMetadataTags    imdsopt.State    `yaml:"instance-metadata-tags" json:"instance-metadata-tags,omitempty"`
}

// SpotAction is a pending Spot interruption: served at spot/instance-action and
// (for terminate) spot/termination-time.
type SpotAction struct {
	Action string `yaml:"action" json:"action,omitempty"` // hibernate | stop | terminate
	Time   string `yaml:"time" json:"time,omitempty"`     // RFC 3339
}

// LifecycleStates are the values of autoscaling/target-lifecycle-state.
var LifecycleStates = []string{
	"InService", "Standby", "Detached", "Terminated",
	"Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated", "Warmed:Terminated",
}

// ValidateLifecycleState checks an Auto Scaling target lifecycle state.
func ValidateLifecycleState(s string) error {
	if !slices.Contains(LifecycleStates, s) {
		return fmt.Errorf("want one of %s", strings.Join(LifecycleStates, ", "))
	}
	return nil
}

// MaintenanceEvent is one scheduled event, served in events/maintenance/.
type MaintenanceEvent struct {
	Code        string `yaml:"code" json:"code,omitempty"`
	Description string `yaml:"description" json:"description,omitempty"`
	EventID     string `yaml:"event-id" json:"event-id,omitempty"`
	NotBefore   string `yaml:"not-before" json:"not-before,omitempty"` // RFC 3339
	NotAfter    string `yaml:"not-after" json:"not-after,omitempty"`   // RFC 3339
	// NotBeforeDeadline is the latest start ModifyInstanceEventStartTime
	// accepts (RFC 3339); default not-before plus 21 days.
	NotBeforeDeadline string `yaml:"not-before-deadline" json:"not-before-deadline,omitempty"`
	State             string `yaml:"state" json:"state,omitempty"` // active | canceled | completed
}

// OrderedMap is a YAML mapping of strings that keeps the file's order.
type OrderedMap []KeyValue

// KeyValue is one entry of an OrderedMap.
type KeyValue struct{ Key, Value string }

// UnmarshalYAML reads a mapping of scalars, keeping its order.
func (m *OrderedMap) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of names to strings", n.Line)
	}
	*m = (*m)[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: want a string value for %q", k.Line, k.Value)
		}
		*m = append(*m, KeyValue{k.Value, v.Value})
	}
	return nil
}

// Get returns the value for key.
func (m OrderedMap) Get(key string) (string, bool) {
	for _, kv := range m {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Error is one problem found in a configuration.
type Error struct {
	Line  int    // 0 when unknown
	Key   string // e.g. instances[0].metadata-options.http-tokens
	Value string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Key)
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found; Validate reports them all at once.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return c, nil
}

// Parse decodes and validates YAML. Unknown keys are errors.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if err := DecodeYAML(data, c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil {
		c.lines = map[string]int{}
		indexLines(&root, "", c.lines)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Demo is the configuration `imds serve` uses without --config: one instance that
// answers every caller, so that a developer can point an SDK at it at once.
func Demo() *Config {
	ud := "#!/bin/bash\necho \"hello from imds\"\n"
	c := &Config{
		DefaultInstance: "i-0123456789abcdef0",
		Instances: []Instance{{
			InstanceID:       "i-0123456789abcdef0",
			AccountID:        "123456789012",
			AMIID:            "ami-0123456789abcdef0",
			InstanceType:     "t3.micro",
			AvailabilityZone: "us-east-1a",
			LocalIPv4:        "10.0.0.10",
			MAC:              "0e:00:00:00:00:01",
			SecurityGroups:   []string{"default"},
			UserData:         &ud,
			Tags:             OrderedMap{{"Name", "imds-demo"}},
			IAMRole:          "imds-demo-role",
			MetadataOptions:  MetadataOptions{InstanceMetadataTags: "enabled"},
		}},
		Roles: map[string]*Role{
			// The documented AWS example keys: they sign requests but no AWS
			// account accepts them.
			"imds-demo-role": {Static: &StaticSource{
				AccessKeyID:     "AKIAIOSFODNN7EXAMPLE",
				SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			}},
		},
	}
	if err := c.Validate(); err != nil {
		panic("demo config is invalid: " + err.Error())
	}
	return c
}

func indexLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			out[k] = n.Content[i].Line
			indexLines(n.Content[i+1], k+".", out)
		}
	case yaml.SequenceNode:
		p := strings.TrimSuffix(prefix, ".")
		for i, c := range n.Content {
			k := fmt.Sprintf("%s[%d]", p, i)
			out[k] = c.Line
			indexLines(c, k+".", out)
		}
	}
}

var (
	macRe        = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
	apiVersionRe = regexp.MustCompile(`^(1\.0|[0-9]{4}-[0-9]{2}-[0-9]{2})$`)
	roleNameRe   = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	// EC2 refuses these tag keys when tags are exposed in instance metadata.
	metadataTagKeyRe = regexp.MustCompile(`^[a-zA-Z0-9+\-=.,_:@]{1,128}$`)
)

// Validate checks every field and reports every problem it finds.
func (c *Config) Validate() error {
	v := &validator{lines: c.lines}
	switch c.IPv6Disabled {
	case "":
		c.IPv6Disabled = "drop"
	case "drop", "forbidden":
	default:
		v.add("ipv6-disabled-response", c.IPv6Disabled, "want drop or forbidden")
	}
	switch c.DirectoryWithoutSlash {
	case "":
		c.DirectoryWithoutSlash = "listing"
	case "listing", "redirect":
	default:
		v.add("directory-without-slash", c.DirectoryWithoutSlash, "want listing or redirect")
	}
	switch c.InvalidTokenWhenOptional {
	case "":
		c.InvalidTokenWhenOptional = "unauthorized"
	case "unauthorized", "v1":
	default:
		v.add("invalid-token-when-optional", c.InvalidTokenWhenOptional, "want unauthorized or v1")
	}
	switch c.ErrorBody {
	case "":
		c.ErrorBody = "page"
	case "page", "empty":
	default:
		v.add("error-body", c.ErrorBody, "want page or empty")
	}
	v.migration(c.Migration)
	rl := &c.RateLimit
	switch {
	case math.IsNaN(rl.RequestsPerSecond) || rl.RequestsPerSecond < 0:
		v.add("rate-limit.requests-per-second", fmt.Sprint(rl.RequestsPerSecond), "want 0 (no limit) or more")
	case rl.Burst < 0:
		v.add("rate-limit.burst", strconv.Itoa(rl.Burst), "want 0 (the rate) or more")
	case rl.Burst == 0 && rl.RequestsPerSecond > 0:
		rl.Burst = max(1, int(math.Ceil(rl.RequestsPerSecond)))
	}
	switch rl.Response {
	case "":
		rl.Response = "429"
	case "429", "503", "drop":
	default:
		v.add("rate-limit.response", rl.Response, "want 429, 503 or drop")
	}
	for i, ver := range c.APIVersions {
		if ver == "latest" || !apiVersionRe.MatchString(ver) {
			v.add(fmt.Sprintf("api-versions[%d]", i), ver, "want a date such as 2021-03-23 or 1.0 (latest is always served)")
		}
	}
	if len(c.Instances) == 0 && c.Guard == nil {
		v.add("instances", "", "at least one instance is needed")
	}
	if c.Guard != nil {
		v.guard(c.Guard, c.Roles)
	}
	ids := map[string]int{}
	addrs := map[netip.Addr]string{}
	for i := range c.Instances {
		in := &c.Instances[i]
		p := fmt.Sprintf("instances[%d]", i)
		v.instance(p, in)
		if in.InstanceID != "" {
			if j, dup := ids[in.InstanceID]; dup {
				v.add(p+".instance-id", in.InstanceID, fmt.Sprintf("duplicate: instances[%d] has the same id", j))
			}
			ids[in.InstanceID] = i
		}
		for j, a := range in.Addresses {
			ap, err := netip.ParseAddr(a)
			if err != nil {
				continue // reported by v.instance
			}
			ap = ap.Unmap()
			if other, dup := addrs[ap]; dup && other == in.InstanceID {
				v.add(fmt.Sprintf("%s.addresses[%d]", p, j), a, "listed twice")
			} else if dup {
				v.add(fmt.Sprintf("%s.addresses[%d]", p, j), a, fmt.Sprintf("%s cannot have it: already an address of %s", in.InstanceID, other))
			}
			addrs[ap] = in.InstanceID
		}
		if in.IAMRole != "" {
			if _, ok := c.Roles[in.IAMRole]; !ok {
				v.add(p+".iam-role", in.IAMRole, "no such role under roles")
			}
		}
	}
	if c.DefaultInstance != "" {
		if _, ok := ids[c.DefaultInstance]; !ok {
			v.add("default-instance", c.DefaultInstance, "no instance has this id")
		}
	}
	v.roles(c.Roles)
	if c.IdentityCredentials != nil {
		v.identityCredentials("identity-credentials", c.IdentityCredentials)
	}
	if len(v.errs) > 0 {
		slices.SortStableFunc(v.errs, func(a, b *Error) int { return a.Line - b.Line })
		return v.errs
	}
	return nil
}

// ValidateInstanceID checks the form of an instance id.
func ValidateInstanceID(id string) error {
	if !ec2id.Instance.Valid(id) {
		return fmt.Errorf("%q is not %s", id, ec2id.Instance.What)
	}
	return nil
}

// ValidateInstance checks one instance on its own, as the admin API receives
// it. Uniqueness of ids and addresses across a fleet is checked where the
// fleet is (the registry).
func ValidateInstance(in *Instance) error {
	v := &validator{}
	v.instance("instance", in)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

// ValidateRole checks one role's source, as the admin API receives it.
func ValidateRole(name string, r *Role) error {
	v := &validator{}
	v.roles(map[string]*Role{name: r})
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

// ValidateTags checks tags as EC2 does when they are exposed in metadata.
func ValidateTags(tags OrderedMap, inMetadata bool) error {
	v := &validator{}
	v.tags("tags", tags, inMetadata)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

type validator struct {
	lines map[string]int
	errs  Errors
}

func (v *validator) add(key, value, msg string) {
	v.errs = append(v.errs, &Error{Line: v.line(key), Key: key, Value: value, Msg: msg})
}

// line finds the line of key, or of its nearest parent that has one.
func (v *validator) line(key string) int {
	for k := key; k != ""; {
		if l, ok := v.lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// check adds err, the refusal of value, to the errors.
func (v *validator) check(key, value string, err error) {
	if err != nil {
		v.add(key, value, err.Error())
	}
}

// option checks value, if set, with the Validate of its metadata option.
// option checks a metadata option's value, if set.
func option[T interface {
	~string
	Validate() error
}](v *validator, key string, value T) {
	if value != "" {
		v.check(key, string(value), value.Validate())
	}
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if value != "" && !slices.Contains(allowed, value) {
		v.add(key, value, "want one of "+strings.Join(allowed, ", "))
	}
}

// id checks that value, if set, has the form f.
func (v *validator) id(key, value string, f ec2id.Form) {
	if value != "" && !f.Valid(value) {
		v.add(key, value, "not "+f.What)
	}
}

func (v *validator) match(key, value string, re *regexp.Regexp, what string) {
	if value != "" && !re.MatchString(value) {
		v.add(key, value, "not "+what)
	}
}

func (v *validator) addr(key, value string, want4 bool) {
	if value == "" {
		return
	}
	a, err := netip.ParseAddr(value)
	switch {
	case err != nil:
		v.add(key, value, "not an IP address")
	case want4 && !a.Is4():
		v.add(key, value, "not an IPv4 address")
	case !want4 && (!a.Is6() || a.Is4In6()):
		v.add(key, value, "not an IPv6 address")
	}
}

func (v *validator) timestamp(key, value string) {
	if value == "" {
		return
	}
	if _, err := time.Parse(time.RFC3339, value); err != nil {
		v.add(key, value, "not an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
}

func (v *validator) instance(p string, in *Instance) {
	if in.InstanceID == "" {
		v.add(p+".instance-id", "", "required")
	}
	v.id(p+".instance-id", in.InstanceID, ec2id.Instance)
	v.id(p+".account-id", in.AccountID, ec2id.Account)
	v.id(p+".ami-id", in.AMIID, ec2id.Image)
	v.id(p+".availability-zone", in.AvailabilityZone, ec2id.Zone)
	v.id(p+".region", in.Region, ec2id.Region)
	if in.Region != "" && in.AvailabilityZone != "" {
		if r, ok := ec2id.RegionOfZone(in.AvailabilityZone); ok && r != in.Region {
			v.add(p+".region", in.Region, "availability-zone "+in.AvailabilityZone+" is not in it")
		}
	}
	v.match(p+".mac", in.MAC, macRe, "a lower-case MAC address such as 0e:12:34:56:78:9a")
	v.oneOf(p+".architecture", in.Architecture, "i386", "x86_64", "arm64")
	v.oneOf(p+".instance-life-cycle", in.LifeCycle, "on-demand", "spot", "scheduled", "capacity-block")
	if in.AMILaunchIndex < 0 {
		v.add(p+".ami-launch-index", strconv.Itoa(in.AMILaunchIndex), "must not be negative")
	}
	for j, a := range in.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			v.add(fmt.Sprintf("%s.addresses[%d]", p, j), a, "not an IP address")
		}
	}
	v.addr(p+".local-ipv4", in.LocalIPv4, true)
	v.addr(p+".public-ipv4", in.PublicIPv4, true)
	v.addr(p+".ipv6", in.IPv6, false)
	for _, k := range []struct{ key, val string }{{"subnet-ipv4-cidr-block", in.SubnetCIDR}, {"vpc-ipv4-cidr-block", in.VPCCIDR}} {
		if k.val != "" {
			if pf, err := netip.ParsePrefix(k.val); err != nil || !pf.Addr().Is4() {
				v.add(p+"."+k.key, k.val, "not an IPv4 CIDR block")
			}
		}
	}
	if in.UserData != nil && in.UserDataBase64 != "" {
		v.add(p+".user-data-base64", "", "set user-data or user-data-base64, not both")
	}
	if in.UserDataBase64 != "" {
		if _, err := decodeBase64(in.UserDataBase64); err != nil {
			v.add(p+".user-data-base64", "", "not base64: "+err.Error())
		}
	}
	if n := len(in.UserDataBytes()); n > 16384 {
		v.add(p+".user-data", "", fmt.Sprintf("%d bytes; EC2 allows 16384", n))
	}
	for j, kv := range in.PublicKeys {
		if kv.Key == "" || strings.ContainsAny(kv.Key, "=/\n") {
			v.add(fmt.Sprintf("%s.public-keys.%s", p, kv.Key), kv.Key, "a key name must not be empty or contain '=', '/' or a newline")
		}
		if !strings.HasPrefix(kv.Value, "ssh-") && !strings.HasPrefix(kv.Value, "ecdsa-") {
			v.add(fmt.Sprintf("%s.public-keys.%s", p, kv.Key), shorten(kv.Value), fmt.Sprintf("key %d is not an OpenSSH public key line", j))
		}
	}
	mo := &in.MetadataOptions
	mp := p + ".metadata-options"
	option(v, mp+".http-tokens", mo.HTTPTokens)
	option(v, mp+".http-endpoint", mo.HTTPEndpoint)
	option(v, mp+".http-protocol-ipv6", mo.HTTPProtocolIPv6)
	option(v, mp+".instance-metadata-tags", mo.InstanceMetadataTags)
	if h := mo.HTTPPutResponseHopLimit; h != 0 || v.has(mp+".http-put-response-hop-limit") {
		v.check(mp+".http-put-response-hop-limit", strconv.Itoa(int(h)), h.Validate())
	}
	v.tags(p+".tags", in.Tags, mo.InstanceMetadataTags == imdsopt.Enabled)
	if s := in.Spot; s != nil {
		v.oneOf(p+".spot.action", s.Action, "hibernate", "stop", "terminate")
		if s.Action == "" {
			v.add(p+".spot.action", "", "required: hibernate, stop or terminate")
		}
		if s.Time == "" {
			v.add(p+".spot.time", "", "required")
		}
		v.timestamp(p+".spot.time", s.Time)
	}
	v.timestamp(p+".rebalance-notice-time", in.Rebalance)
	if in.TargetLifecycleState != "" {
		if err := ValidateLifecycleState(in.TargetLifecycleState); err != nil {
			v.add(p+".target-lifecycle-state", in.TargetLifecycleState, err.Error())
		}
	}
	v.timestamp(p+".launch-time", in.LaunchTime)
	for j, e := range in.Events {
		ep := fmt.Sprintf("%s.maintenance-events[%d]", p, j)
		v.oneOf(ep+".code", e.Code, "instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop")
		if e.Code == "" {
			v.add(ep+".code", "", "required")
		}
		v.oneOf(ep+".state", e.State, "active", "canceled", "completed")
		v.timestamp(ep+".not-before", e.NotBefore)
		v.timestamp(ep+".not-after", e.NotAfter)
		v.timestamp(ep+".not-before-deadline", e.NotBeforeDeadline)
		if e.NotBefore == "" {
			v.add(ep+".not-before", "", "required")
		}
	}
}

func (v *validator) tags(p string, tags OrderedMap, inMetadata bool) {
	for _, kv := range tags {
		key := p + "." + kv.Key
		if len(kv.Key) > 128 {
			v.add(key, shorten(kv.Key), "a tag key has at most 128 characters")
		}
		if len(kv.Value) > 256 {
			v.add(key, shorten(kv.Value), "a tag value has at most 256 characters")
		}
		if strings.HasPrefix(strings.ToLower(kv.Key), "aws:") {
			v.add(key, kv.Key, "the aws: prefix is reserved")
		}
		if inMetadata {
			if !metadataTagKeyRe.MatchString(kv.Key) || kv.Key == "." || kv.Key == ".." || kv.Key == "_index" {
				v.add(key, kv.Key, "with instance-metadata-tags enabled a tag key may use only a-z A-Z 0-9 + - = . , _ : @ and must not be '.', '..' or '_index'")
			}
		}
	}
}

func (v *validator) has(key string) bool {
	_, ok := v.lines[key]
	return ok
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
