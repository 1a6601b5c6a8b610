// Package metadata is the instance model and the metadata tree EC2 serves for it:
// leaves, derived directory listings and EC2's exact JSON layouts. It does no I/O.
package metadata

import (
	"github.com/imds/imds/internal/ec2id"

	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Options are an instance's resolved metadata options.
type Options struct {
	TokensRequired  bool // HttpTokens=required
	HopLimit        int  // HttpPutResponseHopLimit, 1..64
	EndpointEnabled bool // HttpEndpoint=enabled
	IPv6Enabled     bool // HttpProtocolIpv6=enabled
	TagsEnabled     bool // InstanceMetadataTags=enabled
}

// KeyValue is an ordered pair (a tag, a public key).
type KeyValue struct{ Key, Value string }

// Spot is a pending Spot interruption.
type Spot struct {
	Action string // hibernate | stop | terminate
	Time   time.Time
}

// Event is a scheduled maintenance event.
type Event struct {
	Code, Description, EventID, State string
	NotBefore, NotAfter               time.Time
}

// Instance is everything the data plane serves for one instance. Fill what is
// known and call Derive for the rest.
type Instance struct {
	ID string
	// Options sit beside ID: every request reads both, and in a large fleet
	// one cache line for the two is one memory access saved.
	Options                    Options
	AccountID, AMIID           string
	AMILaunchIndex             int
	InstanceType, Architecture string
	AvailabilityZone           string
	AvailabilityZoneID         string
	Region                     string
	LocalIPv4, PublicIPv4      string
	IPv6                       string
	MAC                        string
	Hostname, PublicHostname   string
	ReservationID              string
	InterfaceID                string
	SubnetID, SubnetCIDR       string
	VPCID, VPCCIDR             string
	SecurityGroups             []string
	SecurityGroupIDs           []string
	PublicKeys                 []KeyValue
	UserData                   []byte // nil: none
	Tags                       []KeyValue
	Role                       string // "" for no instance profile
	InstanceProfileName        string
	InstanceProfileID          string
	LifeCycle                  string
	LaunchTime                 time.Time
	Spot                       *Spot
	RebalanceNotice            time.Time
	Events                     []Event
	TargetLifecycleState       string // autoscaling/target-lifecycle-state; "" for none
	State                      State
	Addresses                  []netip.Addr
}

// Derive fills every empty field with the value EC2 would show for such an
// instance, computed from the instance id so that it is stable across restarts.
func (in *Instance) Derive() {
	h := func(purpose string, n int) string {
		s := sha256.Sum256([]byte(in.ID + "/" + purpose))
		return hex.EncodeToString(s[:])[:n]
	}
	in.Region = RegionOf(in.AvailabilityZone, in.Region)
	if in.AvailabilityZone == "" {
		in.AvailabilityZone = in.Region + "a"
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&in.AccountID, "123456789012")
	def(&in.AMIID, "ami-"+h("ami", 17))
	def(&in.InstanceType, "t3.micro")
	def(&in.Architecture, archOf(in.InstanceType))
	def(&in.LocalIPv4, in.derivedIPv4(h("ip", 4)))
	def(&in.MAC, "0e:"+strings.Join(pairs(h("mac", 10)), ":"))
	in.MAC = strings.ToLower(in.MAC)
	def(&in.Hostname, privateDNS(in.LocalIPv4, in.Region))
	if in.PublicIPv4 != "" {
		def(&in.PublicHostname, publicDNS(in.PublicIPv4, in.Region))
	}
	def(&in.ReservationID, "r-"+h("reservation", 17))
	def(&in.InterfaceID, "eni-"+h("eni", 17))
	def(&in.SubnetID, "subnet-"+h("subnet", 17))
	def(&in.VPCID, "vpc-"+h("vpc", 17))
	if a, err := netip.ParseAddr(in.LocalIPv4); err == nil && a.Is4() {
		def(&in.SubnetCIDR, netip.PrefixFrom(a, 24).Masked().String())
		def(&in.VPCCIDR, netip.PrefixFrom(a, 16).Masked().String())
	}
	if len(in.SecurityGroups) == 0 {
		in.SecurityGroups = []string{"default"}
	}
	if len(in.SecurityGroupIDs) == 0 {
		for _, g := range in.SecurityGroups {
			in.SecurityGroupIDs = append(in.SecurityGroupIDs, "sg-"+h("sg/"+g, 17))
		}
	}
	if in.Role != "" {
		def(&in.InstanceProfileName, in.Role)
		def(&in.InstanceProfileID, "AIPA"+strings.ToUpper(h("profile/"+in.InstanceProfileName, 17)))
	}
	if in.LifeCycle == "" {
		in.LifeCycle = "on-demand"
		if in.Spot != nil {
			in.LifeCycle = "spot"
		}
	}
	for i := range in.Events {
		e := &in.Events[i]
		if e.EventID == "" {
			e.EventID = DerivedEventID(in.ID, i)
		}
		if e.NotAfter.IsZero() && !e.NotBefore.IsZero() {
			e.NotAfter = e.NotBefore.Add(DefaultEventWindow)
		}
	}
	if in.Options.HopLimit == 0 {
		in.Options.HopLimit = 1
	}
}

// RegionOf is the region an instance is in: region if set, else the one of its
// availability zone, else us-east-1.
func RegionOf(availabilityZone, region string) string {
	if region != "" {
		return region
	}
	if r, ok := ec2id.RegionOfZone(availabilityZone); ok {
		return r
	}
	return "us-east-1"
}

// derivedIPv4 is the first private IPv4 the instance is known by, else an
// address in 10.0.0.0/16 made from hex.
func (in *Instance) derivedIPv4(hex4 string) string {
	for _, a := range in.Addresses {
		if a.Is4() && a.IsPrivate() {
			return a.String()
		}
	}
	var b [2]byte
	fmt.Sscanf(hex4, "%02x%02x", &b[0], &b[1])
	if b[1] < 4 {
		b[1] += 4 // skip the addresses AWS reserves in each subnet
	}
	return fmt.Sprintf("10.0.%d.%d", b[0], b[1])
}

func pairs(s string) []string {
	var out []string
	for i := 0; i+1 < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return out
}

// archOf guesses the architecture from the instance type: Graviton families
// carry a "g" after the generation digit (t4g, m6gd, c7gn).
func archOf(instanceType string) string {
	family, _, _ := strings.Cut(instanceType, ".")
	i := strings.IndexAny(family, "0123456789")
	if i >= 0 && strings.Contains(family[i+1:], "g") {
		return "arm64"
	}
	return "x86_64"
}

// Partition returns the AWS partition and DNS suffix of a region.
func Partition(region string) (partition, domain string) {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn", "amazonaws.com.cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov", "amazonaws.com"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso", "c2s.ic.gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b", "sc2s.sgov.gov"
	}
	return "aws", "amazonaws.com"
}

func privateDNS(ip, region string) string {
	name := "ip-" + strings.ReplaceAll(ip, ".", "-")
	if region == "us-east-1" {
		return name + ".ec2.internal"
	}
	return name + "." + region + ".compute.internal"
}

func publicDNS(ip, region string) string {
	_, domain := Partition(region)
	name := "ec2-" + strings.ReplaceAll(ip, ".", "-")
	if region == "us-east-1" {
		return name + ".compute-1." + domain
	}
	return name + "." + region + ".compute." + domain
}

// DerivedEventID is the id of an instance's i-th maintenance event when its
// record names none: stable across restarts and replicas.
func DerivedEventID(instanceID string, i int) string {
	s := sha256.Sum256([]byte(instanceID + "/" + fmt.Sprintf("event/%d", i)))
	return "instance-event-" + hex.EncodeToString(s[:])[:17]
}

// DefaultEventWindow is the length of a maintenance window whose end is not
// given.
const DefaultEventWindow = 2 * time.Hour
