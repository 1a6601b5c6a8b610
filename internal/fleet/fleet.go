// Package fleet holds the immutable snapshot of every instance the data plane
// serves, indexed by id and by address, and swaps it atomically when the
// store changes. Requests read a snapshot without locks or store I/O.
package fleet

import (
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

// Entry is one instance ready to serve.
type Entry struct {
	Instance *metadata.Instance
	Tree     *metadata.Tree
	// LastModifiedHeader is Tree.LastModified formatted for the HTTP header.
	LastModifiedHeader []string
	// Revision is the store revision of the record it was built from.
	Revision int64
	// record is kept only if it has changes scheduled in time (see Records).
	record *registry.Instance
}

// Relay is a trusted forwarder as the identity chain needs it.
type Relay struct {
	Name   string
	Secret []byte
}

// Settings are the server-wide parts of a snapshot.
type Settings struct {
	// DefaultInstance serves callers that match nothing else (single-instance
	// mode); "" refuses them.
	DefaultInstance string
	// IPv6DropDisabled: the IPv6 endpoint closes the connection (rather than
	// answering 403) for an instance whose IPv6 endpoint is disabled.
	IPv6DropDisabled bool
	// RedirectDirectories: a directory without its trailing slash answers
	// 301 rather than its listing.
	RedirectDirectories bool
	// InvalidTokenAsV1: under optional tokens, a request with an invalid
	// token is served as IMDSv1 rather than refused with 401.
	InvalidTokenAsV1 bool
}

// SettingsOf returns the server-wide settings of a validated configuration.
func SettingsOf(c *config.Config) Settings {
	return Settings{
		DefaultInstance:     c.DefaultInstance,
		IPv6DropDisabled:    c.IPv6Disabled != "forbidden",
		RedirectDirectories: c.DirectoryWithoutSlash == "redirect",
		InvalidTokenAsV1:    c.InvalidTokenWhenOptional == "v1",
	}
}

// Snapshot is the whole fleet at one moment. It is never modified.
type Snapshot struct {
	byID   map[string]*Entry
	byAddr map[netip.Addr]*Entry
	gone   map[netip.Addr]*Entry // addresses of stopped and terminated instances only
	relays map[netip.Addr]*Relay
	def    *Entry
	Settings
}

// ByAddr returns the instance whose addresses contain a.
func (s *Snapshot) ByAddr(a netip.Addr) *Entry { return s.byAddr[a.Unmap()] }

// ByID returns the instance with this id.
//
// ByID, ByAddr and Default leave out stopped and terminated instances: no
// code runs on them to call, and a caller that still uses such an
// instance's address or id is answered as an unknown one.
func (s *Snapshot) ByID(id string) *Entry {
	if e := s.byID[id]; e != nil && !e.Instance.State.Gone() {
		return e
	}
	return nil
}

// GoneAt returns the stopped or terminated instance whose addresses contain
// a, when no running one has it: to say why its caller is refused.
func (s *Snapshot) GoneAt(a netip.Addr) *Entry { return s.gone[a.Unmap()] }

// GoneByID returns the instance with this id if it is stopped or
// terminated.
func (s *Snapshot) GoneByID(id string) *Entry {
	if e := s.byID[id]; e != nil && e.Instance.State.Gone() {
		return e
	}
	return nil
}

// Records calls yield with the record of every instance that has a change
// scheduled in time (events.Scheduled: a transitional state, a Spot
// interruption, maintenance events), stopped and terminated ones included,
// until yield returns false. The snapshot keeps no other record: what the
// data plane serves is all the rest of the fleet costs.
func (s *Snapshot) Records(yield func(*registry.Instance) bool) {
	for _, e := range s.byID {
		if e.record != nil && !yield(e.record) {
			return
		}
	}
}

// RelayAt returns the relay whose addresses contain a.
func (s *Snapshot) RelayAt(a netip.Addr) *Relay { return s.relays[a.Unmap()] }

// Default returns the instance that serves callers matching no address, or nil.
func (s *Snapshot) Default() *Entry { return s.def }

// SomeAddrs returns up to n of the addresses the fleet serves, sorted, and
// how many there are in all: enough to tell, in a log line, which network
// the fleet expects callers from.
func (s *Snapshot) SomeAddrs(n int) (addrs []string, total int) {
	for a := range s.byAddr {
		if len(addrs) == n {
			break
		}
		addrs = append(addrs, a.String())
	}
	slices.Sort(addrs)
	return addrs, len(s.byAddr)
}

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

// Credentials serves the credential documents of instances; a nil renderer
// leaves its leaf out. See credentials.Manager.
type Credentials interface {
	For(sub credentials.Subject) metadata.DynamicFunc
	ForExtended(sub credentials.Subject) metadata.DynamicFunc
	ForIdentity(sub credentials.Subject) metadata.DynamicFunc
	// Forget releases what an instance that is gone had registered.
	Forget(instanceID string)
}

// Builder turns records into snapshots, rebuilding only the instances that
// changed, so that a change in a fleet of 100,000 costs one tree and a map copy.
type Builder struct {
	creds  Credentials
	sign   metadata.SignFunc
	clock  func() time.Time
	byID   map[string]*Entry
	relays map[string]registry.Relay
	dirty  bool
	last   *Snapshot
	// lastModified is the Last-Modified header of the instances built last,
	// shared by all those built in the same second.
	lastModified []string
}

// NewBuilder returns an empty builder. creds and sign may be nil: no
// credentials, no identity signatures.
func NewBuilder(creds Credentials, sign metadata.SignFunc, clock func() time.Time) *Builder {
	if clock == nil {
		clock = time.Now
	}
	return &Builder{creds: creds, sign: sign, clock: clock, byID: map[string]*Entry{}, relays: map[string]registry.Relay{}, dirty: true}
}

// PutInstance adds or replaces an instance. Records already built at the same
// revision are kept as they are.
func (b *Builder) PutInstance(rec *registry.Instance) {
	if e, ok := b.byID[rec.Spec.InstanceID]; ok && rec.Revision != 0 && e.Revision == rec.Revision {
		return
	}
	e := b.build(MetadataInstance(rec), rec.Revision)
	if events.Scheduled(rec) {
		e.record = rec
	}
	b.byID[rec.Spec.InstanceID] = e
	b.dirty = true
}

// RemoveInstance drops an instance.
func (b *Builder) RemoveInstance(id string) {
	if _, ok := b.byID[id]; ok {
		delete(b.byID, id)
		b.dirty = true
		if b.creds != nil {
			b.creds.Forget(id)
		}
	}
}

// RolesChanged rebuilds the instances of roles that appeared or went away, so
// that their credential leaves come and go with the role.
func (b *Builder) RolesChanged(roles ...string) {
	for id, e := range b.byID {
		for _, r := range roles {
			if e.Instance.Role == r {
				ne := b.build(e.Instance, e.Revision)
				ne.record = e.record
				b.byID[id] = ne
				b.dirty = true
			}
		}
	}
}

// PutRelay adds or replaces a relay; RemoveRelay drops one.
func (b *Builder) PutRelay(rl registry.Relay) { b.relays[rl.Name] = rl; b.dirty = true }

// RemoveRelay drops a relay.
func (b *Builder) RemoveRelay(name string) { delete(b.relays, name); b.dirty = true }

// Snapshot returns the fleet as built so far.
func (b *Builder) Snapshot(set Settings) *Snapshot {
	if !b.dirty && b.last != nil && b.last.Settings == set {
		return b.last
	}
	s := &Snapshot{
		byID:     maps.Clone(b.byID),
		byAddr:   make(map[netip.Addr]*Entry, len(b.byID)),
		relays:   map[netip.Addr]*Relay{},
		Settings: set,
	}
	for _, e := range s.byID {
		if e.Instance.State.Gone() {
			for _, a := range e.Instance.Addresses {
				if s.gone == nil {
					s.gone = map[netip.Addr]*Entry{}
				}
				s.gone[a] = e
			}
			continue
		}
		for _, a := range e.Instance.Addresses {
			s.byAddr[a] = e
		}
	}
	for a := range s.gone {
		if s.byAddr[a] != nil {
			delete(s.gone, a)
		}
	}
	for _, rl := range b.relays {
		r := &Relay{Name: rl.Name, Secret: rl.Secret}
		for _, a := range rl.Addresses {
			if ap, err := netip.ParseAddr(a); err == nil {
				s.relays[ap.Unmap()] = r
			}
		}
	}
	s.def = s.ByID(set.DefaultInstance)
	b.last, b.dirty = s, false
	return s
}

// MetadataInstance is the instance a record describes, with every derived
// field filled in: what the data plane serves and DescribeInstances shows.
func MetadataInstance(rec *registry.Instance) *metadata.Instance {
	in := instanceFromSpec(&rec.Spec)
	in.LaunchTime = rec.LaunchTime
	in.State = rec.State
	in.Options = metadata.Options{
		TokensRequired:  rec.Options.HTTPTokens == imdsopt.Required,
		HopLimit:        int(rec.Options.HTTPPutResponseHopLimit),
		EndpointEnabled: rec.Options.HTTPEndpoint != imdsopt.Disabled,
		IPv6Enabled:     rec.Options.HTTPProtocolIPv6 == imdsopt.Enabled,
		TagsEnabled:     rec.Options.InstanceMetadataTags == imdsopt.Enabled,
	}
	in.Derive()
	return in
}

// build makes the entry of in.
func (b *Builder) build(instance *metadata.Instance, revision int64) *Entry {
	// The entry and its instance are one allocation: every request reads
	// both, and in a large fleet one memory page for the two saves a TLB
	// miss.
	blk := &struct {
		entry Entry
		in    metadata.Instance
	}{in: *instance}
	in := &blk.in
	src := metadata.Sources{Sign: b.sign}
	if b.creds != nil {
		sub := credentials.Subject{Role: in.Role, InstanceID: in.ID, V1: !in.Options.TokensRequired, AccountID: in.AccountID}
		src.Credentials = b.creds.For(sub) // also clears what a role-less instance had
		src.IdentityCredentials = b.creds.ForIdentity(sub)
		if in.Role != "" {
			src.ExtendedCredentials = b.creds.ForExtended(sub)
		}
	}
	if in.Role != "" && src.Credentials == nil {
		// The role is not (yet) known: serve EC2's error form rather than
		// drop the category, so that clients see the role name and a reason.
		src.Credentials = func(metadata.Request) ([]byte, bool) {
			return metadata.CredentialsErrorJSON("InvalidRole", "the instance profile's role is not configured on this server", b.clock()), true
		}
	}
	tree := metadata.Build(in, src, b.clock())
	lm := tree.LastModified.UTC().Format(http.TimeFormat)
	if len(b.lastModified) == 0 || b.lastModified[0] != lm {
		b.lastModified = []string{lm}
	}
	blk.entry = Entry{Instance: in, Tree: tree, LastModifiedHeader: b.lastModified, Revision: revision}
	return &blk.entry
}

// FromConfig builds a snapshot straight from a validated configuration, with
// EC2's built-in defaults for unset options: what `imds validate` checks and
// what tests serve without a store.
func FromConfig(c *config.Config, clock func() time.Time, creds Credentials) (*Snapshot, error) {
	if clock == nil {
		clock = time.Now
	}
	b := NewBuilder(creds, nil, clock)
	now := clock().UTC().Truncate(time.Second)
	for i := range c.Instances {
		spec := c.Instances[i]
		rec := &registry.Instance{Spec: spec, Options: registry.Resolve(spec.MetadataOptions, registry.Defaults{}, nil), LaunchTime: now}
		if spec.LaunchTime != "" {
			rec.LaunchTime, _ = time.Parse(time.RFC3339, spec.LaunchTime)
		}
		b.PutInstance(rec)
	}
	return b.Snapshot(SettingsOf(c)), nil
}

func instanceFromSpec(ci *config.Instance) *metadata.Instance {
	in := &metadata.Instance{
		ID:                   ci.InstanceID,
		AccountID:            ci.AccountID,
		AMIID:                ci.AMIID,
		AMILaunchIndex:       ci.AMILaunchIndex,
		InstanceType:         ci.InstanceType,
		Architecture:         ci.Architecture,
		AvailabilityZone:     ci.AvailabilityZone,
		AvailabilityZoneID:   ci.AvailabilityZoneID,
		Region:               ci.Region,
		LocalIPv4:            ci.LocalIPv4,
		PublicIPv4:           ci.PublicIPv4,
		IPv6:                 ci.IPv6,
		MAC:                  ci.MAC,
		Hostname:             ci.Hostname,
		PublicHostname:       ci.PublicHostname,
		ReservationID:        ci.ReservationID,
		InterfaceID:          ci.InterfaceID,
		SubnetID:             ci.SubnetID,
		SubnetCIDR:           ci.SubnetCIDR,
		VPCID:                ci.VPCID,
		VPCCIDR:              ci.VPCCIDR,
		SecurityGroups:       ci.SecurityGroups,
		SecurityGroupIDs:     ci.SecurityGroupIDs,
		UserData:             ci.UserDataBytes(),
		Role:                 ci.IAMRole,
		InstanceProfileName:  ci.InstanceProfile,
		LifeCycle:            ci.LifeCycle,
		TargetLifecycleState: ci.TargetLifecycleState,
	}
	for _, kv := range ci.PublicKeys {
		in.PublicKeys = append(in.PublicKeys, metadata.KeyValue{Key: kv.Key, Value: kv.Value})
	}
	for _, kv := range ci.Tags {
		in.Tags = append(in.Tags, metadata.KeyValue{Key: kv.Key, Value: kv.Value})
	}
	for _, a := range ci.Addresses {
		if ap, err := netip.ParseAddr(a); err == nil { // validated by config
			in.Addresses = append(in.Addresses, ap.Unmap())
		}
	}
	parse := func(s string) time.Time {
		t, _ := time.Parse(time.RFC3339, s) // validated by config
		return t
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
	return in
}
