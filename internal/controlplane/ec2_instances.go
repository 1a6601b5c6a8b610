package controlplane

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

// describeView is the instance as DescribeInstances shows it: the spec with
// every derived field filled in, as the data plane serves it.
func describeView(rec *registry.Instance) *metadata.Instance { return fleet.MetadataInstance(rec) }

// --- XML shapes ---

type describeInstancesResponse struct {
	XMLName xml.Name `xml:"DescribeInstancesResponse"`
	ec2Head
	Reservations struct {
		Items []reservationXML `xml:"item"`
	} `xml:"reservationSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type reservationXML struct {
	ReservationID string   `xml:"reservationId"`
	OwnerID       string   `xml:"ownerId"`
	Groups        struct{} `xml:"groupSet"`
	Instances     struct {
		Items []instanceXML `xml:"item"`
	} `xml:"instancesSet"`
}

type groupXML struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

type tagXML struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type instanceXML struct {
	InstanceID    string `xml:"instanceId"`
	ImageID       string `xml:"imageId"`
	InstanceState struct {
		Code int    `xml:"code"`
		Name string `xml:"name"`
	} `xml:"instanceState"`
	PrivateDNSName string   `xml:"privateDnsName"`
	DNSName        string   `xml:"dnsName"`
	Reason         string   `xml:"reason"`
	AMILaunchIndex int      `xml:"amiLaunchIndex"`
	ProductCodes   struct{} `xml:"productCodes"`
	InstanceType   string   `xml:"instanceType"`
	LaunchTime     string   `xml:"launchTime"`
	Placement      struct {
		AvailabilityZone   string `xml:"availabilityZone"`
		AvailabilityZoneID string `xml:"availabilityZoneId,omitempty"`
		GroupName          string `xml:"groupName"`
		Tenancy            string `xml:"tenancy"`
	} `xml:"placement"`
	Monitoring struct {
		State string `xml:"state"`
	} `xml:"monitoring"`
	SubnetID           string            `xml:"subnetId"`
	VPCID              string            `xml:"vpcId"`
	PrivateIPAddress   string            `xml:"privateIpAddress"`
	IPAddress          string            `xml:"ipAddress,omitempty"`
	SourceDestCheck    bool              `xml:"sourceDestCheck"`
	Groups             []groupXML        `xml:"groupSet>item"`
	Architecture       string            `xml:"architecture"`
	RootDeviceType     string            `xml:"rootDeviceType"`
	RootDeviceName     string            `xml:"rootDeviceName"`
	InstanceLifecycle  string            `xml:"instanceLifecycle,omitempty"`
	VirtualizationType string            `xml:"virtualizationType"`
	Tags               *itemList[tagXML] `xml:"tagSet,omitempty"`
	Hypervisor         string            `xml:"hypervisor"`
	NetworkInterfaces  []nicXML          `xml:"networkInterfaceSet>item"`
	IAMInstanceProfile *struct {
		ARN string `xml:"arn"`
		ID  string `xml:"id"`
	} `xml:"iamInstanceProfile,omitempty"`
	EBSOptimized    bool               `xml:"ebsOptimized"`
	ENASupport      bool               `xml:"enaSupport"`
	MetadataOptions metadataOptionsXML `xml:"metadataOptions"`
	IPv6Address     string             `xml:"ipv6Address,omitempty"`
	StateReason     *stateReasonXML    `xml:"stateReason,omitempty"`
}

type stateReasonXML struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

// itemList is an EC2 list: <fooSet><item>...</item></fooSet>.
type itemList[T any] struct {
	Items []T `xml:"item"`
}

type ipv6XML struct {
	IPv6Address string `xml:"ipv6Address"`
}

type nicXML struct {
	NetworkInterfaceID string     `xml:"networkInterfaceId"`
	SubnetID           string     `xml:"subnetId"`
	VPCID              string     `xml:"vpcId"`
	OwnerID            string     `xml:"ownerId"`
	Status             string     `xml:"status"`
	MACAddress         string     `xml:"macAddress"`
	PrivateIPAddress   string     `xml:"privateIpAddress"`
	PrivateDNSName     string     `xml:"privateDnsName"`
	SourceDestCheck    bool       `xml:"sourceDestCheck"`
	Groups             []groupXML `xml:"groupSet>item"`
	Association        *struct {
		PublicIP      string `xml:"publicIp"`
		PublicDNSName string `xml:"publicDnsName"`
		IPOwnerID     string `xml:"ipOwnerId"`
	} `xml:"association,omitempty"`
	IPv6Addresses *itemList[ipv6XML] `xml:"ipv6AddressesSet,omitempty"`
}

func instanceToXML(rec *registry.Instance, in *metadata.Instance) instanceXML {
	x := instanceXML{
		InstanceID:         in.ID,
		ImageID:            in.AMIID,
		PrivateDNSName:     in.Hostname,
		DNSName:            in.PublicHostname,
		AMILaunchIndex:     in.AMILaunchIndex,
		InstanceType:       in.InstanceType,
		LaunchTime:         in.LaunchTime.UTC().Format("2006-01-02T15:04:05.000Z"),
		SubnetID:           in.SubnetID,
		VPCID:              in.VPCID,
		PrivateIPAddress:   in.LocalIPv4,
		IPAddress:          in.PublicIPv4,
		SourceDestCheck:    true,
		Architecture:       in.Architecture,
		RootDeviceType:     "ebs",
		RootDeviceName:     "/dev/xvda",
		VirtualizationType: "hvm",
		Hypervisor:         "nitro",
		ENASupport:         true,
		MetadataOptions:    optionsXML(rec.Options, "applied"),
		IPv6Address:        in.IPv6,
	}
	x.InstanceState.Code, x.InstanceState.Name = rec.State.Code(), rec.State.Name()
	if rec.StateReason != "" {
		x.StateReason = &stateReasonXML{rec.StateReason, events.StateMessage(rec.StateReason)}
		if rec.State.Gone() {
			x.Reason = events.StateMessage(rec.StateReason)
		}
	}
	x.Placement.AvailabilityZone = in.AvailabilityZone
	x.Placement.AvailabilityZoneID = in.AvailabilityZoneID
	x.Placement.Tenancy = "default"
	x.Monitoring.State = "disabled"
	if in.LifeCycle != "on-demand" {
		x.InstanceLifecycle = in.LifeCycle
	}
	for i, name := range in.SecurityGroups {
		g := groupXML{GroupName: name}
		if i < len(in.SecurityGroupIDs) {
			g.GroupID = in.SecurityGroupIDs[i]
		}
		x.Groups = append(x.Groups, g)
	}
	if len(in.Tags) > 0 {
		x.Tags = &itemList[tagXML]{}
		for _, t := range in.Tags {
			x.Tags.Items = append(x.Tags.Items, tagXML{t.Key, t.Value})
		}
	}
	if in.Role != "" {
		partition, _ := metadata.Partition(in.Region)
		x.IAMInstanceProfile = &struct {
			ARN string `xml:"arn"`
			ID  string `xml:"id"`
		}{fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", partition, in.AccountID, in.InstanceProfileName), in.InstanceProfileID}
	}
	nic := nicXML{
		NetworkInterfaceID: in.InterfaceID,
		SubnetID:           in.SubnetID,
		VPCID:              in.VPCID,
		OwnerID:            in.AccountID,
		Status:             "in-use",
		MACAddress:         in.MAC,
		PrivateIPAddress:   in.LocalIPv4,
		PrivateDNSName:     in.Hostname,
		SourceDestCheck:    true,
		Groups:             x.Groups,
	}
	if in.PublicIPv4 != "" {
		nic.Association = &struct {
			PublicIP      string `xml:"publicIp"`
			PublicDNSName string `xml:"publicDnsName"`
			IPOwnerID     string `xml:"ipOwnerId"`
		}{in.PublicIPv4, in.PublicHostname, "amazon"}
	}
	if in.IPv6 != "" {
		nic.IPv6Addresses = &itemList[ipv6XML]{Items: []ipv6XML{{in.IPv6}}}
	}
	x.NetworkInterfaces = []nicXML{nic}
	return x
}

// --- filters ---

// filterValues returns what a DescribeInstances filter compares against for
// an instance, and false for a filter imds does not know.
func filterValues(name string, rec *registry.Instance, in *metadata.Instance) ([]string, bool) {
	o := rec.Options
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	if key, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, ok := rec.Spec.Tags.Get(key); ok {
			return []string{v}, true
		}
		return nil, true
	}
	switch name {
	case "instance-id":
		return one(in.ID), true
	case "image-id":
		return one(in.AMIID), true
	case "instance-type":
		return one(in.InstanceType), true
	case "architecture":
		return one(in.Architecture), true
	case "availability-zone":
		return one(in.AvailabilityZone), true
	case "reservation-id":
		return one(in.ReservationID), true
	case "owner-id":
		return one(in.AccountID), true
	case "subnet-id":
		return one(in.SubnetID), true
	case "vpc-id":
		return one(in.VPCID), true
	case "private-ip-address":
		return one(in.LocalIPv4), true
	case "ip-address":
		return one(in.PublicIPv4), true
	case "private-dns-name":
		return one(in.Hostname), true
	case "dns-name":
		return one(in.PublicHostname), true
	case "network-interface.mac-address":
		return one(in.MAC), true
	case "instance-state-name":
		return []string{rec.State.Name()}, true
	case "instance-state-code":
		return []string{strconv.Itoa(rec.State.Code())}, true
	case "instance-lifecycle":
		if in.LifeCycle == "on-demand" {
			return nil, true
		}
		return one(in.LifeCycle), true
	case "iam-instance-profile.name":
		return one(in.InstanceProfileName), true
	case "tag-key":
		var ks []string
		for _, t := range in.Tags {
			ks = append(ks, t.Key)
		}
		return ks, true
	case "tag-value":
		var vs []string
		for _, t := range in.Tags {
			vs = append(vs, t.Value)
		}
		return vs, true
	case "metadata-options.state":
		return []string{"applied"}, true
	case "metadata-options.http-tokens":
		return one(string(o.HTTPTokens)), true
	case "metadata-options.http-put-response-hop-limit":
		return []string{strconv.Itoa(int(o.HTTPPutResponseHopLimit))}, true
	case "metadata-options.http-endpoint":
		return one(string(o.HTTPEndpoint)), true
	case "metadata-options.http-protocol-ipv4":
		return []string{"enabled"}, true // imds always serves IPv4
	case "metadata-options.http-protocol-ipv6":
		return one(string(o.HTTPProtocolIPv6)), true
	case "metadata-options.instance-metadata-tags":
		return one(string(o.InstanceMetadataTags)), true
	}
	return nil, false
}

// wildcardMatch matches EC2 filter values: * is any run of characters, ? any
// one character, \ escapes the next one.
func wildcardMatch(pattern, s string) bool {
	p, v := []rune(pattern), []rune(s)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for i < len(p) {
			switch p[i] {
			case '*':
				for k := j; k <= len(v); k++ {
					if match(i+1, k) {
						return true
					}
				}
				return false
			case '?':
				if j >= len(v) {
					return false
				}
			case '\\':
				if i+1 < len(p) {
					i++
				}
				fallthrough
			default:
				if j >= len(v) || v[j] != p[i] {
					return false
				}
			}
			i++
			j++
		}
		return j == len(v)
	}
	return match(0, 0)
}

type ec2Filter struct {
	name   string
	values []string
}

func (c *ec2Call) filters() ([]ec2Filter, error) {
	return c.filtersWhere(func(name string) bool {
		_, known := filterValues(name, &registry.Instance{}, &metadata.Instance{})
		return known
	})
}

// filtersWhere reads the Filter.N parameters, allowing the names known
// says it knows.
func (c *ec2Call) filtersWhere(known func(name string) bool) ([]ec2Filter, error) {
	idx, err := c.indices("Filter")
	if err != nil {
		return nil, err
	}
	var out []ec2Filter
	for _, i := range idx {
		name, ok := c.str(fmt.Sprintf("Filter.%d.Name", i))
		if !ok || *name == "" {
			return nil, errMissing(fmt.Sprintf("Filter.%d.Name", i))
		}
		if !known(*name) {
			return nil, errInvalid("The filter '%s' is invalid", *name)
		}
		vals, err := c.list(fmt.Sprintf("Filter.%d.Value", i))
		if err != nil {
			return nil, err
		}
		if len(vals) == 0 {
			return nil, errMissing(fmt.Sprintf("Filter.%d.Value.1", i))
		}
		out = append(out, ec2Filter{*name, vals})
	}
	return out, nil
}

func matches(fs []ec2Filter, rec *registry.Instance, in *metadata.Instance) bool {
	for _, f := range fs {
		have, _ := filterValues(f.name, rec, in)
		if !slices.ContainsFunc(have, func(h string) bool {
			return slices.ContainsFunc(f.values, func(p string) bool { return wildcardMatch(p, h) })
		}) {
			return false
		}
	}
	return true
}

// --- DescribeInstances ---

// describeInstances lists instances by id, grouped in their reservations.
// Unlike EC2 it is not scoped to the region the request was signed for: one
// imds serves a fleet that may span regions, and an operator's CLI has one
// region configured. Filters are ANDed, a filter's values ORed, and values
// may use EC2's * and ? wildcards. Pages (MaxResults, NextToken) follow the
// order of instance ids.
func (h *Handler) describeInstances(ctx context.Context, c *ec2Call) (ec2Response, error) {
	ids, err := c.instanceIDs()
	if err != nil {
		return nil, err
	}
	fs, err := c.filters()
	if err != nil {
		return nil, err
	}
	maxResults, err := c.integer("MaxResults")
	if err != nil {
		return nil, err
	}
	if maxResults != nil {
		if len(ids) > 0 {
			return nil, &ec2Error{http.StatusBadRequest, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults"}
		}
		if *maxResults < 5 || *maxResults > 1000 {
			return nil, errInvalid("Value ( %d ) for parameter maxResults is invalid. Expecting a value from 5 to 1000.", *maxResults)
		}
	}
	after := ""
	if tok, ok := c.str("NextToken"); ok && *tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(*tok)
		if err != nil || checkInstanceID(string(b)) != nil {
			return nil, &ec2Error{http.StatusBadRequest, "InvalidPaginationToken", "The pagination token is not valid."}
		}
		after = string(b)
	}

	all, err := h.o.Registry.Instances(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b *registry.Instance) int { return strings.Compare(a.Spec.InstanceID, b.Spec.InstanceID) })
	if len(ids) > 0 {
		var missing []string
		for _, id := range ids {
			if !slices.ContainsFunc(all, func(in *registry.Instance) bool { return in.Spec.InstanceID == id }) {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return nil, errInstanceNotFound(missing...)
		}
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}

	resp := &describeInstancesResponse{}
	byReservation := map[string]int{}
	n := 0
	for _, rec := range all {
		id := rec.Spec.InstanceID
		if (len(ids) > 0 && !slices.Contains(ids, id)) || id <= after {
			continue
		}
		in := describeView(rec)
		if !matches(fs, rec, in) {
			continue
		}
		if maxResults != nil && n == *maxResults {
			resp.NextToken = base64.RawURLEncoding.EncodeToString([]byte(resp.lastID()))
			break
		}
		n++
		i, ok := byReservation[in.ReservationID]
		if !ok {
			i = len(resp.Reservations.Items)
			byReservation[in.ReservationID] = i
			resp.Reservations.Items = append(resp.Reservations.Items, reservationXML{ReservationID: in.ReservationID, OwnerID: in.AccountID})
		}
		items := &resp.Reservations.Items[i].Instances.Items
		*items = append(*items, instanceToXML(rec, in))
	}
	return resp, nil
}

// lastID is the id of the last instance in the page, the largest one.
func (r *describeInstancesResponse) lastID() string {
	last := ""
	for _, res := range r.Reservations.Items {
		for _, in := range res.Instances.Items {
			last = max(last, in.InstanceID)
		}
	}
	return last
}
