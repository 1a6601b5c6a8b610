// Package e2e drives the built imds binary with real clients: the AWS SDK
// for Go v2, botocore and the AWS CLI, cloud-init's EC2 datasource, and
// headless Chromium for the web page.
//
// TestMain builds ./cmd/imds once. Each test starts its own `imds serve` on a
// loopback port with its own config and data directory, and stops it when
// the test ends. Tests that need a tool the machine may lack (python
// modules, the AWS CLI, cloud-init) skip when it is missing, except under
// CI=true, where a missing tool fails the test.
package e2e

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/testenv"
)

// imdsBin is the binary under test, built by TestMain.
var imdsBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithImds(m, &imdsBin))
}

// need skips the test when ok is false, or fails it when CI is "true": in CI
// every tool the suite uses must be installed (by .ci/run).
func need(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		testenv.SkipOrFail(t, format, args...)
	}
}

// server is one running `imds serve`.
type server struct {
	*testenv.Proc
	Addr string // host:port of the first listener
	URL  string // http://Addr
}

// Stderr is what the server has logged so far.
func (s *server) Stderr() string { return s.Log() }

// startServer writes config (if not empty) to a file and starts
// `imds serve --listen 127.0.0.1:0 --config FILE --data-dir DIR args...`.
// It returns once the server logged its listener and answers HTTP. The
// server is stopped with SIGTERM when the test ends.
func startServer(t *testing.T, config string, args ...string) *server {
	t.Helper()
	return startServerIn(t, "", nil, config, args...)
}

// dialFunc opens a connection the way net.Dialer.DialContext does.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// startServerIn is startServer inside the network namespace netns (none if
// empty); dial reaches the server to check it is ready (the host's network
// if nil).
func startServerIn(t *testing.T, netns string, dial dialFunc, config string, args ...string) *server {
	t.Helper()
	dir := t.TempDir()
	if config != "" {
		path := filepath.Join(dir, "imds.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	argv := testenv.ServeArgs(filepath.Join(dir, "data"), args...)

	var cmd *exec.Cmd
	if netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", netns, imdsBin}, argv...)...)
	} else {
		cmd = exec.Command(imdsBin, argv...)
	}
	addrs := make(chan string, 8)
	p, err := testenv.Start(cmd, func(line string) {
		if l, ok := testenv.ParseListening(line); ok && !l.Admin && l.Addr != "" {
			select {
			case addrs <- l.Addr:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{Proc: p}
	t.Cleanup(func() { s.stop(t) })

	deadline := time.After(20 * time.Second)
	select {
	case a := <-addrs:
		s.Addr = a
	case <-s.Done():
		t.Fatalf("imds %s exited before listening: %v\nstderr:\n%s", strings.Join(argv, " "), s.Err(), s.Stderr())
	case <-deadline:
		t.Fatalf("imds %s logged no msg=listening line within 20s\nstderr:\n%s", strings.Join(argv, " "), s.Stderr())
	}
	if _, port, err := net.SplitHostPort(s.Addr); err != nil || port == "0" {
		t.Fatalf("msg=listening line has addr=%q, want the bound host:port\nstderr:\n%s", s.Addr, s.Stderr())
	}
	s.URL = "http://" + s.Addr
	s.waitReady(t, dial)
	return s
}

// waitReady polls until the server answers any HTTP request.
func (s *server) waitReady(t *testing.T, dial dialFunc) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	if dial != nil {
		client.Transport = &http.Transport{DialContext: dial, DisableKeepAlives: true}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(s.URL + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds at %s does not answer: %v\nstderr:\n%s", s.URL, err, s.Stderr())
		}
		select {
		case <-s.Done():
			t.Fatalf("imds exited: %v\nstderr:\n%s", s.Err(), s.Stderr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits; it kills the process after 10 s. It logs
// the server's stderr when the test failed.
func (s *server) stop(t *testing.T) {
	s.Stop(t)
	if t.Failed() {
		t.Logf("imds stderr:\n%s", s.Stderr())
	}
}

// runCmd runs a command with env added to a minimal environment and returns
// stdout, stderr and the exit error.
func runCmd(ctx context.Context, env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	return o.String(), e.String(), err
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
