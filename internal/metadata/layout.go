package metadata

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// layout is the metadata tree of every instance: which entries exist (for
// which instances) and how each leaf is rendered from its instance.
var layout = newLayout()

func newLayout() *node {
	l := &layoutBuilder{root: &node{dir: true, bare: true}}
	in := func(f func(in *Instance) string) valueFunc {
		return func(t *Tree, _ int, _ Request) ([]byte, bool) { return stringBytes(f(t.in)), true }
	}
	lines := func(f func(in *Instance) []string) valueFunc {
		return in(func(i *Instance) string { return strings.Join(f(i), "\n") })
	}
	fixed := func(s string) valueFunc {
		b := []byte(s)
		return func(*Tree, int, Request) ([]byte, bool) { return b, true }
	}
	render := func(f func(t *Tree) []byte) valueFunc {
		return func(t *Tree, _ int, _ Request) ([]byte, bool) { return f(t), true }
	}
	dynamic := func(f func(s *Sources) DynamicFunc) valueFunc {
		return func(t *Tree, _ int, r Request) ([]byte, bool) { return f(&t.src)(r) }
	}
	has := func(f func(in *Instance) bool) func(t *Tree) bool {
		return func(t *Tree) bool { return f(t.in) }
	}
	one := func(f func(in *Instance) string) (func(*Tree) int, func(*Tree, int) string) {
		return func(*Tree) int { return 1 }, func(t *Tree, _ int) string { return f(t.in) }
	}
	md := "meta-data/"

	l.leaf(md+"ami-id", in(func(i *Instance) string { return i.AMIID }))
	l.leaf(md+"ami-launch-index", in(func(i *Instance) string { return strconv.Itoa(i.AMILaunchIndex) }))
	l.leaf(md+"ami-manifest-path", fixed("(unknown)"))
	l.dir(md + "autoscaling").when = has(func(i *Instance) bool { return i.TargetLifecycleState != "" })
	l.leaf(md+"autoscaling/target-lifecycle-state", in(func(i *Instance) string { return i.TargetLifecycleState }))
	l.leaf(md+"block-device-mapping/ami", fixed("/dev/xvda"))
	l.leaf(md+"block-device-mapping/root", fixed("/dev/xvda"))

	l.leaf(md+"events/maintenance/scheduled", render(func(t *Tree) []byte { s, _ := t.in.maintenance(); return eventsJSON(s) }))
	l.leaf(md+"events/maintenance/history", render(func(t *Tree) []byte { _, h := t.in.maintenance(); return eventsJSON(h) }))
	l.dir(md + "events/recommendations").when = has(func(i *Instance) bool { return !i.RebalanceNotice.IsZero() })
	l.leaf(md+"events/recommendations/rebalance", render(func(t *Tree) []byte {
		return []byte(`{"noticeTime": "` + ts(t.in.RebalanceNotice) + `"}`)
	}))

	l.leaf(md+"hostname", in(func(i *Instance) string { return i.Hostname }))
	l.leaf(md+"local-hostname", in(func(i *Instance) string { return i.Hostname }))

	l.dir(md + "iam").when = has(func(i *Instance) bool { return i.Role != "" })
	l.leaf(md+"iam/info", render(func(t *Tree) []byte {
		partition, _ := Partition(t.in.Region)
		return PrettyJSON(
			Field{"Code", "Success"},
			Field{"LastUpdated", ts(t.LastModified)},
			Field{"InstanceProfileArn", fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", partition, t.in.AccountID, t.in.InstanceProfileName)},
			Field{"InstanceProfileId", t.in.InstanceProfileID},
		)
	}))
	l.dir(md + "iam/security-credentials").redirectNoSlash = true
	role := l.leaf(md+"iam/security-credentials/{role}", dynamic(func(s *Sources) DynamicFunc { return s.Credentials }))
	role.count, role.nameOf = one(func(i *Instance) string { return i.Role })
	role.when = func(t *Tree) bool { return t.src.Credentials != nil }
	l.dir(md + "iam/security-credentials-extended").when = func(t *Tree) bool { return t.src.ExtendedCredentials != nil }
	role = l.leaf(md+"iam/security-credentials-extended/{role}", dynamic(func(s *Sources) DynamicFunc { return s.ExtendedCredentials }))
	role.count, role.nameOf = one(func(i *Instance) string { return i.Role })

	l.leaf(md+"identity-credentials/ec2/info", render(func(t *Tree) []byte {
		return PrettyJSON(
			Field{"Code", "Success"},
			Field{"LastUpdated", ts(t.LastModified)},
			Field{"AccountId", t.in.AccountID},
		)
	}))
	l.dir(md + "identity-credentials/ec2/security-credentials").when = func(t *Tree) bool { return t.src.IdentityCredentials != nil }
	l.leaf(md+"identity-credentials/ec2/security-credentials/ec2-instance", dynamic(func(s *Sources) DynamicFunc { return s.IdentityCredentials }))

	l.leaf(md+"instance-action", fixed("none"))
	l.leaf(md+"instance-id", in(func(i *Instance) string { return i.ID }))
	l.leaf(md+"instance-life-cycle", in(func(i *Instance) string { return i.LifeCycle }))
	l.leaf(md+"instance-type", in(func(i *Instance) string { return i.InstanceType }))
	hasIPv6 := has(func(i *Instance) bool { return i.IPv6 != "" })
	hasPublic := has(func(i *Instance) bool { return i.PublicIPv4 != "" })
	hasPublicName := has(func(i *Instance) bool { return i.PublicIPv4 != "" && i.PublicHostname != "" })
	l.leaf(md+"ipv6", in(func(i *Instance) string { return i.IPv6 })).when = hasIPv6
	l.leaf(md+"local-ipv4", in(func(i *Instance) string { return i.LocalIPv4 }))
	l.leaf(md+"mac", in(func(i *Instance) string { return i.MAC }))

	mac := l.dir(md + "network/interfaces/macs/{mac}")
	mac.count, mac.nameOf = one(func(i *Instance) string { return i.MAC })
	nic := md + "network/interfaces/macs/{mac}/"
	l.leaf(nic+"device-number", fixed("0"))
	l.leaf(nic+"interface-id", in(func(i *Instance) string { return i.InterfaceID }))
	l.leaf(nic+"local-hostname", in(func(i *Instance) string { return i.Hostname }))
	l.leaf(nic+"local-ipv4s", in(func(i *Instance) string { return i.LocalIPv4 }))
	l.leaf(nic+"mac", in(func(i *Instance) string { return i.MAC }))
	l.leaf(nic+"owner-id", in(func(i *Instance) string { return i.AccountID }))
	l.leaf(nic+"security-group-ids", lines(func(i *Instance) []string { return i.SecurityGroupIDs }))
	l.leaf(nic+"security-groups", lines(func(i *Instance) []string { return i.SecurityGroups }))
	l.leaf(nic+"subnet-id", in(func(i *Instance) string { return i.SubnetID }))
	l.leaf(nic+"vpc-id", in(func(i *Instance) string { return i.VPCID }))
	l.leaf(nic+"subnet-ipv4-cidr-block", in(func(i *Instance) string { return i.SubnetCIDR })).when = has(func(i *Instance) bool { return i.SubnetCIDR != "" })
	hasVPCCIDR := has(func(i *Instance) bool { return i.VPCCIDR != "" })
	l.leaf(nic+"vpc-ipv4-cidr-block", in(func(i *Instance) string { return i.VPCCIDR })).when = hasVPCCIDR
	l.leaf(nic+"vpc-ipv4-cidr-blocks", in(func(i *Instance) string { return i.VPCCIDR })).when = hasVPCCIDR
	l.leaf(nic+"ipv6s", in(func(i *Instance) string { return i.IPv6 })).when = hasIPv6
	l.leaf(nic+"public-ipv4s", in(func(i *Instance) string { return i.PublicIPv4 })).when = hasPublic
	l.dir(nic + "ipv4-associations").when = hasPublic
	assoc := l.leaf(nic+"ipv4-associations/{public-ipv4}", in(func(i *Instance) string { return i.LocalIPv4 }))
	assoc.count, assoc.nameOf = one(func(i *Instance) string { return i.PublicIPv4 })
	l.leaf(nic+"public-hostname", in(func(i *Instance) string { return i.PublicHostname })).when = hasPublicName

	l.leaf(md+"placement/availability-zone", in(func(i *Instance) string { return i.AvailabilityZone }))
	l.leaf(md+"placement/availability-zone-id", in(func(i *Instance) string { return i.AvailabilityZoneID })).when = has(func(i *Instance) bool { return i.AvailabilityZoneID != "" })
	l.leaf(md+"placement/region", in(func(i *Instance) string { return i.Region }))
	l.leaf(md+"profile", fixed("default-hvm"))
	l.leaf(md+"public-ipv4", in(func(i *Instance) string { return i.PublicIPv4 })).when = hasPublic
	l.leaf(md+"public-hostname", in(func(i *Instance) string { return i.PublicHostname })).when = hasPublicName

	keys := l.dir(md + "public-keys")
	keys.when = has(func(i *Instance) bool { return len(i.PublicKeys) > 0 })
	keys.list = func(t *Tree) []byte {
		listing := make([]string, len(t.in.PublicKeys))
		for i, k := range t.in.PublicKeys {
			listing[i] = strconv.Itoa(i) + "=" + k.Key
		}
		return []byte(strings.Join(listing, "\n"))
	}
	key := l.dir(md + "public-keys/{index}")
	key.count = func(t *Tree) int { return len(t.in.PublicKeys) }
	key.nameOf = func(_ *Tree, i int) string { return strconv.Itoa(i) }
	l.leaf(md+"public-keys/{index}/openssh-key", func(t *Tree, i int, _ Request) ([]byte, bool) {
		return stringBytes(t.in.PublicKeys[i].Value), true
	})

	l.leaf(md+"reservation-id", in(func(i *Instance) string { return i.ReservationID }))
	l.leaf(md+"security-groups", lines(func(i *Instance) []string { return i.SecurityGroups }))
	l.leaf(md+"services/domain", in(func(i *Instance) string { _, d := Partition(i.Region); return d }))
	l.leaf(md+"services/partition", in(func(i *Instance) string { p, _ := Partition(i.Region); return p }))

	l.dir(md + "spot").when = has(func(i *Instance) bool { return i.Spot != nil })
	l.leaf(md+"spot/instance-action", render(func(t *Tree) []byte {
		s := t.in.Spot
		return []byte(`{"action": "` + s.Action + `", "time": "` + ts(s.Time) + `"}`)
	}))
	l.leaf(md+"spot/termination-time", in(func(i *Instance) string { return ts(i.Spot.Time) })).when = has(func(i *Instance) bool { return i.Spot != nil && i.Spot.Action == "terminate" })
	l.leaf(md+"system", fixed("nitro"))

	l.dir(md + "tags").when = has(func(i *Instance) bool { return i.Options.TagsEnabled })
	tag := l.leaf(md+"tags/instance/{key}", func(t *Tree, i int, _ Request) ([]byte, bool) {
		return stringBytes(t.in.Tags[i].Value), true
	})
	tag.count = func(t *Tree) int { return len(t.in.Tags) }
	tag.nameOf = func(t *Tree, i int) string { return t.in.Tags[i].Key }

	l.leaf("dynamic/fws/instance-monitoring", fixed("disabled"))
	l.leaf("dynamic/instance-identity/document", render(func(t *Tree) []byte { return t.in.IdentityDocument() }))
	for i, name := range []string{"pkcs7", "signature", "rsa2048"} {
		l.leaf("dynamic/instance-identity/"+name, func(t *Tree, _ int, _ Request) ([]byte, bool) {
			return t.sign(i)
		}).when = func(t *Tree) bool { return t.src.Sign != nil }
	}

	ud := l.leaf("user-data", func(t *Tree, _ int, _ Request) ([]byte, bool) { return t.in.UserData, true })
	ud.when = has(func(i *Instance) bool { return i.UserData != nil })
	ud.octet = true
	return l.finish()
}

// maintenance splits the instance's events into the scheduled ones and the
// history, with the description prefixes EC2 gives ended events.
func (in *Instance) maintenance() (scheduled, history []Event) {
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
	return scheduled, history
}

// layoutBuilder assembles the layout from its leaves.
type layoutBuilder struct{ root *node }

// dir returns the directory at path, creating it and its parents. A segment
// in braces is the entry of its directory named by the instance.
func (l *layoutBuilder) dir(path string) *node {
	cur := l.root
	for _, seg := range strings.Split(path, "/") {
		var next *node
		if strings.HasPrefix(seg, "{") {
			if cur.each == nil {
				cur.each = &node{name: seg, dir: true}
			}
			next = cur.each
		} else {
			next = cur.find(seg)
			if next == nil {
				next = &node{name: seg, dir: true}
				cur.children = append(cur.children, next)
			}
		}
		if !next.dir {
			panic("metadata: " + path + " is both a leaf and a directory")
		}
		cur = next
	}
	return cur
}

// leaf adds the leaf at path, rendered by v.
func (l *layoutBuilder) leaf(path string, v valueFunc) *node {
	i := strings.LastIndexByte(path, '/')
	parent := l.root
	if i >= 0 {
		parent = l.dir(path[:i])
	}
	n := &node{name: path[i+1:], value: v}
	switch {
	case strings.HasPrefix(n.name, "{"):
		if parent.each != nil {
			panic("metadata: two entries named by the instance in " + path)
		}
		parent.each = n
	case parent.find(n.name) != nil:
		panic("metadata: duplicate entry " + path)
	default:
		parent.children = append(parent.children, n)
	}
	return n
}

func (n *node) find(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

// finish sorts every directory and makes the listing of those whose entries
// every instance has.
func (l *layoutBuilder) finish() *node {
	var walk func(n *node)
	walk = func(n *node) {
		slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		if len(n.children) > 64 {
			panic("metadata: more entries in " + n.name + " than a listing mask holds")
		}
		varies := n.each != nil || n.list != nil
		for _, c := range n.children {
			varies = varies || c.when != nil
		}
		if !varies {
			n.fixed = n.render(nil)
		}
		for _, c := range append(slices.Clone(n.children), n.each) {
			if c != nil && c.dir {
				walk(c)
			}
		}
	}
	walk(l.root)
	return l.root
}
