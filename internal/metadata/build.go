package metadata

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Versions are the API versions listed at "/" and accepted as path prefixes,
// oldest first; "latest" is always last.
var Versions = []string{
	"1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
	"2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12",
	"2014-02-25", "2014-11-05", "2015-10-20", "2016-04-19", "2016-06-30", "2016-09-02",
	"2018-03-28", "2018-08-17", "2018-09-24", "2019-10-01", "2020-10-27", "2021-01-03",
	"2021-03-23", "2021-07-15", "2022-09-24", "latest",
}

// Tree is an instance's metadata below a version prefix: "dynamic",
// "meta-data" and "user-data".
type Tree struct {
	Root *Node
	// LastModified is when the metadata was generated, for the Last-Modified header.
	LastModified time.Time
}

// SignFunc signs an identity document: the bodies of
// dynamic/instance-identity/pkcs7, signature and rsa2048.
type SignFunc func(document []byte) (pkcs7, signature, rsa2048 []byte, err error)

// Sources render what is not fixed at build time. Nil fields leave their
// leaves out.
type Sources struct {
	// Credentials renders iam/security-credentials/ROLE (instances with a role).
	Credentials DynamicFunc
	// ExtendedCredentials renders iam/security-credentials-extended/ROLE.
	ExtendedCredentials DynamicFunc
	// IdentityCredentials renders
	// identity-credentials/ec2/security-credentials/ec2-instance.
	IdentityCredentials DynamicFunc
	// Sign signs the identity document, once, on the first request for a
	// signature: signing is too slow to do for a whole fleet up front.
	Sign SignFunc
}

// Build makes the tree of an instance. now stamps LastUpdated fields and
// Last-Modified.
func Build(in *Instance, src Sources, now time.Time) *Tree {
	b := newBuilder()
	b.bareNames[b.root] = true
	md := func(path, value string) { b.text("meta-data/"+path, value) }

	md("ami-id", in.AMIID)
	md("ami-launch-index", strconv.Itoa(in.AMILaunchIndex))
	md("ami-manifest-path", "(unknown)")
	if in.TargetLifecycleState != "" {
		md("autoscaling/target-lifecycle-state", in.TargetLifecycleState)
	}
	md("block-device-mapping/ami", "/dev/xvda")
	md("block-device-mapping/root", "/dev/xvda")

	var scheduled, history []Event
	for _, e := range in.Events {
		switch e.State {
		case "canceled":
			e.Description = "[Canceled] " + e.Description
			history = append(history, e)
		case "completed":
			e.Description = "[Completed] " + e.Description
			history = append(history, e)
		default:
			e.State = "active"
			scheduled = append(scheduled, e)
		}
	}
	b.bytes("meta-data/events/maintenance/scheduled", eventsJSON(scheduled), "")
	b.bytes("meta-data/events/maintenance/history", eventsJSON(history), "")
	if !in.RebalanceNotice.IsZero() {
		md("events/recommendations/rebalance", `{"noticeTime": "`+ts(in.RebalanceNotice)+`"}`)
	}

	md("hostname", in.Hostname)
	md("local-hostname", in.Hostname)
	if in.Role != "" {
		partition, _ := Partition(in.Region)
		b.bytes("meta-data/iam/info", PrettyJSON(
			Field{"Code", "Success"},
			Field{"LastUpdated", ts(now)},
			Field{"InstanceProfileArn", fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", partition, in.AccountID, in.InstanceProfileName)},
			Field{"InstanceProfileId", in.InstanceProfileID},
		), "")
		b.dir("meta-data/iam/security-credentials").redirectNoSlash = true
		if src.Credentials != nil {
			b.dynamic("meta-data/iam/security-credentials/"+in.Role, src.Credentials)
		}
		if src.ExtendedCredentials != nil {
			b.dynamic("meta-data/iam/security-credentials-extended/"+in.Role, src.ExtendedCredentials)
		}
	}
	b.bytes("meta-data/identity-credentials/ec2/info", PrettyJSON(
		Field{"Code", "Success"},
		Field{"LastUpdated", ts(now)},
		Field{"AccountId", in.AccountID},
	), "")
	if src.IdentityCredentials != nil {
		b.dynamic("meta-data/identity-credentials/ec2/security-credentials/ec2-instance", src.IdentityCredentials)
	}
	md("instance-action", "none")
	md("instance-id", in.ID)
	md("instance-life-cycle", in.LifeCycle)
	md("instance-type", in.InstanceType)
	if in.IPv6 != "" {
		md("ipv6", in.IPv6)
	}
	md("local-ipv4", in.LocalIPv4)
	md("mac", in.MAC)

	nic := "network/interfaces/macs/" + in.MAC + "/"
	md(nic+"device-number", "0")
	md(nic+"interface-id", in.InterfaceID)
	md(nic+"local-hostname", in.Hostname)
	md(nic+"local-ipv4s", in.LocalIPv4)
	md(nic+"mac", in.MAC)
	md(nic+"owner-id", in.AccountID)
	md(nic+"security-group-ids", strings.Join(in.SecurityGroupIDs, "\n"))
	md(nic+"security-groups", strings.Join(in.SecurityGroups, "\n"))
	md(nic+"subnet-id", in.SubnetID)
	md(nic+"vpc-id", in.VPCID)
	if in.SubnetCIDR != "" {
		md(nic+"subnet-ipv4-cidr-block", in.SubnetCIDR)
	}
	if in.VPCCIDR != "" {
		md(nic+"vpc-ipv4-cidr-block", in.VPCCIDR)
		md(nic+"vpc-ipv4-cidr-blocks", in.VPCCIDR)
	}
	if in.IPv6 != "" {
		md(nic+"ipv6s", in.IPv6)
	}
	if in.PublicIPv4 != "" {
		md(nic+"public-ipv4s", in.PublicIPv4)
		md(nic+"ipv4-associations/"+in.PublicIPv4, in.LocalIPv4)
		if in.PublicHostname != "" {
			md(nic+"public-hostname", in.PublicHostname)
		}
	}

	md("placement/availability-zone", in.AvailabilityZone)
	if in.AvailabilityZoneID != "" {
		md("placement/availability-zone-id", in.AvailabilityZoneID)
	}
	md("placement/region", in.Region)
	md("profile", "default-hvm")
	if in.PublicIPv4 != "" {
		md("public-ipv4", in.PublicIPv4)
		if in.PublicHostname != "" {
			md("public-hostname", in.PublicHostname)
		}
	}
	if len(in.PublicKeys) > 0 {
		keys := b.dir("meta-data/public-keys")
		var listing []string
		for i, k := range in.PublicKeys {
			md(fmt.Sprintf("public-keys/%d/openssh-key", i), k.Value)
			listing = append(listing, fmt.Sprintf("%d=%s", i, k.Key))
		}
		b.listings[keys] = []byte(strings.Join(listing, "\n"))
	}
	md("reservation-id", in.ReservationID)
	md("security-groups", strings.Join(in.SecurityGroups, "\n"))
	partition, domain := Partition(in.Region)
	md("services/domain", domain)
	md("services/partition", partition)
	if s := in.Spot; s != nil {
		md("spot/instance-action", fmt.Sprintf(`{"action": "%s", "time": "%s"}`, s.Action, ts(s.Time)))
		if s.Action == "terminate" {
			md("spot/termination-time", ts(s.Time))
		}
	}
	md("system", "nitro")
	if in.Options.TagsEnabled {
		b.dir("meta-data/tags/instance")
		for _, t := range in.Tags {
			md("tags/instance/"+t.Key, t.Value)
		}
	}

	b.text("dynamic/fws/instance-monitoring", "disabled")
	doc := in.IdentityDocument()
	b.bytes("dynamic/instance-identity/document", doc, "")
	if src.Sign != nil {
		sig := lazySignatures(doc, src.Sign)
		b.dynamic("dynamic/instance-identity/pkcs7", sig(0))
		b.dynamic("dynamic/instance-identity/signature", sig(1))
		b.dynamic("dynamic/instance-identity/rsa2048", sig(2))
	}
	if in.UserData != nil {
		b.bytes("user-data", in.UserData, "application/octet-stream")
	}
	return &Tree{Root: b.build(), LastModified: now}
}

// lazySignatures signs doc on the first request for any of its signatures and
// serves the results from then on.
func lazySignatures(doc []byte, sign SignFunc) func(i int) DynamicFunc {
	var (
		once sync.Once
		out  [3][]byte
		ok   bool
	)
	return func(i int) DynamicFunc {
		return func(Request) ([]byte, bool) {
			once.Do(func() {
				p, s, r, err := sign(doc)
				out, ok = [3][]byte{p, s, r}, err == nil
			})
			return out[i], ok
		}
	}
}
