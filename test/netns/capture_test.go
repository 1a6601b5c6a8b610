package netns

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// pcapFile builds a little-endian, microsecond pcap file of Ethernet frames.
func pcapFile(frames ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)            // thiszone, sigfigs
	b = binary.LittleEndian.AppendUint32(b, 256) // snaplen
	b = binary.LittleEndian.AppendUint32(b, linkEthernet)
	for i, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, 1700000000)
		b = binary.LittleEndian.AppendUint32(b, uint32(i))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)+100))
		b = append(b, f...)
	}
	return b
}

// tcpFrame builds an Ethernet frame with a 20-byte TCP header and payload
// bytes after it.
func tcpFrame(src, dst netip.AddrPort, ttl int, flags uint8, payload int) []byte {
	tcp := make([]byte, 20+payload)
	binary.BigEndian.PutUint16(tcp, src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	tcp[12] = 5 << 4
	tcp[13] = flags
	eth := make([]byte, 14)
	var ip []byte
	if src.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[8], ip[9] = byte(ttl), 6
		copy(ip[12:], src.Addr().AsSlice())
		copy(ip[16:], dst.Addr().AsSlice())
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = 6, byte(ttl)
		copy(ip[8:], src.Addr().AsSlice())
		copy(ip[24:], dst.Addr().AsSlice())
	}
	return append(append(eth, ip...), tcp...)
}

func TestParsePcap(t *testing.T) {
	addrs := cmpopts.EquateComparable(netip.AddrPort{})
	v4srv := netip.MustParseAddrPort("169.254.169.254:80")
	v4cli := netip.MustParseAddrPort("10.200.2.3:41001")
	v6srv := netip.MustParseAddrPort("[fd00:ec2::254]:80")
	v6cli := netip.MustParseAddrPort("[fd00:200:2::3]:41002")
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	file := pcapFile(
		tcpFrame(v4srv, v4cli, 64, FlagSYN|FlagACK, 0),
		arp,
		tcpFrame(v4srv, v4cli, 2, FlagPSH|FlagACK, 41),
		tcpFrame(v6srv, v6cli, 1, FlagPSH|FlagACK, 56),
	)
	want := []Packet{
		{Time: time.Unix(1700000000, 0), Src: v4srv, Dst: v4cli, TTL: 64, Flags: FlagSYN | FlagACK},
		{Time: time.Unix(1700000000, 2000), Src: v4srv, Dst: v4cli, TTL: 2, Flags: FlagPSH | FlagACK, Payload: 41},
		{Time: time.Unix(1700000000, 3000), Src: v6srv, Dst: v6cli, TTL: 1, Flags: FlagPSH | FlagACK, Payload: 56},
	}

	got, err := ParsePcap(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, addrs); diff != "" {
		t.Errorf("ParsePcap (-want +got):\n%s", diff)
	}

	t.Run("truncated", func(t *testing.T) {
		cut := file[:len(file)-10]
		if _, err := ParsePcap(cut); !errors.Is(err, ErrPcap) {
			t.Errorf("ParsePcap of a truncated file: got error %v, want ErrPcap", err)
		}
		got, err := parsePcap(cut, true)
		if err != nil {
			t.Fatalf("partial parse: %v", err)
		}
		if diff := cmp.Diff(want[:2], got, addrs); diff != "" {
			t.Errorf("partial parse (-want +got):\n%s", diff)
		}
	})
	t.Run("not pcap", func(t *testing.T) {
		if _, err := ParsePcap(make([]byte, 64)); !errors.Is(err, ErrPcap) {
			t.Errorf("got error %v, want ErrPcap", err)
		}
	})
}
