package guard_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/guard"
	"github.com/imds/imds/internal/server"
	"github.com/imds/imds/internal/testenv"
	"github.com/imds/imds/internal/token"
)

const upstreamID = "i-0123456789abcdef1"

// upstreamConfig is "EC2's IMDS" for these tests: EC2 itself cannot run
// here, so a real imds data plane with tokens required and hop limit 1
// stands in for it.
var upstreamConfig = `default-instance: ` + upstreamID + `
instances:
  - instance-id: ` + upstreamID + `
    iam-role: host-role
    user-data: "#!/bin/sh\necho host\n"
    metadata-options: {http-tokens: required, http-put-response-hop-limit: 1}
roles:
  host-role:
    static: {access-key-id: AKIAHOSTHOSTHOSTHOST, secret-access-key: hostsecret}
`

// faults wraps the upstream handler to count token requests and, on demand,
// to refuse the next GET's token as an upstream restart with new keys would.
type faults struct {
	h          http.Handler
	puts       atomic.Int32
	refuseNext atomic.Bool
	// stall: requests get no answer until the guard gives up on them;
	// stalled counts them.
	stall   atomic.Bool
	stalled atomic.Int32
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.stall.Load() {
		f.stalled.Add(1)
		<-r.Context().Done()
		return
	}
	if r.Method == http.MethodPut {
		f.puts.Add(1)
	} else if f.refuseNext.CompareAndSwap(true, false) {
		r.Header.Set("X-Aws-Ec2-Metadata-Token", "expired")
	}
	f.h.ServeHTTP(w, r)
}

func startUpstream(t testing.TB) (*httptest.Server, *faults) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "upstream.yaml")
	if err := os.WriteFile(cfg, []byte(upstreamConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(t.Context(), server.Options{Listen: []string{"127.0.0.1:0"}, ConfigPath: cfg, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	f := &faults{h: s.Handler()}
	up := httptest.NewServer(f)
	t.Cleanup(up.Close)
	return up, f
}

const guardConfig = `roles:
  app-a: {static: {access-key-id: AKIAAPPAAPPAAPPAAPPA, secret-access-key: asecret}}
guard:
  hop-limit: 2
  default: {imdsv1: upgrade}
  callers:
    - {name: refuser, match: [127.0.0.2], imdsv1: refuse}
    - {name: allower, match: [127.0.0.3/32], imdsv1: allow}
    - {name: app-a, match: [127.0.0.4], role: app-a, deny-paths: [user-data, iam/info]}
    - {name: host, match: [127.0.0.5], host-credentials: true}
`

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type outcomes struct {
	mu  sync.Mutex
	all []dataplane.Outcome
}

func (o *outcomes) Observe(x dataplane.Outcome) { o.mu.Lock(); o.all = append(o.all, x); o.mu.Unlock() }
func (o *outcomes) last() dataplane.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all[len(o.all)-1]
}

type env struct {
	guard    *guard.Guard
	url      string
	upstream *httptest.Server
	faults   *faults
	clock    *clock
	seen     *outcomes
}

func newRing(t testing.TB, now func() time.Time) *token.Ring {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	r, err := token.NewRing([]token.Key{{ID: 1, Secret: secret}}, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func start(t testing.TB, yaml string) *env {
	t.Helper()
	return startWith(t, yaml, nil)
}

func startWith(t testing.TB, yaml string, procs guard.ProcessFinder, opts ...func(*guard.Options)) *env {
	t.Helper()
	up, f := startUpstream(t)
	c, err := config.Parse([]byte(strings.Replace(yaml, "guard:\n", "guard:\n  upstream: "+up.URL+"\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	seen := &outcomes{}
	o := guard.Options{Config: c.Guard, Roles: c.Roles, Ring: newRing(t, clk.now), Observer: seen, Processes: procs, Now: clk.now}
	for _, f := range opts {
		f(&o)
	}
	g, err := guard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Credentials().WaitFetched(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.Start(t.Context())
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return &env{guard: g, url: srv.URL, upstream: up, faults: f, clock: clk, seen: seen}
}

// client calls from a loopback address of its own, so that each test
// caller matches a rule.
func client(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func (e *env) token(t *testing.T, c *http.Client) string {
	t.Helper()
	code, _, tok := do(t, c, "PUT", e.url+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60")
	if code != 200 {
		t.Fatalf("token: %d", code)
	}
	return tok
}

func TestIMDSv1Policies(t *testing.T) {
	e := start(t, guardConfig)
	for _, tc := range []struct {
		name, from string
		want       int
	}{
		{"default upgrades", "127.0.0.1", 200},
		{"refuse answers 401 as EC2", "127.0.0.2", 401},
		{"allow forwards without a token; upstream requires one", "127.0.0.3", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hd, body := do(t, client(tc.from), "GET", e.url+"/latest/meta-data/instance-id")
			if code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
			if hd.Get("Server") != "EC2ws" {
				t.Errorf("Server %q, want EC2ws", hd.Get("Server"))
			}
			if code == 200 && body != upstreamID {
				t.Errorf("body %q, want %s", body, upstreamID)
			}
			if code == 401 && !strings.Contains(body, "401 - Unauthorized") {
				t.Errorf("401 body %q: want EC2's page", body)
			}
			o := e.seen.last()
			if o.Instance != upstreamID || o.Source.String() != tc.from || o.Token || o.Status != tc.want {
				t.Errorf("outcome %+v", o)
			}
			if tc.from == "127.0.0.2" && !o.TokensRequired {
				t.Error("outcome of a refused caller: TokensRequired false")
			}
		})
	}
}

func TestTokens(t *testing.T) {
	e := start(t, guardConfig)
	c := client("127.0.0.2")
	tok := e.token(t, c)
	if len(tok) != token.EncodedLen {
		t.Errorf("token %q: want one of imds's own", tok)
	}
	code, hd, body := do(t, c, "GET", e.url+"/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok)
	if code != 200 || body != upstreamID {
		t.Fatalf("v2 GET: %d %q", code, body)
	}
	if got := hd.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"); got != "60" {
		t.Errorf("TTL header %q, want 60", got)
	}
	for _, tc := range []struct {
		name   string
		from   string
		method string
		path   string
		hdr    []string
		want   int
	}{
		{"token of another caller", "127.0.0.1", "GET", "/latest/meta-data/instance-id", []string{"X-aws-ec2-metadata-token", tok}, 401},
		{"X-Forwarded-For on PUT", "127.0.0.2", "PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60", "X-Forwarded-For", "10.0.0.1"}, 403},
		{"X-Forwarded-For on GET", "127.0.0.2", "GET", "/latest/meta-data/instance-id", []string{"X-aws-ec2-metadata-token", tok, "X-Forwarded-For", "10.0.0.1"}, 403},
		{"TTL missing", "127.0.0.2", "PUT", "/latest/api/token", nil, 400},
		{"TTL too long", "127.0.0.2", "PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "21601"}, 400},
		{"PUT elsewhere", "127.0.0.2", "PUT", "/latest/meta-data/", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60"}, 403},
		{"POST", "127.0.0.2", "POST", "/latest/meta-data/", []string{"X-aws-ec2-metadata-token", tok}, 405},
		{"garbage token", "127.0.0.2", "GET", "/latest/meta-data/instance-id", []string{"X-aws-ec2-metadata-token", "x"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, body := do(t, client(tc.from), tc.method, e.url+tc.path, tc.hdr...); code != tc.want {
				t.Errorf("got %d %q, want %d", code, body, tc.want)
			}
		})
	}
	// The guard's downstream token means nothing upstream.
	if code, _, _ := do(t, client("127.0.0.1"), "GET", e.upstream.URL+"/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok); code != 401 {
		t.Errorf("guard token upstream: %d, want 401", code)
	}
}

func TestUpstreamToken(t *testing.T) {
	e := start(t, guardConfig)
	c := client("127.0.0.1")
	get := func() {
		t.Helper()
		if code, _, body := do(t, c, "GET", e.url+"/latest/meta-data/instance-id"); code != 200 {
			t.Fatalf("GET: %d %q", code, body)
		}
	}
	get()
	get()
	if n := e.faults.puts.Load(); n != 1 {
		t.Errorf("token requests upstream after two GETs: %d, want 1 (the token is held)", n)
	}
	e.clock.advance(5 * time.Hour)
	get()
	if n := e.faults.puts.Load(); n != 1 {
		t.Errorf("token requests 5h in: %d, want 1", n)
	}
	e.clock.advance(31 * time.Minute) // 30 minutes before the 6h token expires
	get()
	if n := e.faults.puts.Load(); n != 2 {
		t.Errorf("token requests ahead of expiry: %d, want 2 (renewed)", n)
	}
	e.faults.refuseNext.Store(true)
	get()
	if n := e.faults.puts.Load(); n != 3 {
		t.Errorf("token requests after a 401: %d, want 3 (one retry with a fresh token)", n)
	}
}

func TestRolesAndPaths(t *testing.T) {
	e := start(t, guardConfig)
	for _, tc := range []struct {
		name, from, path string
		want             int
		body             string // a substring of the body
		not              string // never in the body
	}{
		{"role listing shows only the caller's role", "127.0.0.4", "/latest/meta-data/iam/security-credentials/", 200, "app-a", "host-role"},
		{"role document", "127.0.0.4", "/latest/meta-data/iam/security-credentials/app-a", 200, "AKIAAPPAAPPAAPPAAPPA", "AKIAHOST"},
		{"host role by name", "127.0.0.4", "/latest/meta-data/iam/security-credentials/host-role", 404, "", "AKIAHOST"},
		{"denied user-data", "127.0.0.4", "/latest/user-data", 404, "404 - Not Found", "echo host"},
		{"denied iam/info", "127.0.0.4", "/latest/meta-data/iam/info", 404, "", ""},
		{"denied through a doubled slash", "127.0.0.4", "/latest//user-data", 404, "", "echo host"},
		{"other paths pass", "127.0.0.4", "/latest/meta-data/instance-id", 200, upstreamID, ""},
		{"default: no credentials", "127.0.0.1", "/latest/meta-data/iam/security-credentials/", 404, "", "host-role"},
		{"default: no host document", "127.0.0.1", "/latest/meta-data/iam/security-credentials/host-role", 404, "", "AKIAHOST"},
		{"default: no extended", "127.0.0.1", "/latest/meta-data/iam/security-credentials-extended/host-role", 404, "", "AKIAHOST"},
		{"default: no identity credentials", "127.0.0.1", "/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance", 404, "", ""},
		{"default: user-data passes", "127.0.0.1", "/latest/user-data", 200, "echo host", ""},
		{"host-credentials caller", "127.0.0.5", "/latest/meta-data/iam/security-credentials/host-role", 200, "AKIAHOSTHOSTHOSTHOST", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(tc.from)
			tok := e.token(t, c)
			code, _, body := do(t, c, "GET", e.url+tc.path, "X-aws-ec2-metadata-token", tok)
			if code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
			if !strings.Contains(body, tc.body) || (tc.not != "" && strings.Contains(body, tc.not)) {
				t.Errorf("body %q: want %q in it and never %q", body, tc.body, tc.not)
			}
		})
	}
	// IMDSv1 under upgrade reaches the role too: the policy, not the
	// version, decides.
	code, _, body := do(t, client("127.0.0.4"), "GET", e.url+"/latest/meta-data/iam/security-credentials/app-a")
	if code != 200 || !strings.Contains(body, "AKIAAPPA") {
		t.Errorf("v1 role document: %d %q", code, body)
	}
}

func TestFailSafe(t *testing.T) {
	e := start(t, guardConfig)
	host := client("127.0.0.5")
	paths := []string{"/latest/meta-data/instance-id", "/latest/meta-data/iam/security-credentials/host-role"}
	var want []string
	for _, p := range paths {
		code, _, body := do(t, host, "GET", e.url+p)
		if code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
		want = append(want, body)
	}
	if ok, _ := e.guard.Ready(); !ok {
		t.Error("not ready with the upstream up")
	}
	e.upstream.Close()
	if ok, reasons := e.guard.Ready(); ok || len(reasons) != 1 || !strings.Contains(reasons[0], "cached metadata answers") {
		t.Errorf("Ready with the upstream down, before any request: %v %q", ok, reasons)
	}
	for i, p := range paths {
		if code, _, body := do(t, host, "GET", e.url+p); code != 200 || body != want[i] {
			t.Errorf("%s with the upstream down: %d %q, want the cached answer", p, code, body)
		}
	}
	if ok, reasons := e.guard.Ready(); ok || len(reasons) != 1 || !strings.Contains(reasons[0], "cached metadata answers") {
		t.Errorf("Ready with the upstream down: %v %q", ok, reasons)
	}
	if code, _, _ := do(t, host, "GET", e.url+"/latest/meta-data/ami-id"); code != 503 {
		t.Errorf("uncached path with the upstream down: %d, want 503", code)
	}
	// A caller whose policy denies what is cached still gets nothing.
	if code, _, body := do(t, client("127.0.0.1"), "GET", e.url+paths[1]); code != 404 || strings.Contains(body, "AKIA") {
		t.Errorf("cached credentials to a caller without them: %d %q", code, body)
	}
	// Credentials are never served past their expiry.
	e.clock.advance(7 * time.Hour)
	if code, _, body := do(t, host, "GET", e.url+paths[1]); code != 503 || bytes.Contains([]byte(body), []byte("AKIA")) {
		t.Errorf("expired cached credentials: %d %q, want 503", code, body)
	}
	if code, _, _ := do(t, host, "GET", e.url+paths[0]); code != 200 {
		t.Errorf("cached metadata later: %d, want 200", code)
	}
}

func TestUpdateSwapsPolicy(t *testing.T) {
	e := start(t, guardConfig)
	c, err := config.Parse([]byte(strings.Replace(guardConfig, "default: {imdsv1: upgrade}", "default: {imdsv1: refuse}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	c.Guard.Upstream = e.upstream.URL
	if err := e.guard.Update(c.Guard, c.Roles); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, client("127.0.0.1"), "GET", e.url+"/latest/meta-data/instance-id"); code != 401 {
		t.Errorf("v1 after the default became refuse: %d, want 401", code)
	}
}

// A caller in the guard's network namespace is attributed to its process.
func TestAttribution(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		testenv.SkipOrFail(t, "no /proc/net/tcp: not Linux")
	}
	e := startWith(t, guardConfig, guard.Procfs{})
	if code, _, _ := do(t, client("127.0.0.1"), "GET", e.url+"/latest/meta-data/instance-id"); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	o := e.seen.last()
	if want := fmt.Sprintf("pid %d ", os.Getpid()); !strings.HasPrefix(o.Process, want) || !strings.Contains(o.Process, "guard.test") {
		t.Errorf("process %q, want %q and this test's command line", o.Process, want)
	}
}

// An upstream that takes requests and never answers holds one caller for
// the guard's client timeout; the callers after it get the cache at once
// until the backoff is over.
func TestUpstreamStallBacksOff(t *testing.T) {
	e := startWith(t, guardConfig, nil, func(o *guard.Options) {
		o.Client = &http.Client{Timeout: 300 * time.Millisecond}
	})
	c := client("127.0.0.1")
	path := e.url + "/latest/meta-data/instance-id"
	if code, _, _ := do(t, c, "GET", path); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	e.faults.stall.Store(true)
	for i := range 3 {
		if code, _, body := do(t, c, "GET", path); code != 200 || body != upstreamID {
			t.Errorf("GET %d with the upstream stalled: %d %q, want the cached answer", i, code, body)
		}
	}
	if n := e.faults.stalled.Load(); n != 1 {
		t.Errorf("requests that reached the stalled upstream: %d, want 1 (then the backoff)", n)
	}
	e.clock.advance(6 * time.Second)
	e.faults.stall.Store(false)
	if code, _, _ := do(t, c, "GET", e.url+"/latest/meta-data/ami-id"); code != 200 {
		t.Errorf("GET after the backoff, upstream back: %d, want 200", code)
	}
	if ok, _ := e.guard.UpstreamUp(); !ok {
		t.Error("upstream still reported down after it answered")
	}
}
