package netns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// Capture is a tcpdump running on one interface of a namespace. It writes
// the packets to its stdout, where the test reads them as they come.
type Capture struct {
	proc *Process
}

// StartCapture starts tcpdump on iface with the pcap filter expression and
// returns once tcpdump is capturing. Call Require(t, "tcpdump") first.
func (ns *Namespace) StartCapture(t testing.TB, iface, filter string) *Capture {
	t.Helper()
	// --immediate-mode hands every packet to tcpdump at once and -U writes it
	// at once; -Z root keeps tcpdump from switching to another user; a short
	// snapshot length keeps the headers, which is all a test reads.
	p := ns.Start(t, "tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-Z", "root",
		"-s", "256", "-w", "-", filter)
	p.WaitStderr(t, "listening on", 1, 10*time.Second)
	return &Capture{proc: p}
}

// Packets returns the packets captured so far.
func (c *Capture) Packets(t testing.TB) []Packet {
	t.Helper()
	pkts, err := parsePcap([]byte(c.proc.Stdout()), true)
	if err != nil {
		t.Fatalf("tcpdump output: %v", err)
	}
	return pkts
}

// WaitFor waits until a packet for which match returns true has been
// captured, and reports whether one was within timeout. Packets on one
// interface are captured in order, so waiting for the last packet a test
// expects makes sure that every earlier one is there too.
func (c *Capture) WaitFor(t testing.TB, match func(Packet) bool, timeout time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		changed := c.proc.stdout.next()
		if slices.ContainsFunc(c.Packets(t), match) {
			return true
		}
		select {
		case <-changed:
		case <-c.proc.done:
			return slices.ContainsFunc(c.Packets(t), match)
		case <-ctx.Done():
			return false
		}
	}
}

// Stop stops tcpdump and returns every packet it captured, in order.
func (c *Capture) Stop(t testing.TB) []Packet {
	t.Helper()
	if err := c.proc.Stop(); err != nil {
		t.Fatalf("tcpdump: %v; stderr:\n%s", err, c.proc.Stderr())
	}
	pkts, err := parsePcap([]byte(c.proc.Stdout()), false)
	if err != nil {
		t.Fatalf("tcpdump output: %v", err)
	}
	return pkts
}

// Packet is one captured TCP segment over IPv4 or IPv6.
type Packet struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	// TTL is the IPv4 time to live or the IPv6 hop limit.
	TTL int
	// Flags are the TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
	Flags uint8
	// Payload is the length of the TCP payload on the wire, even if the
	// capture kept less of it.
	Payload int
}

// TCP flag bits of Packet.Flags.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
)

func (p Packet) String() string {
	return fmt.Sprintf("%s > %s ttl %d flags %#02x len %d", p.Src, p.Dst, p.TTL, p.Flags, p.Payload)
}

// Link-layer header types of a pcap file (www.tcpdump.org/linktypes.html).
const (
	linkEthernet  = 1
	linkRaw       = 101
	linkLinuxSLL  = 113
	linkLinuxSLL2 = 276
)

// ErrPcap marks a capture file that ParsePcap cannot read.
var ErrPcap = errors.New("not a readable pcap file")

// ParsePcap reads a classic pcap file (as `tcpdump -w` writes) and returns its
// TCP segments over IPv4 and IPv6. Other packets are skipped.
func ParsePcap(data []byte) ([]Packet, error) { return parsePcap(data, false) }

// parsePcap is ParsePcap; with partial, it also reads a file still being
// written, ignoring an incomplete last record.
func parsePcap(data []byte, partial bool) ([]Packet, error) {
	if partial && len(data) < 24 {
		return nil, nil
	}
	if len(data) < 24 {
		return nil, fmt.Errorf("%w: %d bytes", ErrPcap, len(data))
	}
	var order binary.ByteOrder
	var nanos bool
	switch m := binary.LittleEndian.Uint32(data); m {
	case 0xa1b2c3d4:
		order = binary.LittleEndian
	case 0xa1b23c4d:
		order, nanos = binary.LittleEndian, true
	case 0xd4c3b2a1:
		order = binary.BigEndian
	case 0x4d3cb2a1:
		order, nanos = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("%w: magic %#08x", ErrPcap, m)
	}
	link := order.Uint32(data[20:]) & 0xffff
	var pkts []Packet
	for rest := data[24:]; len(rest) > 0; {
		if len(rest) < 16 || uint64(len(rest)-16) < uint64(order.Uint32(rest[8:])) {
			if partial {
				break
			}
			return nil, fmt.Errorf("%w: truncated record", ErrPcap)
		}
		sec, frac, n := order.Uint32(rest), order.Uint32(rest[4:]), order.Uint32(rest[8:])
		frame := rest[16 : 16+n]
		rest = rest[16+n:]
		if !nanos {
			frac *= 1000
		}
		p, ok, err := parseFrame(link, frame)
		if err != nil {
			return nil, err
		}
		if ok {
			p.Time = time.Unix(int64(sec), int64(frac))
			pkts = append(pkts, p)
		}
	}
	return pkts, nil
}

// parseFrame decodes one link-layer frame; ok is false for anything but TCP
// over IP.
func parseFrame(link uint32, f []byte) (p Packet, ok bool, err error) {
	var ethertype uint16
	switch link {
	case linkEthernet:
		if len(f) < 14 {
			return p, false, nil
		}
		ethertype, f = binary.BigEndian.Uint16(f[12:]), f[14:]
		for ethertype == 0x8100 && len(f) >= 4 { // VLAN tag
			ethertype, f = binary.BigEndian.Uint16(f[2:]), f[4:]
		}
	case linkLinuxSLL:
		if len(f) < 16 {
			return p, false, nil
		}
		ethertype, f = binary.BigEndian.Uint16(f[14:]), f[16:]
	case linkLinuxSLL2:
		if len(f) < 20 {
			return p, false, nil
		}
		ethertype, f = binary.BigEndian.Uint16(f), f[20:]
	case linkRaw:
		if len(f) == 0 {
			return p, false, nil
		}
		ethertype = map[byte]uint16{4: 0x0800, 6: 0x86dd}[f[0]>>4]
	default:
		return p, false, fmt.Errorf("%w: link type %d", ErrPcap, link)
	}

	var src, dst netip.Addr
	var seg []byte // the TCP header and what was captured after it
	var segLen int // the TCP segment's length on the wire
	switch ethertype {
	case 0x0800:
		if len(f) < 20 || f[0]>>4 != 4 || f[9] != 6 {
			return p, false, nil
		}
		ihl := int(f[0]&0x0f) * 4
		if ihl < 20 || len(f) < ihl {
			return p, false, nil
		}
		p.TTL = int(f[8])
		src, dst = netip.AddrFrom4([4]byte(f[12:16])), netip.AddrFrom4([4]byte(f[16:20]))
		seg, segLen = f[ihl:], int(binary.BigEndian.Uint16(f[2:]))-ihl
	case 0x86dd:
		if len(f) < 40 || f[0]>>4 != 6 || f[6] != 6 { // no extension headers
			return p, false, nil
		}
		p.TTL = int(f[7])
		src, dst = netip.AddrFrom16([16]byte(f[8:24])), netip.AddrFrom16([16]byte(f[24:40]))
		seg, segLen = f[40:], int(binary.BigEndian.Uint16(f[4:]))
	default:
		return p, false, nil
	}
	if len(seg) < 20 {
		return p, false, nil
	}
	p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(seg))
	p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(seg[2:]))
	p.Flags = seg[13]
	p.Payload = max(segLen-int(seg[12]>>4)*4, 0)
	return p, true, nil
}
