// Package e2e drives the built imds binary with real clients: the AWS SDK
// for Go v2, botocore and the AWS CLI, and cloud-init's EC2 datasource.
//
// TestMain builds ./cmd/imds once. Each test starts its own `imds serve` on a
// loopback port with its own config and data directory, and stops it when
// the test ends. Tests that need a tool the machine may lack (python
// modules, the AWS CLI, cloud-init) skip when it is missing, except under
// CI=true, where a missing tool fails the test.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// imdsBin is the binary under test, built by TestMain.
var imdsBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "imds-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	imdsBin = filepath.Join(dir, "imds")
	build := exec.Command("go", "build", "-o", imdsBin, "./cmd/imds")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/imds: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoRoot is the directory holding the module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// need skips the test when ok is false, or fails it when CI is "true": in CI
// every tool the suite uses must be installed (by .ci/run).
func need(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s", msg)
	}
	t.Skip(msg)
}

// needCommand returns the path of a command, through need.
func needCommand(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	need(t, err == nil, "%s is not installed: %v", name, err)
	return p
}

// needPython returns the real executable (not a version manager's shim) of
// the first of the interpreters that can import module, through need.
func needPython(t *testing.T, module string, interpreters ...string) string {
	t.Helper()
	var tried []string
	for _, py := range interpreters {
		p, err := exec.LookPath(py)
		if err != nil {
			tried = append(tried, py+": not found")
			continue
		}
		cmd := exec.CommandContext(t.Context(), p, "-c", "import sys, "+module+"; print(sys.executable)")
		out, err := cmd.CombinedOutput()
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v: %s", p, err, bytes.TrimSpace(out)))
			continue
		}
		if exe := strings.TrimSpace(string(out)); exe != "" {
			return exe
		}
		return p
	}
	need(t, false, "no python can import %s (%s)", module, strings.Join(tried, "; "))
	return ""
}

// server is one running `imds serve`.
type server struct {
	Addr string // host:port of the first listener
	URL  string // http://Addr

	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	err    error         // the process's exit, valid after done
	stderr *lockedBuffer
}

// Stderr is what the server has logged so far.
func (s *server) Stderr() string { return s.stderr.String() }

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
	argv := []string{"serve", "--data-dir", filepath.Join(dir, "data")}
	if !hasFlag(args, "--listen") {
		argv = append(argv, "--listen", "127.0.0.1:0")
	}
	if !hasFlag(args, "--admin-listen") {
		argv = append(argv, "--admin-listen", "127.0.0.1:0")
	}
	if config != "" {
		path := filepath.Join(dir, "imds.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		argv = append(argv, "--config", path)
	}
	argv = append(argv, args...)

	s := &server{done: make(chan struct{}), stderr: &lockedBuffer{}}
	if netns != "" {
		s.cmd = exec.Command("ip", append([]string{"netns", "exec", netns, imdsBin}, argv...)...)
	} else {
		s.cmd = exec.Command(imdsBin, argv...)
	}
	pr, pw := io.Pipe()
	s.cmd.Stderr = pw
	s.cmd.Stdout = pw
	addrs := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.WriteString(line + "\n")
			if strings.Contains(line, "msg=listening") {
				if a, ok := logAttr(line, "addr"); ok {
					select {
					case addrs <- a:
					default:
					}
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", imdsBin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })

	deadline := time.After(20 * time.Second)
	select {
	case a := <-addrs:
		s.Addr = a
	case <-s.done:
		t.Fatalf("imds %s exited before listening: %v\nstderr:\n%s", strings.Join(argv, " "), s.err, s.Stderr())
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
		case <-s.done:
			t.Fatalf("imds exited: %v\nstderr:\n%s", s.err, s.Stderr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits; it kills the process after 10 s.
func (s *server) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("imds did not exit within 10s of SIGTERM\nstderr:\n%s", s.Stderr())
	}
	if t.Failed() {
		t.Logf("imds stderr:\n%s", s.Stderr())
	}
}

// logAttr finds key=value in a slog text line; quoted values are unquoted.
func logAttr(line, key string) (string, bool) {
	for rest := line; ; {
		i := strings.Index(rest, key+"=")
		if i < 0 {
			return "", false
		}
		if i > 0 && rest[i-1] != ' ' {
			rest = rest[i+len(key)+1:]
			continue
		}
		v := rest[i+len(key)+1:]
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return "", false
			}
			u, err := strconv.Unquote(q)
			return u, err == nil
		}
		if j := strings.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		return v, true
	}
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
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
