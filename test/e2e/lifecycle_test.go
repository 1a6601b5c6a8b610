package e2e

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLog waits until the server's stderr, past its first from bytes,
// contains substr, and returns the stderr length after the match.
func (s *server) waitLog(t *testing.T, from int, substr string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := s.Stderr()
		if i := strings.Index(all[min(from, len(all)):], substr); i >= 0 {
			return len(all)
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds logged no %q within 10s\nstderr:\n%s", substr, all)
		}
		select {
		case <-s.Done():
			t.Fatalf("imds exited: %v\nstderr:\n%s", s.Err(), all)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SIGHUP reloads the config file; a file that does not validate is
// refused and the previous configuration keeps serving.
func TestServeReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	cfg := webConfig(t, webOptions{HTTPTokens: "optional"})
	s := startServer(t, cfg)
	path := configPath(t, s)
	ctx := t.Context()
	c := newIMDSClient(s, newRecorder(""), false)

	check := func(want string) {
		t.Helper()
		got, err := getMetadata(ctx, c, "tags/instance/Name")
		if err != nil {
			t.Fatalf("GetMetadata(tags/instance/Name): %v", err)
		}
		if got != want {
			t.Errorf("tags/instance/Name = %q, want %q", got, want)
		}
	}
	check("web-1")

	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hup := func() int {
		t.Helper()
		n := len(s.Stderr())
		if err := s.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		return n
	}

	write(replaceOnce(t, cfg, "Name: web-1", "Name: web-2"))
	s.waitLog(t, hup(), "reloaded")
	check("web-2")

	write(replaceOnce(t, cfg, "http-put-response-hop-limit: 2", "http-put-response-hop-limit: 65"))
	s.waitLog(t, hup(), "level=ERROR")
	check("web-2")
}

// configPath is the --config file of s.
func configPath(t *testing.T, s *server) string {
	t.Helper()
	for i, a := range s.Args() {
		if a == "--config" && i+1 < len(s.Args()) {
			return s.Args()[i+1]
		}
	}
	t.Fatal("server has no --config")
	return ""
}

// SIGTERM stops the server cleanly: exit status 0, listener closed.
func TestServeExitsCleanlyOnSIGTERM(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("imds still running 10s after SIGTERM")
	}
	if s.Err() != nil {
		t.Errorf("imds exit after SIGTERM: %v, want status 0\nstderr:\n%s", s.Err(), s.Stderr())
	}
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after imds exited", s.Addr)
	}
}

// An IPv6 listener serves an instance identified by its IPv6 address, to
// the SDK's client aimed at an IPv6 endpoint.
func TestServeIPv6(t *testing.T) {
	t.Parallel()
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		need(t, false, "no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	// No default instance: the caller must be known by its IPv6 address.
	cfg := replaceOnce(t, webConfigYAML, "default-instance: i-0a1b2c3d4e5f60718   # optional: serves callers matching no address\n", "")
	cfg = replaceOnce(t, cfg, "addresses: [127.0.0.1]", `addresses: ["::1"]`)
	cfg = replaceOnce(t, cfg, "http-protocol-ipv6: disabled", "http-protocol-ipv6: enabled")
	s := startServer(t, cfg, "--listen", "[::1]:0")
	if !strings.HasPrefix(s.Addr, "[::1]:") {
		t.Fatalf("listening on %s, want [::1]:port", s.Addr)
	}
	c := newIMDSClient(s, newRecorder(""), false)
	got, err := getMetadata(t.Context(), c, "instance-id")
	if err != nil {
		t.Fatalf("GetMetadata(instance-id) over IPv6: %v", err)
	}
	if got != webInstanceID {
		t.Errorf("instance-id = %q, want %q", got, webInstanceID)
	}
}
