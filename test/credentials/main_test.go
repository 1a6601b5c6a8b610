// Package credentials tests role credential sources against real services:
// STS AssumeRole served by moto's server mode, a credential process, and the
// AWS SDK for Go v2 and botocore reading the documents the way they read
// IMDS.
//
// Time is driven through the manager's clock, offset from the real one, so
// that rotation and expiry are seen in seconds although STS sessions last at
// least 15 minutes. Tests that need python3 with moto or botocore skip when it
// is missing, except under CI=true, where they fail.
package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/metadata"
)

// need skips the test when ok is false, or fails it when CI is "true".
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

// needPython returns the real executable (not a version manager's shim) of a
// python3 that can import module, through need.
func needPython(t *testing.T, module string) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	need(t, err == nil, "python3 is not installed: %v", err)
	out, err := exec.CommandContext(t.Context(), p, "-c", "import sys, "+module+"; print(sys.executable)").CombinedOutput()
	need(t, err == nil, "%s cannot import %s: %v: %s", p, module, err, bytes.TrimSpace(out))
	if exe := strings.TrimSpace(string(out)); exe != "" {
		return exe
	}
	return p
}

// isolateAWS leaves the SDK no configuration of this machine: only what the
// test sets.
func isolateAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

// clock is the real time plus an offset the test moves forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// set sets the offset so that Now is at t.
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = time.Until(t)
}

// logBuffer collects a manager's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// doc is a credentials document.
type doc struct {
	Code, Message, LastUpdated, Type   string
	AccessKeyID                        string `json:"AccessKeyId"`
	SecretAccessKey, Token, Expiration string
	AccountID                          string `json:"AccountId"`
}

func (d doc) expires(t *testing.T) time.Time {
	t.Helper()
	e, err := time.Parse(metadata.TimeFormat, d.Expiration)
	if err != nil {
		t.Fatalf("Expiration %q: %v", d.Expiration, err)
	}
	return e
}

func render(t *testing.T, f metadata.DynamicFunc, v2 bool) doc {
	t.Helper()
	if f == nil {
		t.Fatal("no renderer")
	}
	body, ok := f(metadata.Request{V2: v2})
	if !ok {
		t.Fatal("renderer answered 404")
	}
	var d doc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return d
}

// imdsStub serves one role's credentials document at the paths SDKs read,
// with IMDSv2 tokens: enough for the SDKs' IMDS credential providers.
func imdsStub(t *testing.T, role string, fn metadata.DynamicFunc) *httptest.Server {
	t.Helper()
	const tok = "stub-token"
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		fmt.Fprint(w, tok)
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, role)
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/"+role, func(w http.ResponseWriter, r *http.Request) {
		body, _ := fn(metadata.Request{V2: r.Header.Get("X-Aws-Ec2-Metadata-Token") == tok})
		w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// freePort returns a loopback port nothing listens on, for a server that
// cannot be told to pick one.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// moto is a running `python3 -m moto.server`.
type moto struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	out  *logBuffer
}

// startMoto starts moto's server on port and waits until it answers.
func startMoto(t *testing.T, py string, port int) *moto {
	t.Helper()
	m := &moto{URL: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{}), out: &logBuffer{}}
	m.cmd = exec.Command(py, "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start moto: %v", err)
	}
	go func() {
		m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(m.stop)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if res, err := http.Get(m.URL + "/moto-api/"); err == nil {
			res.Body.Close()
			return m
		}
		select {
		case <-m.done:
			t.Fatalf("moto exited:\n%s", m.out)
		case <-ctx.Done():
			t.Fatalf("moto does not answer on %s:\n%s", m.URL, m.out)
		case <-tick.C:
		}
	}
}

// stop kills moto and waits for it to exit.
func (m *moto) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Kill()
	<-m.done
}
