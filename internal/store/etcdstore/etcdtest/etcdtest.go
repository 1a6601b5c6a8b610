// Package etcdtest starts real etcd servers for tests: the etcd binary
// (Debian's etcd-server package) as a child process on free loopback ports,
// with its data in a temporary directory. Start runs one server, StartCluster a
// cluster whose members a test can kill and restart, and NewCerts makes a
// throwaway CA for TLS.
//
// Without an etcd binary in PATH a test is skipped, unless the environment
// variable CI is "true": then it fails, so that CI cannot pass by skipping.
// Every process is killed by t.Cleanup; when the test failed, the last lines
// of each member's log are logged.
package etcdtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imds/imds/internal/testenv"
)

// startTimeout bounds how long a new server or cluster may take to become
// healthy.
const startTimeout = 30 * time.Second

// Binary returns the path of the etcd binary, through testenv.SkipOrFail
// when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		testenv.SkipOrFail(t, "etcd is not installed (apt-get install etcd-server): %v", err)
	}
	return p
}

// Config changes how members are started. The zero value serves plain HTTP.
type Config struct {
	// TLS, when set, serves clients over TLS with its server certificate and
	// requires client certificates signed by its CA. Peers talk plain HTTP.
	TLS *Certs
}

// Member is one etcd process of a test cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string

	bin     string
	args    []string
	logPath string
	health  *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Cluster is a set of members started together.
type Cluster struct {
	Members []*Member
}

// Start starts a single-member etcd server, waits until it is healthy and
// returns it. The server is killed when the test ends.
func Start(t testing.TB) *Member {
	t.Helper()
	return StartCluster(t, 1, Config{}).Members[0]
}

// StartTLS is Start with clients served over TLS by certs.
func StartTLS(t testing.TB, certs *Certs) *Member {
	t.Helper()
	return StartCluster(t, 1, Config{TLS: certs}).Members[0]
}

// StartCluster starts n members that form one cluster and waits until every
// member is healthy. Members are killed when the test ends.
func StartCluster(t testing.TB, n int, cfg Config) *Cluster {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	// A free port found by listening and closing can be taken again before
	// etcd binds it; then the whole cluster is tried again on new ports.
	for range 3 {
		c, err := startCluster(t, bin, n, cfg)
		if err == nil {
			return c
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("start etcd: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

func startCluster(t testing.TB, bin string, n int, cfg Config) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	token := make([]byte, 6)
	rand.Read(token)
	clientScheme := "http"
	if cfg.TLS != nil {
		clientScheme = "https"
	}
	dir := t.TempDir()
	c := &Cluster{}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      "m" + strconv.Itoa(i),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", clientScheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			bin:       bin,
		}
		m.DataDir = filepath.Join(dir, m.Name+".etcd")
		m.logPath = filepath.Join(dir, m.Name+".log")
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "imds-test-" + hex.EncodeToString(token),
			"--logger", "zap",
			"--log-outputs", "stderr",
		}
		tr := &http.Transport{}
		if cfg.TLS != nil {
			m.args = append(m.args,
				"--cert-file", cfg.TLS.ServerCertFile,
				"--key-file", cfg.TLS.ServerKeyFile,
				"--trusted-ca-file", cfg.TLS.CAFile,
				"--client-cert-auth",
			)
			tr.TLSClientConfig = cfg.TLS.ClientConfig()
		}
		m.health = &http.Client{Transport: tr, Timeout: 2 * time.Second}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
			m.health.CloseIdleConnections()
		}
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("etcd member %s log (last lines):\n%s", m.Name, tail(m.logPath, 30))
			}
		}
	})
	err = func() error {
		for _, m := range c.Members {
			if err := m.start(); err != nil {
				return err
			}
		}
		return waitHealthy(c.Members, startTimeout)
	}()
	if err != nil {
		for _, m := range c.Members {
			m.Kill()
		}
		return nil, err
	}
	return c, nil
}

// ClientURLs returns every member's client URL.
func (c *Cluster) ClientURLs() []string {
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, m.ClientURL)
	}
	return urls
}

// WaitHealthy waits until every running member reports itself healthy (it
// has a leader), and fails the test after timeout.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := waitHealthy(c.Members, timeout); err != nil {
		t.Fatal(err)
	}
}

// WaitHealthy waits until the member reports itself healthy, and fails the
// test after timeout.
func (m *Member) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := waitHealthy([]*Member{m}, timeout); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy polls the members that were started and not killed until all
// are healthy. A member that exits on its own ends the wait at once.
func waitHealthy(members []*Member, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var last error
		for _, m := range members {
			m.mu.Lock()
			done := m.done
			m.mu.Unlock()
			if done == nil {
				continue // killed on purpose
			}
			select {
			case <-done:
				log := tail(m.logPath, 30)
				if strings.Contains(log, "address already in use") {
					return fmt.Errorf("etcd member %s: %w", m.Name, errAddrInUse)
				}
				return fmt.Errorf("etcd member %s exited; log:\n%s", m.Name, log)
			default:
			}
			if err := m.healthy(); err != nil && last == nil {
				last = fmt.Errorf("etcd member %s not healthy: %w", m.Name, err)
			}
		}
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(50 * time.Millisecond) // polling child processes, not timing a result
	}
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("etcd member %s is already running", m.Name)
	}
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(m.bin, m.args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	return nil
}

// cleanEnv is the environment without ETCD_* variables, which etcd would read
// as flags. etcd 3.4 refuses to start on architectures other than amd64 and
// ppc64le unless told to.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD") {
			env = append(env, kv)
		}
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "ppc64le" {
		env = append(env, "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	}
	return env
}

// Running reports whether the member's process is running.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Kill kills the member's process with SIGKILL and waits for it to exit. Its
// data directory stays, for Restart.
func (m *Member) Kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	m.cmd, m.done = nil, nil
}

// Restart starts a killed member again on the same ports and data directory.
// It does not wait for the member to be healthy: a member alone in a cluster
// that lost its quorum cannot be; see Cluster.WaitHealthy.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
}

// healthy asks the member's /health endpoint, which answers true once the
// member has a leader.
func (m *Member) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := m.health.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("GET /health: %s: %w", resp.Status, err)
	}
	if h.Health != "true" {
		return fmt.Errorf("GET /health: %s, health %q", resp.Status, h.Health)
	}
	return nil
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
