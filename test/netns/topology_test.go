package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The IMDS addresses, on the host namespace's side of its link to the instance.
const (
	imdsV4 = "169.254.169.254"
	imdsV6 = "fd00:ec2::254"
)

// caller is a client's namespace and source addresses.
type caller struct {
	ns     *Namespace
	v4, v6 string
	// routed says the caller is one router hop from the host, so a response
	// reaches it with its TTL decremented once.
	routed bool
}

func (c caller) addr(ipv6 bool) string {
	if ipv6 {
		return c.v6
	}
	return c.v4
}

// topology is the hop-limit test network:
//
//	host ──h0──────────i0── instance ──i1──────────c0── container
//	   10.200.1.1        10.200.1.2  10.200.2.1        10.200.2.2, 10.200.2.3
//	   fd00:200:1::1   fd00:200:1::2  fd00:200:2::1    fd00:200:2::2, fd00:200:2::3
//	   169.254.169.254, fd00:ec2::254 (on h0)
//
// The instance shares one link with the host (no router between them) and
// forwards for the container, as a VM forwards for the containers on its
// bridge: the container is one router hop from the host. The container has
// two addresses of each family, so that two configured instances with
// different hop limits can call from it.
type topology struct {
	host, instance, container *Namespace

	vm         caller // the instance namespace
	containerA caller // the container, first addresses
	containerB caller // the container, second addresses
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	top := &topology{
		host:      New(t, "host"),
		instance:  New(t, "inst"),
		container: New(t, "ctr"),
	}
	h, i, c := top.host, top.instance, top.container

	Link(t, h, "h0", i, "i0")
	h.AddAddr("h0", "10.200.1.1/24")
	h.AddAddr("h0", "fd00:200:1::1/64")
	h.AddAddr("h0", imdsV4+"/32")
	h.AddAddr("h0", imdsV6+"/128")
	i.AddAddr("i0", "10.200.1.2/24")
	i.AddAddr("i0", "fd00:200:1::2/64")

	Link(t, i, "i1", c, "c0")
	i.AddAddr("i1", "10.200.2.1/24")
	i.AddAddr("i1", "fd00:200:2::1/64")
	for _, a := range []string{"10.200.2.2/24", "10.200.2.3/24", "fd00:200:2::2/64", "fd00:200:2::3/64"} {
		c.AddAddr("c0", a)
	}

	h.AddRoute("10.200.2.0/24", "10.200.1.2")
	h.AddRoute("fd00:200:2::/64", "fd00:200:1::2")
	i.AddRoute(imdsV4+"/32", "10.200.1.1")
	i.AddRoute(imdsV6+"/128", "fd00:200:1::1")
	c.AddRoute(imdsV4+"/32", "10.200.2.1")
	c.AddRoute(imdsV6+"/128", "fd00:200:2::1")
	i.EnableForwarding()

	top.vm = caller{ns: i, v4: "10.200.1.2", v6: "fd00:200:1::2"}
	top.containerA = caller{ns: c, v4: "10.200.2.2", v6: "fd00:200:2::2", routed: true}
	top.containerB = caller{ns: c, v4: "10.200.2.3", v6: "fd00:200:2::3", routed: true}
	return top
}

// clientTimeout bounds each request: a response dropped on its way never
// comes, and the client gives up after this long.
const clientTimeout = 2 * time.Second

// curlTimedOut is curl's exit code for "operation timed out".
const curlTimedOut = 28

// response is the outcome of one curl request.
type response struct {
	exit    int // curl's exit code
	status  int // 0 when no response came
	body    string
	stderr  string
	elapsed time.Duration
}

func (r response) String() string {
	return fmt.Sprintf("curl exit %d, status %d, body %q, %v, stderr %q",
		r.exit, r.status, r.body, r.elapsed.Round(time.Millisecond), strings.TrimSpace(r.stderr))
}

// request sends one HTTP request with curl from c's address of the URL's
// family, from local port lport, so that the test can find its packets.
func request(t *testing.T, c caller, ipv6 bool, lport int, method, url string, headers ...string) response {
	t.Helper()
	args := []string{"-sS", "-g", "--max-time", strconv.Itoa(int(clientTimeout / time.Second)),
		"--interface", c.addr(ipv6), "--local-port", strconv.Itoa(lport),
		"-X", method, "-o", "-", "-w", "\n%{http_code}"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	r := c.ns.Run(t, "curl", append(args, url)...)
	resp := response{exit: r.ExitCode, stderr: r.Stderr, elapsed: r.Elapsed}
	i := strings.LastIndexByte(r.Stdout, '\n')
	if i < 0 {
		t.Fatalf("curl %s %s: no status line in %q; stderr %q", method, url, r.Stdout, r.Stderr)
	}
	resp.body = r.Stdout[:i]
	resp.status, _ = strconv.Atoi(r.Stdout[i+1:])
	return resp
}

// hostPort formats an IMDS address and port for a URL or a listener.
func hostPort(ipv6 bool, port int) string {
	if ipv6 {
		return net.JoinHostPort(imdsV6, strconv.Itoa(port))
	}
	return net.JoinHostPort(imdsV4, strconv.Itoa(port))
}

// ports hands out client ports, one per request, so that every connection
// can be told apart in a capture.
type ports struct{ next int }

func (p *ports) take() int { p.next++; return p.next }

// dataTo returns the segments carrying data from server port sport to client
// port cport, and the TTLs of the others (handshake, bare ACKs, FIN).
func dataTo(pkts []Packet, sport, cport uint16) (data []Packet, other []int) {
	for _, p := range pkts {
		if p.Src.Port() != sport || p.Dst.Port() != cport {
			continue
		}
		if p.Payload > 0 {
			data = append(data, p)
		} else {
			other = append(other, p.TTL)
		}
	}
	return data, other
}

// ttlServer is a Func: an HTTP server that answers "ok" on each ADDR=TTL
// argument, with the IPv4 TTL or IPv6 hop limit of every packet of each
// accepted connection set to TTL. It logs "msg=listening addr=ADDR" to stderr
// per listener, like imds, and serves until it is killed.
func ttlServer(args []string) error {
	errc := make(chan error, len(args))
	for _, a := range args {
		addr, ttlText, ok := strings.Cut(a, "=")
		ttl, err := strconv.Atoi(ttlText)
		if !ok || err != nil {
			return fmt.Errorf("argument %q: want ADDR=TTL", a)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }),
			ReadHeaderTimeout: 5 * time.Second,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if err := setHopLimit(c, ttl); err != nil {
					fmt.Fprintln(os.Stderr, err)
					c.Close()
				}
				return ctx
			},
		}
		fmt.Fprintf(os.Stderr, "msg=listening addr=%s\n", ln.Addr())
		go func() { errc <- srv.Serve(ln) }()
	}
	return <-errc
}

// setHopLimit sets the IPv4 TTL or IPv6 hop limit of c's packets.
func setHopLimit(c net.Conn, n int) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	level, opt := syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS
	if tc.LocalAddr().(*net.TCPAddr).IP.To4() != nil {
		level, opt = syscall.IPPROTO_IP, syscall.IP_TTL
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), level, opt, n) }); err != nil {
		return err
	}
	return serr
}

// TestTopology proves the network of the hop-limit tests without imds: a
// server that sets TTL 1 on its connections reaches the instance (no router
// between them) but not the container (one router hop), and TTL 2 reaches
// both. It also checks that the capture reads the TTLs the server set.
func TestTopology(t *testing.T) {
	Require(t, "tcpdump", "curl")
	top := newTopology(t)

	var listen []string
	for _, ipv6 := range []bool{false, true} {
		listen = append(listen, hostPort(ipv6, 8001)+"=1", hostPort(ipv6, 8002)+"=2")
	}
	srv := top.host.StartFunc(t, "ttl-server", listen...)
	srv.WaitStderr(t, "msg=listening", len(listen), 10*time.Second)
	hostCap := top.host.StartCapture(t, "h0", "tcp src portrange 8001-8002")
	ctrCap := top.container.StartCapture(t, "c0", "tcp src portrange 8001-8002")

	type sent struct {
		name      string
		from      caller
		sport     uint16
		cport     int
		ttl       int
		wantReach bool
	}
	var all []sent
	p := ports{next: 42000}
	for _, ipv6 := range []bool{false, true} {
		family := map[bool]string{false: "ipv4", true: "ipv6"}[ipv6]
		for _, tt := range []struct {
			name      string
			from      caller
			port, ttl int
			wantReach bool
		}{
			{"instance/ttl 1", top.vm, 8001, 1, true},
			{"instance/ttl 2", top.vm, 8002, 2, true},
			{"container/ttl 1", top.containerA, 8001, 1, false},
			{"container/ttl 2", top.containerA, 8002, 2, true},
		} {
			t.Run(family+"/"+tt.name, func(t *testing.T) {
				cport := p.take()
				all = append(all, sent{family + "/" + tt.name, tt.from, uint16(tt.port), cport, tt.ttl, tt.wantReach})
				r := request(t, tt.from, ipv6, cport, "GET", "http://"+hostPort(ipv6, tt.port)+"/")
				t.Logf("%s", r)
				switch {
				case tt.wantReach && (r.exit != 0 || r.status != 200 || r.body != "ok"):
					t.Errorf("got %s, want 200 ok", r)
				case !tt.wantReach && r.exit != curlTimedOut:
					t.Errorf("got %s, want a timeout (curl exit %d)", r, curlTimedOut)
				}
			})
		}
	}

	last := all[len(all)-1]
	isLast := func(p Packet) bool { return p.Dst.Port() == uint16(last.cport) && p.Payload > 0 }
	hostCap.WaitFor(t, isLast, 5*time.Second)
	ctrCap.WaitFor(t, isLast, 5*time.Second)
	hostPkts, ctrPkts := hostCap.Stop(t), ctrCap.Stop(t)

	for _, s := range all {
		t.Run("wire/"+s.name, func(t *testing.T) {
			data, other := dataTo(hostPkts, s.sport, uint16(s.cport))
			if len(data) == 0 {
				t.Fatalf("no data segments from port %d to port %d at the host", s.sport, s.cport)
			}
			for _, p := range data {
				if p.TTL != s.ttl {
					t.Errorf("host sent %v, want ttl %d", p, s.ttl)
				}
			}
			t.Logf("host sent %d data segments with ttl %d; other segments ttl %v", len(data), data[0].TTL, other)
			if !s.from.routed {
				return
			}
			arrived, _ := dataTo(ctrPkts, s.sport, uint16(s.cport))
			if !s.wantReach {
				if len(arrived) > 0 {
					t.Errorf("container received %v, want nothing", arrived[0])
				}
				return
			}
			if len(arrived) == 0 {
				t.Fatalf("container received no data segments")
			}
			for _, p := range arrived {
				if p.TTL != s.ttl-1 {
					t.Errorf("container received %v, want ttl %d", p, s.ttl-1)
				}
			}
		})
	}
}
