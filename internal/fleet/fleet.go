// Package fleet holds the immutable snapshot of every instance the data plane
// serves, indexed by id and by address, and swaps it atomically when the
// configuration changes. Requests read a snapshot without locks.
package fleet

import (
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
)

// Entry is one instance ready to serve.
type Entry struct {
	Instance *metadata.Instance
	Tree     *metadata.Tree
	// LastModifiedHeader is Tree.LastModified formatted for the HTTP header.
	LastModifiedHeader []string
}

// Snapshot is the whole fleet at one moment. It is never modified.
type Snapshot struct {
	byID   map[string]*Entry
	byAddr map[netip.Addr]*Entry
	def    *Entry
	// IPv6DropDisabled: the IPv6 endpoint closes the connection (rather than
	// answering 403) for an instance whose IPv6 endpoint is disabled.
	IPv6DropDisabled bool
}

// ByAddr returns the instance whose addresses contain a.
func (s *Snapshot) ByAddr(a netip.Addr) *Entry { return s.byAddr[a.Unmap()] }

// ByID returns the instance with this id.
func (s *Snapshot) ByID(id string) *Entry { return s.byID[id] }

// Default returns the instance that serves callers matching no address, or nil.
func (s *Snapshot) Default() *Entry { return s.def }

// Len is the number of instances.
func (s *Snapshot) Len() int { return len(s.byID) }

// Fleet holds the current snapshot.
type Fleet struct{ cur atomic.Pointer[Snapshot] }

// New returns a fleet serving s.
func New(s *Snapshot) *Fleet {
	f := &Fleet{}
	f.cur.Store(s)
	return f
}

// Load returns the current snapshot.
func (f *Fleet) Load() *Snapshot { return f.cur.Load() }

// Swap replaces the snapshot; requests already running finish on the old one.
func (f *Fleet) Swap(s *Snapshot) { f.cur.Store(s) }

// Credentials serves role credentials by role name.
type Credentials interface {
	// For returns the renderer of role's credentials document, or nil when
	// the role is unknown.
	For(role string) metadata.DynamicFunc
}

// FromConfig builds a snapshot from a validated configuration. clock stamps
// the snapshot (the launch time of instances that do not set one); creds
// serves the roles, which must already hold c.Roles.
func FromConfig(c *config.Config, clock func() time.Time, creds Credentials) (*Snapshot, error) {
	now := clock()
	s := &Snapshot{
		byID:             make(map[string]*Entry, len(c.Instances)),
		byAddr:           make(map[netip.Addr]*Entry, len(c.Instances)),
		IPv6DropDisabled: c.IPv6Disabled != "forbidden",
	}
	for i := range c.Instances {
		in, err := instanceFromConfig(&c.Instances[i], now)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", c.Instances[i].InstanceID, err)
		}
		if r := c.Roles[in.Role]; r != nil && r.InstanceProfileID != "" {
			in.InstanceProfileID = r.InstanceProfileID
		}
		in.Derive()
		var roleCreds metadata.DynamicFunc
		if in.Role != "" {
			if roleCreds = creds.For(in.Role); roleCreds == nil {
				return nil, fmt.Errorf("instance %s: role %s has no credential source", in.ID, in.Role)
			}
		}
		tree := metadata.Build(in, roleCreds, now)
		e := &Entry{Instance: in, Tree: tree, LastModifiedHeader: []string{tree.LastModified.UTC().Format(http.TimeFormat)}}
		if _, dup := s.byID[in.ID]; dup {
			return nil, fmt.Errorf("instance %s: duplicate id", in.ID)
		}
		s.byID[in.ID] = e
		for _, a := range in.Addresses {
			if other, dup := s.byAddr[a]; dup {
				return nil, fmt.Errorf("address %s: claimed by %s and %s", a, other.Instance.ID, in.ID)
			}
			s.byAddr[a] = e
		}
	}
	if c.DefaultInstance != "" {
		s.def = s.byID[c.DefaultInstance]
	}
	return s, nil
}

func instanceFromConfig(ci *config.Instance, now time.Time) (*metadata.Instance, error) {
	in := &metadata.Instance{
		ID:                  ci.InstanceID,
		AccountID:           ci.AccountID,
		AMIID:               ci.AMIID,
		AMILaunchIndex:      ci.AMILaunchIndex,
		InstanceType:        ci.InstanceType,
		Architecture:        ci.Architecture,
		AvailabilityZone:    ci.AvailabilityZone,
		AvailabilityZoneID:  ci.AvailabilityZoneID,
		Region:              ci.Region,
		LocalIPv4:           ci.LocalIPv4,
		PublicIPv4:          ci.PublicIPv4,
		IPv6:                ci.IPv6,
		MAC:                 ci.MAC,
		Hostname:            ci.Hostname,
		PublicHostname:      ci.PublicHostname,
		ReservationID:       ci.ReservationID,
		InterfaceID:         ci.InterfaceID,
		SubnetID:            ci.SubnetID,
		SubnetCIDR:          ci.SubnetCIDR,
		VPCID:               ci.VPCID,
		VPCCIDR:             ci.VPCCIDR,
		SecurityGroups:      ci.SecurityGroups,
		SecurityGroupIDs:    ci.SecurityGroupIDs,
		UserData:            ci.UserDataBytes(),
		Role:                ci.IAMRole,
		InstanceProfileName: ci.InstanceProfile,
		LifeCycle:           ci.LifeCycle,
		LaunchTime:          now.UTC().Truncate(time.Second),
		Options:             resolveOptions(ci.MetadataOptions),
	}
	for _, kv := range ci.PublicKeys {
		in.PublicKeys = append(in.PublicKeys, metadata.KeyValue{Key: kv.Key, Value: kv.Value})
	}
	for _, kv := range ci.Tags {
		in.Tags = append(in.Tags, metadata.KeyValue{Key: kv.Key, Value: kv.Value})
	}
	for _, a := range ci.Addresses {
		ap, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", a, err)
		}
		in.Addresses = append(in.Addresses, ap.Unmap())
	}
	parse := func(s string) time.Time {
		t, _ := time.Parse(time.RFC3339, s) // validated by config
		return t
	}
	if ci.LaunchTime != "" {
		in.LaunchTime = parse(ci.LaunchTime)
	}
	if ci.Spot != nil {
		in.Spot = &metadata.Spot{Action: ci.Spot.Action, Time: parse(ci.Spot.Time)}
	}
	if ci.Rebalance != "" {
		in.RebalanceNotice = parse(ci.Rebalance)
	}
	for _, e := range ci.Events {
		in.Events = append(in.Events, metadata.Event{
			Code: e.Code, Description: e.Description, EventID: e.EventID, State: e.State,
			NotBefore: parse(e.NotBefore), NotAfter: parse(e.NotAfter),
		})
	}
	return in, nil
}

// resolveOptions applies EC2's built-in defaults to the options an instance sets.
func resolveOptions(mo config.MetadataOptions) metadata.Options {
	o := metadata.DefaultOptions()
	if mo.HTTPTokens != "" {
		o.TokensRequired = mo.HTTPTokens == "required"
	}
	if mo.HTTPPutResponseHopLimit != 0 {
		o.HopLimit = mo.HTTPPutResponseHopLimit
	}
	if mo.HTTPEndpoint != "" {
		o.EndpointEnabled = mo.HTTPEndpoint == "enabled"
	}
	if mo.HTTPProtocolIPv6 != "" {
		o.IPv6Enabled = mo.HTTPProtocolIPv6 == "enabled"
	}
	if mo.InstanceMetadataTags != "" {
		o.TagsEnabled = mo.InstanceMetadataTags == "enabled"
	}
	return o
}
