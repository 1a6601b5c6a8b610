package dataplane

import (
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// setHopLimit makes the packets sent on c from now on carry hops as their IPv4
// TTL or IPv6 hop limit. On an IPv6 socket serving an IPv4-mapped peer both
// are set, since the kernel sends IPv4 packets for it.
func setHopLimit(c net.Conn, hops int) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return fmt.Errorf("hop limit: %T is not a TCP connection", c)
	}
	la, _ := tc.LocalAddr().(*net.TCPAddr)
	if la == nil {
		return fmt.Errorf("hop limit: no local address")
	}
	if la.IP.To4() != nil {
		if err := ipv4.NewConn(tc).SetTTL(hops); err != nil {
			return fmt.Errorf("set IP_TTL %d: %w", hops, err)
		}
		if len(la.IP) == net.IPv6len && la.IP.To4() != nil {
			// IPv4-mapped on a dual-stack socket: set the IPv6 option too.
			_ = ipv6.NewConn(tc).SetHopLimit(hops)
		}
		return nil
	}
	if err := ipv6.NewConn(tc).SetHopLimit(hops); err != nil {
		return fmt.Errorf("set IPV6_UNICAST_HOPS %d: %w", hops, err)
	}
	return nil
}
