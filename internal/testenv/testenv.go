// Package testenv holds what the tests that run real programs share: the
// rule that a missing tool skips a test except in CI, building the imds
// binary, starting `imds serve` and reading its log, and moto's STS.
//
// A test that needs something the machine may lack (root, a command, a
// python module, etcd) is skipped without it, unless the environment
// variable CI is "true": then it fails, so that CI cannot pass by skipping.
package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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

// SkipOrFail skips the test, or fails it when CI is "true".
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (required when CI=true)", msg)
	}
	t.Skip(msg)
}

// Need calls SkipOrFail when err is not nil; what says what is missing.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		SkipOrFail(t, "%s: %v", what, err)
	}
}

// Command returns the path of the command name, through Need.
func Command(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, name+" is not installed", err)
	return p
}

// Python returns the real executable (not a version manager's shim) of the
// first of the interpreters (default python3) that can import module,
// through Need.
func Python(t testing.TB, module string, interpreters ...string) string {
	t.Helper()
	if len(interpreters) == 0 {
		interpreters = []string{"python3"}
	}
	var tried []string
	for _, py := range interpreters {
		p, err := exec.LookPath(py)
		if err != nil {
			tried = append(tried, py+": not found")
			continue
		}
		out, err := exec.CommandContext(t.Context(), p, "-c", "import sys, "+module+"; print(sys.executable)").CombinedOutput()
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v: %s", p, err, bytes.TrimSpace(out)))
			continue
		}
		if exe := strings.TrimSpace(string(out)); exe != "" {
			return exe
		}
		return p
	}
	Need(t, "no python can import "+module, errors.New(strings.Join(tried, "; ")))
	return ""
}

// ModuleRoot is the directory holding the go.mod of the module under test.
func ModuleRoot() (string, error) {
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

// BuildImds builds ./cmd/imds of the module under test into dir and returns
// the binary's path.
func BuildImds(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "imds")
	build := exec.Command("go", "build", "-o", bin, "./cmd/imds")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/imds: %w\n%s", err, out)
	}
	return bin, nil
}

// RunWithImds is the body of a TestMain whose tests run the imds binary: it
// builds the binary into a temporary directory, sets *bin to its path, runs
// the tests and removes the directory. It returns the exit code for os.Exit,
// 1 when the build fails.
func RunWithImds(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "imds-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildImds(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// ServeArgs is the argument list of `imds serve --data-dir dataDir args...`,
// with --listen 127.0.0.1:0 and --admin-listen 127.0.0.1:0 added unless args
// set them.
func ServeArgs(dataDir string, args ...string) []string {
	argv := []string{"serve", "--data-dir", dataDir}
	if !hasFlag(args, "--listen") {
		argv = append(argv, "--listen", "127.0.0.1:0")
	}
	if !hasFlag(args, "--admin-listen") {
		argv = append(argv, "--admin-listen", "127.0.0.1:0")
	}
	return append(argv, args...)
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// Listener is a listener that `imds serve` logged as bound.
type Listener struct {
	Addr     string // host:port
	Instance string // the instance of a bound listener; empty for a shared one
	Admin    bool   // the control plane's listener
}

// ParseListening reads a log line of `imds serve` that reports a bound
// listener: msg=listening for the data plane, msg="control plane
// listening" for the control plane.
func ParseListening(line string) (Listener, bool) {
	switch {
	case strings.Contains(line, "msg=listening "):
		addr, _ := LogAttr(line, "addr")
		inst, _ := LogAttr(line, "instance")
		return Listener{Addr: addr, Instance: inst}, true
	case strings.Contains(line, `msg="control plane listening"`):
		addr, _ := LogAttr(line, "addr")
		return Listener{Addr: addr, Admin: true}, true
	}
	return Listener{}, false
}

// LogAttr finds key=value in a slog text line; quoted values are unquoted.
func LogAttr(line, key string) (string, bool) {
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

// Buffer is a bytes.Buffer safe for concurrent writers and readers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) WriteString(s string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.WriteString(s)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Proc is a started process whose standard output and error are collected,
// line by line, into its log.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, valid after done
	log  Buffer
}

// Start starts cmd, sending its standard output and error to the log and
// then each line to onLine (if not nil), in order, on one goroutine. The
// caller stops the process, with Stop or Kill.
func Start(cmd *exec.Cmd, onLine func(line string)) (*Proc, error) {
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			p.log.WriteString(line + "\n")
			if onLine != nil {
				onLine(line)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

// Args is the command line the process was started with.
func (p *Proc) Args() []string { return p.cmd.Args }

// Log is what the process has written so far.
func (p *Proc) Log() string { return p.log.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit, as exec.Cmd.Wait reports it, once Done is
// closed.
func (p *Proc) Err() error { return p.err }

// ExitCode is the process's exit code once Done is closed.
func (p *Proc) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits for the exit; after 10 s it kills the
// process and fails the test.
func (p *Proc) Stop(t testing.TB) {
	if !p.Running() {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
		t.Errorf("%s did not exit within 10s of SIGTERM\nlog:\n%s", p.cmd.Path, p.Log())
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// IsolateAWS leaves the AWS SDKs of the test, and of the processes it
// starts, no configuration of this machine: every AWS_* variable is unset
// and the config and shared-credentials files are empty paths of the test's
// own. The test sets what it needs afterwards.
func IsolateAWS(t testing.TB) {
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

// GoTestExternal writes files (name to content) as a module of its own,
// example.com/consumer, that requires this module through a replace of the
// module root, and runs go with args in it (with GOFLAGS=-mod=mod so that go
// resolves the requirements; go.sum is this module's). It returns go's
// output and error.
func GoTestExternal(t testing.TB, files map[string]string, args ...string) (string, error) {
	t.Helper()
	goBin := Command(t, "go")
	root, err := ModuleRoot()
	Need(t, "module root", err)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	all := map[string]string{
		"go.mod": "module example.com/consumer\n\ngo 1.26\n\nrequire github.com/imds/imds v0.0.0\n\nreplace github.com/imds/imds => " + root + "\n",
		"go.sum": string(sum),
	}
	for name, data := range files {
		all[name] = data
	}
	for name, data := range all {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
