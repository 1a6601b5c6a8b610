package guard_test

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/guard"
	"github.com/imds/imds/internal/testenv"
)

const netTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:90B9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 184002 2 0000000027e796f2 100 0 0 10 0
   1: 0200A8C0:D431 FEA9FEA9:0050 01 00000000:00000000 00:00000000 00000000  1000        0 77 1 0000000000000000 20 4 30 10 -1
`

const netTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 20 4 30 10 -1
   1: 00EC00FD000000000000000054020000:0050 000000000000000000000000010000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1
`

func TestParseNetTCP(t *testing.T) {
	got, err := guard.ParseNetTCP(strings.NewReader(netTCP))
	if err != nil {
		t.Fatal(err)
	}
	want := []guard.Socket{
		{Local: netip.MustParseAddrPort("127.0.0.1:37049"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: 0x0a, Inode: 184002},
		{Local: netip.MustParseAddrPort("192.168.0.2:54321"), Remote: netip.MustParseAddrPort("169.254.169.254:80"), State: 1, Inode: 77},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got6, err := guard.ParseNetTCP(strings.NewReader(strings.Split(netTCP6, "\n")[0] + "\n" + strings.Split(netTCP6, "\n")[1] + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got6[0].Local != netip.MustParseAddrPort("127.0.0.1:8080") || got6[0].Remote != netip.MustParseAddrPort("127.0.0.2:40960") {
		t.Errorf("v4-mapped row: %+v, want 127.0.0.1:8080 <- 127.0.0.2:40960 (unmapped)", got6[0])
	}
	for _, tc := range []struct{ name, in, want string }{
		{"short", "   0: 0100007F:90B9\n", "line 1: 2 fields"},
		{"odd address", "   0: 0100007:90B9 00000000:0000 0A 0:0 0:0 0 0 0 1\n", `local address "0100007:90B9": address: want 8 or 32`},
		{"no port", "   0: 0100007F 00000000:0000 0A 0:0 0:0 0 0 0 1\n", "no colon"},
		{"bad state", "   0: 0100007F:0001 00000000:0000 XYZ 0:0 0:0 0 0 0 1\n", `state "XYZ"`},
		{"bad inode", "   0: 0100007F:0001 00000000:0000 0A 0:0 0:0 0 0 0 -1\n", `inode "-1"`},
		{"bad second line", "   1: 0100007F:0001 0100007F:0002 01 0:0 0:0 0 0 0 1\nbad\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := guard.ParseNetTCP(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

func FuzzParseNetTCP(f *testing.F) {
	f.Add(netTCP)
	f.Add(netTCP6)
	f.Add("   0: 0100007F:0001 00000000:0000 0A 0:0 0:0 0 0 0 1\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		socks, err := guard.ParseNetTCP(strings.NewReader(s))
		if err != nil && socks != nil {
			t.Fatal("sockets and an error")
		}
		for _, k := range socks {
			if !k.Local.IsValid() || !k.Remote.IsValid() || k.Local.Addr().Is4In6() {
				t.Fatalf("invalid or mapped address: %+v", k)
			}
		}
	})
}

// The process behind a real connection in this network namespace is found:
// here, this test binary.
func TestProcfsFindsTheCaller(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		testenv.SkipOrFail(t, "no /proc/net/tcp: not Linux")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	caller := netip.MustParseAddrPort(c.LocalAddr().String())
	srv := netip.MustParseAddrPort(s.LocalAddr().String())
	desc, ok := guard.Procfs{}.Find(caller, srv)
	if !ok {
		t.Fatal("caller not found")
	}
	if want := "pid " + strconv.Itoa(os.Getpid()) + " "; !strings.HasPrefix(desc, want) || !strings.Contains(desc, "guard.test") {
		t.Errorf("description %q, want %q and the command line", desc, want)
	}
	if _, ok := (guard.Procfs{}).Find(netip.MustParseAddrPort("127.0.0.9:1"), srv); ok {
		t.Error("a connection that does not exist was found")
	}
}
