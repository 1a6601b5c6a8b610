package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imds/imds/internal/testenv"
)

// topology is three network namespaces made for one test:
//
//	srv 198.18.1.1 ── 198.18.1.2 rtr 198.18.2.1 ── 198.18.2.2 cli
//
// imds runs in srv. rtr routes between the two links and is itself a
// caller on the server's link (no hop); cli is one routed hop away, like a
// container behind a bridge. Nothing is added to the host's namespace.
type topology struct {
	srv, rtr, cli string // namespace names
}

const (
	srvAddr = "198.18.1.1"
	rtrAddr = "198.18.1.2"
	cliAddr = "198.18.2.2"
)

func newTopology(t *testing.T) *topology {
	t.Helper()
	need(t, os.Geteuid() == 0, "network namespaces need root")
	testenv.Command(t, "ip")

	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	tp := &topology{srv: "imds-e2e-srv-" + id, rtr: "imds-e2e-rtr-" + id, cli: "imds-e2e-cli-" + id}
	for _, ns := range []string{tp.srv, tp.rtr, tp.cli} {
		ip(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	// veth names are limited to 15 bytes and live inside the namespaces.
	ip(t, "-n", tp.srv, "link", "add", "s0", "type", "veth", "peer", "name", "r0", "netns", tp.rtr)
	ip(t, "-n", tp.rtr, "link", "add", "r1", "type", "veth", "peer", "name", "c0", "netns", tp.cli)
	for _, c := range []struct{ ns, dev, addr, via string }{
		{tp.srv, "s0", srvAddr + "/24", rtrAddr},
		{tp.rtr, "r0", rtrAddr + "/24", ""},
		{tp.rtr, "r1", "198.18.2.1/24", ""},
		{tp.cli, "c0", cliAddr + "/24", "198.18.2.1"},
	} {
		ip(t, "-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		ip(t, "-n", c.ns, "link", "set", c.dev, "up")
		if c.via != "" {
			ip(t, "-n", c.ns, "route", "add", "default", "via", c.via)
		}
	}
	ip(t, "netns", "exec", tp.rtr, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	return tp
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// dialIn dials from inside the network namespace ns. The socket is made on
// a thread moved into ns; that thread is never used again (the goroutine
// exits locked, so the runtime discards it).
func dialIn(ns string) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			f, err := os.Open("/var/run/netns/" + ns)
			if err != nil {
				ch <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// hopConfig has one instance for rtr (on the server's link) and one for
// cli (one routed hop away), both with the given tokens and hop limit.
func hopConfig(tokens string, hops int) string {
	inst := func(id, addr, mac string) string {
		return fmt.Sprintf(`  - instance-id: %s
    addresses: [%s]
    account-id: "123456789012"
    ami-id: ami-0123456789abcdef0
    instance-type: t3.micro
    availability-zone: us-east-1a
    local-ipv4: %s
    mac: %s
    metadata-options:
      http-tokens: %s
      http-put-response-hop-limit: %d
`, id, addr, addr, mac, tokens, hops)
	}
	return "instances:\n" +
		inst("i-0000000000000aaaa", rtrAddr, "0e:00:00:00:aa:aa") +
		inst("i-0000000000000cccc", cliAddr, "0e:00:00:00:cc:cc")
}

// The IP TTL of the token PUT response is the hop limit: with a limit of 1
// a caller one routed hop away (a container behind a bridge) never gets its
// token, while a caller on the server's own link does. With tokens optional
// the SDK then falls back to IMDSv1; with tokens required it gets nothing.
func TestHopLimit(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	listen := net.JoinHostPort(srvAddr, "0")

	for _, tc := range []struct {
		tokens   string
		hops     int
		ns       string
		fallback bool
		wantOK   bool
		wantV2   bool // the metadata came with a token
	}{
		{"required", 1, tp.rtr, false, true, true},
		{"required", 1, tp.cli, false, false, false},
		{"required", 1, tp.cli, true, false, false},
		{"required", 2, tp.cli, false, true, true},
		{"optional", 1, tp.cli, true, true, false},
		{"optional", 2, tp.cli, true, true, true},
	} {
		name := fmt.Sprintf("tokens=%s/hops=%d/from=%s/fallback=%v", tc.tokens, tc.hops, strings.Split(tc.ns, "-")[2], tc.fallback)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := startServerIn(t, tp.srv, dialIn(tp.rtr), hopConfig(tc.tokens, tc.hops), "--listen", listen)
			rec := newRecorderDial(dialIn(tc.ns), time.Second)
			c := newIMDSClient(s, rec, tc.fallback)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			got, err := getMetadata(ctx, c, "instance-id")
			if tc.wantOK != (err == nil) {
				t.Fatalf("GetMetadata(instance-id) = %q, %v; want success %v\nrequests: %+v", got, err, tc.wantOK, rec.sent())
			}
			if !tc.wantOK {
				return
			}
			var v2 bool
			for _, r := range rec.sent() {
				if r.Method == http.MethodGet && r.Status == http.StatusOK {
					v2 = r.Token
				}
			}
			if v2 != tc.wantV2 {
				t.Errorf("metadata fetched with a token: %v, want %v\nrequests: %+v", v2, tc.wantV2, rec.sent())
			}
		})
	}
}
