// Package fleet drives several built imds binaries as one fleet: replicas
// sharing a real etcd, a server killed with SIGKILL in the middle of a stream
// of writes, callers identified by bound listeners and signed relays, and
// addresses claimed twice.
//
// TestMain builds ./cmd/imds once. Every test starts its own processes on
// loopback ports chosen by the system and stops them when it ends. Callers
// are told apart by their source address: on Linux every 127.0.0.0/8 address
// is local, so a test dials from 127.0.0.N to act as the instance at that
// address. A test that needs etcd skips without it, except under CI=true,
// where it fails.
package fleet

import (
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/testenv"
)

// imdsBin is the binary under test, built by TestMain.
var imdsBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithImds(m, &imdsBin))
}

// needLoopbackRange checks that 127.0.0.2 is a local address, as on Linux,
// so that a test can call from several loopback addresses.
func needLoopbackRange(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err == nil {
		l.Close()
	}
	testenv.Need(t, "127.0.0.2 is not a local address here (loopback aliases)", err)
}

// proc is one running `imds serve`.
type proc struct {
	*testenv.Proc
	DataDir  string
	Listen   []string          // shared data-plane listeners, host:port
	Bound    map[string]string // instance id -> its bound listener, host:port
	AdminURL string            // http://host:port of the control plane
}

// URL is the first shared data-plane listener as a base URL.
func (p *proc) URL() string { return "http://" + p.Listen[0] }

// startIMDS starts `imds serve --data-dir dataDir args...`, adding
// --listen 127.0.0.1:0 and --admin-listen 127.0.0.1:0 unless args set them.
// It returns once every listener is bound; requests queue in the listen
// backlog until the server accepts them. The process gets SIGTERM when the
// test ends.
func startIMDS(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	p, err := launch(t, dataDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launch is startIMDS returning the error instead of failing the test.
func launch(t *testing.T, dataDir string, args ...string) (*proc, error) {
	argv := testenv.ServeArgs(dataDir, args...)
	cmd := exec.Command(imdsBin, argv...)
	cmd.Env = cleanEnv(t)
	lines := make(chan testenv.Listener, 64)
	tp, err := testenv.Start(cmd, func(line string) {
		if l, ok := testenv.ParseListening(line); ok {
			lines <- l
		}
	})
	if err != nil {
		return nil, err
	}
	p := &proc{Proc: tp, DataDir: dataDir, Bound: map[string]string{}}
	t.Cleanup(func() { p.Stop(t) })

	deadline := time.After(30 * time.Second)
	for p.AdminURL == "" {
		select {
		case l := <-lines:
			switch {
			case l.Admin:
				p.AdminURL = "http://" + l.Addr
			case l.Instance != "":
				p.Bound[l.Instance] = l.Addr
			default:
				p.Listen = append(p.Listen, l.Addr)
			}
		case <-p.Done():
			return nil, fmt.Errorf("imds %s exited before listening: %v\nlog:\n%s", strings.Join(argv, " "), p.Err(), p.Log())
		case <-deadline:
			return nil, fmt.Errorf("imds %s bound no control plane within 30s\nlog:\n%s", strings.Join(argv, " "), p.Log())
		}
	}
	return p, nil
}

// cleanEnv is the environment of a child process: no AWS_* or IMDS_*
// variables from the caller, and a HOME of its own.
func cleanEnv(t *testing.T) []string {
	env := []string{"HOME=" + t.TempDir()}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "IMDS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Stop sends SIGTERM and waits for the exit; it kills the process and fails
// the test after 10 s. It logs the process's output when the test failed.
func (p *proc) Stop(t *testing.T) {
	p.Proc.Stop(t)
	if t.Failed() {
		t.Logf("imds %s: %v\nlog (last lines):\n%s", strings.Join(p.Args()[1:], " "), p.Err(), tail(p.Log(), 40))
	}
}

// ExitCode waits up to timeout for the process to exit on its own and
// returns its exit code, or -1 if it is still running.
func (p *proc) ExitCode(timeout time.Duration) int {
	select {
	case <-p.Done():
		return p.Proc.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// runIMDS runs an imds subcommand and returns its output and exit code.
func runIMDS(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, imdsBin, args...)
	cmd.Env = cleanEnv(t)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("imds %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// admin is a client of p's admin API, signing with the operator key that p
// wrote to its data dir.
func admin(t *testing.T, p *proc) *adminclient.Client {
	t.Helper()
	creds, err := adminapi.ReadCredentialsFile(filepath.Join(p.DataDir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := adminclient.New(adminclient.Options{URL: p.AdminURL, Credentials: creds, HTTPClient: &http.Client{Timeout: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// --- the data plane, as a caller at some loopback address sees it ---

const (
	hdrToken = "X-aws-ec2-metadata-token"
	hdrTTL   = "X-aws-ec2-metadata-token-ttl-seconds"
)

// caller sends data-plane requests from one source address, one connection
// per request, as SDKs talking to EC2 do.
type caller struct {
	src string
	hc  *http.Client
}

var (
	callersMu sync.Mutex
	callers   = map[string]*caller{}
)

// from returns the caller at source address src.
func from(src string) *caller {
	callersMu.Lock()
	defer callersMu.Unlock()
	if c, ok := callers[src]; ok {
		return c
	}
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, Proxy: nil}
	c := &caller{src: src, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
	callers[src] = c
	return c
}

// reply is a data-plane answer; Status 0 means no answer (Err says why).
type reply struct {
	Status int
	Body   string
	Err    error
}

func (r reply) String() string {
	if r.Err != nil {
		return "no answer: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %q", r.Status, r.Body)
}

// do sends one request to base+path with the headers given as name, value
// pairs.
func (c *caller) do(method, base, path string, hdr ...string) reply {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return reply{Err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Status: resp.StatusCode, Err: err}
	}
	return reply{Status: resp.StatusCode, Body: string(b)}
}

// get asks for path with optional headers.
func (c *caller) get(base, path string, hdr ...string) reply {
	return c.do(http.MethodGet, base, path, hdr...)
}

// instanceID asks for meta-data/instance-id, with a token if not empty.
func (c *caller) instanceID(base, token string, hdr ...string) reply {
	if token != "" {
		hdr = append(hdr, hdrToken, token)
	}
	return c.get(base, "/latest/meta-data/instance-id", hdr...)
}

// token asks for a session token of ttl seconds.
func (c *caller) token(t *testing.T, base string, hdr ...string) string {
	t.Helper()
	r := c.do(http.MethodPut, base, "/latest/api/token", append(hdr, hdrTTL, "600")...)
	if r.Status != http.StatusOK || len(r.Body) == 0 {
		t.Fatalf("PUT %s/latest/api/token from %s: %v, want 200 and a token", base, c.src, r)
	}
	return r.Body
}

// eventually calls f until it returns "" (done) or timeout passes, then
// fails with f's last message. It polls a running system; no result depends
// on the interval.
func eventually(t *testing.T, timeout time.Duration, f func() string) {
	t.Helper()
	if msg := poll(timeout, f); msg != "" {
		t.Fatalf("not within %v: %s", timeout, msg)
	}
}

// poll calls f until it returns "" or timeout passes, and returns f's last
// answer.
func poll(timeout time.Duration, f func() string) string {
	deadline := time.Now().Add(timeout)
	for {
		msg := f()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantInstance is a check for eventually: the caller is served as id.
func wantInstance(c *caller, base, token, id string, hdr ...string) func() string {
	return func() string {
		r := c.instanceID(base, token, hdr...)
		if r.Status == http.StatusOK && r.Body == id {
			return ""
		}
		return fmt.Sprintf("GET %s/latest/meta-data/instance-id from %s: %v, want 200 %q", base, c.src, r, id)
	}
}

// --- control-plane probes ---

// healthText GETs an unauthenticated control-plane path.
func healthText(base, path string) (int, string, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metric returns the value of an unlabelled metric from /metrics.
func metric(base, name string) (string, error) {
	status, body, err := healthText(base, "/metrics")
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %d", status)
	}
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("/metrics has no %s", name)
}

// --- small helpers ---

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeFile writes a file in a new temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
