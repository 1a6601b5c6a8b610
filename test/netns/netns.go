// Package netns builds throwaway network topologies out of Linux network
// namespaces, for tests that need real packets: hop limits, caller source
// addresses, a container behind a router.
//
// Every namespace gets a unique name (imdst-<random>-<label>), so tests and
// packages can run at the same time. Commands run inside a namespace as
// subprocesses of `ip netns exec`; the test process itself never changes
// namespace. Everything a test creates, namespaces and processes, is removed by
// t.Cleanup.
//
// The helpers need root, iproute2 and whatever commands a test names in
// Require. Without them a test is skipped, unless the environment variable CI
// is "true": then it fails, so that CI cannot pass by skipping.
//
// Use only private test ranges inside the namespaces (10.200.0.0/16,
// fd00:200::/48, the IMDS addresses 169.254.169.254 and fd00:ec2::254), and
// never route them out of the namespaces a test created.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imds/imds/internal/testenv"
)

// NamePrefix starts the name of every namespace this package creates.
const NamePrefix = "imdst-"

// stopGrace is how long a stopped process gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// Require checks that the test runs as root and that ip and every named
// command are installed; otherwise it calls testenv.SkipOrFail.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "network namespace tests need root")
	}
	var missing []string
	for _, c := range append([]string{"ip"}, commands...) {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		testenv.SkipOrFail(t, "network namespace tests need %s in PATH", strings.Join(missing, ", "))
	}
}

// Namespace is one network namespace created for a test.
type Namespace struct {
	// Name is the namespace's name, as `ip netns` knows it.
	Name string
	t    testing.TB
}

// New creates a namespace whose name ends in label (keep it short), brings up
// its loopback interface and deletes it when the test ends. Call Require first.
func New(t testing.TB, label string) *Namespace {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random namespace name: %v", err)
	}
	ns := &Namespace{Name: NamePrefix + hex.EncodeToString(b[:]) + "-" + label, t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		// The first namespace is the probe: a sandbox without CAP_SYS_ADMIN
		// fails here, which is a missing capability, not a bug.
		testenv.SkipOrFail(t, "ip netns add %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
		}
	})
	ns.IP("link", "set", "lo", "up")
	return ns
}

// String returns the namespace's name.
func (ns *Namespace) String() string { return ns.Name }

// IP runs `ip -n NAME args...` and fails the test if it fails.
func (ns *Namespace) IP(args ...string) {
	ns.t.Helper()
	full := append([]string{"-n", ns.Name}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		ns.t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
}

// Link connects a and b with a veth pair, aIf in a and bIf in b, and brings
// both ends up. The pair is created directly inside the namespaces.
func Link(t testing.TB, a *Namespace, aIf string, b *Namespace, bIf string) {
	t.Helper()
	a.IP("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	a.IP("link", "set", aIf, "up")
	b.IP("link", "set", bIf, "up")
}

// AddAddr adds prefix (such as "10.200.1.1/24" or "fd00:200:1::1/64") to dev.
// IPv6 addresses skip duplicate address detection, so they are usable at once.
func (ns *Namespace) AddAddr(dev, prefix string) {
	ns.t.Helper()
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		ns.t.Fatalf("address %q: %v", prefix, err)
	}
	args := []string{"addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	ns.IP(args...)
}

// AddRoute routes dst (an address or prefix) via the gateway via.
func (ns *Namespace) AddRoute(dst, via string) {
	ns.t.Helper()
	ns.IP("route", "add", dst, "via", via)
}

// Sysctl sets a sysctl of the namespace, such as "net.ipv4.ip_forward". It
// writes /proc/sys from a shell inside the namespace, because /proc/sys/net
// shows the namespace of the process that opens it.
func (ns *Namespace) Sysctl(key, value string) {
	ns.t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	cmd := ns.Command(context.Background(), "sh", "-c", `printf '%s\n' "$1" > "$2"`, "sh", value, path)
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.t.Fatalf("%s: sysctl %s=%s: %v: %s", ns.Name, key, value, err, bytes.TrimSpace(out))
	}
}

// EnableForwarding makes the namespace a router for IPv4 and IPv6.
func (ns *Namespace) EnableForwarding() {
	ns.t.Helper()
	ns.Sysctl("net.ipv4.ip_forward", "1")
	ns.Sysctl("net.ipv6.conf.all.forwarding", "1")
}

// Command returns a command that runs name inside the namespace, in its own
// process group (so that stopping it stops its children) and killed if the
// test process dies.
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = stopGrace
	return cmd
}

// Result is what a finished command did.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
	Elapsed        time.Duration
}

// Run runs name inside the namespace until it exits or the test's context
// ends. A non-zero exit is reported in ExitCode for the caller to judge; a
// command that cannot be started fails the test.
func (ns *Namespace) Run(t testing.TB, name string, args ...string) Result {
	t.Helper()
	return ns.run(t, ns.Command(t.Context(), name, args...))
}

func (ns *Namespace) run(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: run %s: %v", ns.Name, strings.Join(cmd.Args, " "), err)
	}
	return r
}

// Start starts name inside the namespace and stops it when the test ends.
func (ns *Namespace) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return ns.start(t, ns.Command(context.Background(), name, args...))
}

func (ns *Namespace) start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{cmd: cmd, done: make(chan struct{}), stdout: newOutput(), stderr: newOutput()}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", ns.Name, strings.Join(cmd.Args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			stdout := p.Stdout()
			if !utf8.ValidString(stdout) {
				stdout = fmt.Sprintf("(%d bytes, not text)", len(stdout))
			}
			t.Logf("%s: %s\nstdout:\n%s\nstderr:\n%s", ns.Name, strings.Join(cmd.Args, " "), stdout, p.Stderr())
		}
	})
	return p
}

// Process is a command running inside a namespace.
type Process struct {
	cmd            *exec.Cmd
	stdout, stderr *output
	done           chan struct{}
	err            error // valid once done is closed
	stopOnce       sync.Once
}

// Stop sends SIGTERM to the process group, then SIGKILL if it has not exited
// within a few seconds, and returns how the process exited. Safe to call more
// than once.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	<-p.done
	return p.err
}

// Stdout returns everything the process wrote to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns everything the process wrote to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// WaitStderr waits until n lines of stderr contain substr and returns them. It
// fails the test if the process exits first or timeout passes; timeout bounds
// a wait for readiness and is no guess at how long anything takes.
func (p *Process) WaitStderr(t testing.TB, substr string, n int, timeout time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		lines, changed := p.stderr.matching(substr)
		if len(lines) >= n {
			return lines[:n]
		}
		select {
		case <-changed:
		case <-p.done:
			if lines, _ := p.stderr.matching(substr); len(lines) >= n {
				return lines[:n]
			}
			t.Fatalf("%s exited (%v) before writing %d lines with %q; stderr:\n%s",
				strings.Join(p.cmd.Args, " "), p.err, n, substr, p.stderr)
		case <-ctx.Done():
			t.Fatalf("%s wrote %d of %d lines with %q within %v; stderr:\n%s",
				strings.Join(p.cmd.Args, " "), len(lines), n, substr, timeout, p.stderr)
		}
	}
}

// output collects a process's output and wakes whoever waits for more.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(b)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(b), nil
}

// next returns a channel closed on the next write.
func (o *output) next() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// matching returns the complete lines containing substr, and a channel closed
// on the next write.
func (o *output) matching(substr string) ([]string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lines []string
	s := o.buf.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		for line := range strings.SplitSeq(s[:i], "\n") {
			if strings.Contains(line, substr) {
				lines = append(lines, line)
			}
		}
	}
	return lines, o.changed
}

// Signal sends sig to the process (not its group): SIGHUP to reload.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(p.cmd.Process.Pid, sig)
}
