package guard

import (
	"net"
	"net/netip"
	"testing"

	"github.com/imds/imds/internal/testenv"
)

// sock_diag and the /proc tables agree on a real connection's socket, both
// for an IPv4 and an IPv6 socket, and find none for a connection that does
// not exist.
func TestDiagInodeMatchesProc(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			l, err := net.Listen(network, addr)
			if err != nil {
				testenv.SkipOrFail(t, "no %s loopback: %v", network, err)
			}
			defer l.Close()
			c, err := net.Dial(network, l.Addr().String())
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
			guard := netip.MustParseAddrPort(s.LocalAddr().String())
			got, ok := diagInode(caller, guard)
			if !ok {
				t.Fatal("sock_diag could not tell")
			}
			want := Procfs{}.inode(caller, guard)
			if got == 0 || got != want {
				t.Errorf("sock_diag inode %d, /proc/net inode %d", got, want)
			}
			if n, ok := diagInode(netip.AddrPortFrom(caller.Addr(), 1), guard); !ok || n != 0 {
				t.Errorf("a connection that does not exist: inode %d, ok %v; want 0, true", n, ok)
			}
		})
	}
}
