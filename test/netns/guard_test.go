package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/testenv"
)

// guardTopology is a host that runs containers on EC2:
//
//	ec2 ──e0────────h0── host ──h1────────r0── bridge ──r1──a0── container A
//	10.210.0.1   10.210.0.2   10.210.1.1   10.210.1.2    │      10.210.2.2
//	169.254.169.254 (on e0)   (the guard)                └─r2──b0── container B
//	                                                            10.210.3.2
//
// "EC2's IMDS" cannot run here: a real imds serve with http-tokens required
// and hop limit 1 stands in for it in the ec2 namespace. The containers are
// one router (the bridge namespace) away from the host, as behind a bridge
// and NAT: packets from EC2 cross the host and the bridge to reach them.
type guardTopology struct {
	ec2, host, bridge, a, b *Namespace
}

func newGuardTopology(t *testing.T) *guardTopology {
	t.Helper()
	top := &guardTopology{ec2: New(t, "ec2"), host: New(t, "ghost"), bridge: New(t, "br"), a: New(t, "ctra"), b: New(t, "ctrb")}
	e, h, br, a, b := top.ec2, top.host, top.bridge, top.a, top.b
	Link(t, e, "e0", h, "h0")
	e.AddAddr("e0", "10.210.0.1/30")
	e.AddAddr("e0", imdsV4+"/32")
	h.AddAddr("h0", "10.210.0.2/30")
	Link(t, h, "h1", br, "r0")
	h.AddAddr("h1", "10.210.1.1/30")
	br.AddAddr("r0", "10.210.1.2/30")
	Link(t, br, "r1", a, "a0")
	br.AddAddr("r1", "10.210.2.1/24")
	a.AddAddr("a0", "10.210.2.2/24")
	Link(t, br, "r2", b, "b0")
	br.AddAddr("r2", "10.210.3.1/24")
	b.AddAddr("b0", "10.210.3.2/24")

	e.AddRoute("10.210.0.0/16", "10.210.0.2")
	h.AddRoute(imdsV4+"/32", "10.210.0.1")
	h.AddRoute("10.210.2.0/24", "10.210.1.2")
	h.AddRoute("10.210.3.0/24", "10.210.1.2")
	br.AddRoute("default", "10.210.1.1")
	a.AddRoute("default", "10.210.2.1")
	b.AddRoute("default", "10.210.3.1")
	h.EnableForwarding()
	br.EnableForwarding()
	return top
}

const (
	guardEC2ID  = "i-0a1b2c3d4e5f60719"
	guardListen = "10.210.1.1:80"
	guardURL    = "http://" + guardListen
)

// curlIn runs curl in ns and returns the body and status.
func curlIn(t *testing.T, ns *Namespace, method, url string, headers ...string) response {
	t.Helper()
	args := []string{"-sS", "--max-time", strconv.Itoa(int(clientTimeout / time.Second)), "-X", method, "-o", "-", "-w", "\n%{http_code}"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	r := ns.Run(t, "curl", append(args, url)...)
	resp := response{exit: r.ExitCode, stderr: r.Stderr, elapsed: r.Elapsed}
	i := strings.LastIndexByte(r.Stdout, '\n')
	if i < 0 {
		t.Fatalf("curl %s %s: no status line in %q; stderr %q", method, url, r.Stdout, r.Stderr)
	}
	resp.body = r.Stdout[:i]
	resp.status, _ = strconv.Atoi(r.Stdout[i+1:])
	return resp
}

func guardConfigFile(t *testing.T, path, stsURL, policyA string) {
	t.Helper()
	cfg := fmt.Sprintf(`roles:
  app-b:
    assume-role:
      role-arn: arn:aws:iam::123456789012:role/app-b
      source-credentials: upstream
      sts-endpoint: %s
      region: us-east-1
      duration: 15m
guard:
  upstream: http://%s
  hop-limit: 2
  default: {imdsv1: refuse}
  callers:
    - {name: ctr-a, match: [10.210.2.2], imdsv1: %s}
    - {name: ctr-b, match: [10.210.3.0/24], role: app-b, deny-paths: [user-data]}
    - {name: host, match: [10.210.1.1], imdsv1: upgrade}
`, stsURL, imdsV4, policyA)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestGuard is issue 12's scenario: the guard on a host in front of "EC2"
// that requires tokens with hop limit 1, and two containers a bridge away.
func TestGuard(t *testing.T) {
	Require(t, "curl", "iptables")
	py := testenv.Python(t, "moto.server")
	top := newGuardTopology(t)
	// Container B reaches the guard as 169.254.169.254, through the DNAT
	// rule docs/guard.md gives; container A calls the guard's address, so
	// that it can also try EC2's IMDS directly.
	if r := top.host.Run(t, "iptables", "-t", "nat", "-I", "PREROUTING", "-i", "h1", "-s", "10.210.3.0/24",
		"-d", imdsV4, "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", guardListen); r.ExitCode != 0 {
		t.Fatalf("iptables DNAT: %s", r.Stderr)
	}
	imdsURL := "http://" + imdsV4
	dir := t.TempDir()

	ec2Cfg := filepath.Join(dir, "ec2.yaml")
	if err := os.WriteFile(ec2Cfg, []byte(`default-instance: `+guardEC2ID+`
instances:
  - instance-id: `+guardEC2ID+`
    iam-role: host-role
    user-data: "#!/bin/sh\necho host\n"
    metadata-options: {http-tokens: required, http-put-response-hop-limit: 1}
roles:
  host-role:
    static: {access-key-id: AKIAHOSTHOSTHOSTHOST, secret-access-key: hostsecret}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ec2 := top.ec2.Start(t, imdsBin, "serve", "--listen", imdsV4+":80", "--admin-listen", "", "--config", ec2Cfg, "--data-dir", filepath.Join(dir, "ec2"))
	ec2.WaitStderr(t, "listening", 1, 15*time.Second)

	// Container B's role comes from STS AssumeRole (moto, on the host's
	// loopback), signed with the host's credentials that the guard reads
	// from EC2's IMDS: the guard's environment has none of its own.
	moto := top.host.Start(t, py, "-m", "moto.server", "-H", "127.0.0.1", "-p", "5000")
	moto.WaitStderr(t, "Running on", 1, 30*time.Second)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))

	guardCfg := filepath.Join(dir, "guard.yaml")
	guardConfigFile(t, guardCfg, "http://127.0.0.1:5000", "upgrade")
	if r := top.host.Run(t, imdsBin, "validate", "--config", guardCfg); r.ExitCode != 0 {
		t.Fatalf("imds validate: %s%s", r.Stdout, r.Stderr)
	}
	data := filepath.Join(dir, "guard")
	g := top.host.Start(t, imdsBin, "guard", "--listen", guardListen, "--admin-listen", "127.0.0.1:1339", "--config", guardCfg, "--data-dir", data)
	g.WaitStderr(t, "control plane listening", 1, 15*time.Second)

	// The upstream's token answers leave EC2 with TTL 1 and die at the host;
	// the guard's leave with its hop limit, 2, and reach the containers.
	if r := curlIn(t, top.a, "PUT", "http://"+imdsV4+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 60"); r.status != 0 {
		t.Errorf("container A, token from EC2 directly: %v; want no answer (hop limit 1)", r)
	}
	tokA := curlIn(t, top.a, "PUT", guardURL+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 60")
	if tokA.status != 200 {
		t.Fatalf("container A, token from the guard: %v", tokA)
	}
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: "+tokA.body); r.status != 200 || r.body != guardEC2ID {
		t.Errorf("container A, IMDSv2 through the guard: %v", r)
	}

	// A v1-only client in container A works under upgrade.
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/instance-id"); r.status != 200 || r.body != guardEC2ID {
		t.Errorf("container A, IMDSv1 under upgrade: %v", r)
	}
	// ... gets no credentials (no role, and never the host's).
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/iam/security-credentials/host-role"); r.status != 404 || strings.Contains(r.body, "AKIAHOST") {
		t.Errorf("container A, the host's credentials: %v; want 404", r)
	}

	// Container B gets its own role's credentials from STS, never the host's.
	tokB := curlIn(t, top.b, "PUT", imdsURL+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 60")
	if tokB.status != 200 {
		t.Fatalf("container B, token: %v", tokB)
	}
	hb := "X-aws-ec2-metadata-token: " + tokB.body
	if r := curlIn(t, top.b, "GET", imdsURL+"/latest/meta-data/iam/security-credentials/", hb); r.status != 200 || r.body != "app-b" {
		t.Errorf("container B, listing: %v; want only app-b", r)
	}
	r := curlIn(t, top.b, "GET", imdsURL+"/latest/meta-data/iam/security-credentials/app-b", hb)
	var doc struct{ Code, AccessKeyId, Token string }
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil || r.status != 200 || doc.Code != "Success" || doc.AccessKeyId == "" || doc.Token == "" || strings.Contains(r.body, "AKIAHOST") {
		t.Errorf("container B, its role's credentials: %v (%v)", r, err)
	}
	if r := curlIn(t, top.b, "GET", imdsURL+"/latest/meta-data/iam/security-credentials/host-role", hb); r.status != 404 {
		t.Errorf("container B, the host's role: %v; want 404", r)
	}
	// A denied path answers 404, as docs/guard.md says.
	if r := curlIn(t, top.b, "GET", imdsURL+"/latest/user-data", hb); r.status != 404 || strings.Contains(r.body, "echo host") {
		t.Errorf("container B, denied user-data: %v; want 404", r)
	}

	// A host process calling IMDSv1 through the guard is attributed to its
	// pid and command line. The shell prints its pid, then becomes curl.
	hr := top.host.Run(t, "sh", "-c", `echo $$; exec curl -sS -o /dev/null -w '%{http_code}' `+guardURL+`/latest/meta-data/ami-id`)
	pid, status, _ := strings.Cut(hr.Stdout, "\n")
	if hr.ExitCode != 0 || status != "200" {
		t.Fatalf("host process: %+v", hr)
	}
	mr := top.host.Run(t, imdsBin, "migration", "--json", "--admin-url", "http://127.0.0.1:1339", "--data-dir", data)
	if mr.ExitCode != 0 {
		t.Fatalf("imds migration --json: exit %d\n%s", mr.ExitCode, mr.Stderr)
	}
	var view []migration.Instance
	if err := json.Unmarshal([]byte(mr.Stdout), &view); err != nil || len(view) != 1 || view[0].InstanceID != guardEC2ID {
		t.Fatalf("imds migration --json: %v\n%s", err, mr.Stdout)
	}
	var hostCaller *migration.Caller
	addrs := map[string]bool{}
	for i, c := range view[0].Callers {
		addrs[c.Address] = true
		if strings.HasPrefix(c.Process, "pid "+pid+" curl ") {
			hostCaller = &view[0].Callers[i]
		}
	}
	if hostCaller == nil || hostCaller.Class != migration.ClassV1 || !strings.Contains(hostCaller.Process, "/latest/meta-data/ami-id") {
		t.Errorf("host process pid %s not found as a v1 caller with its command line in %+v", pid, view[0].Callers)
	} else {
		t.Logf("host caller: %s: %s", hostCaller.Class, hostCaller.Process)
	}
	if !addrs["10.210.2.2"] || !addrs["10.210.3.2"] {
		t.Errorf("callers %v: want both containers", addrs)
	}

	// SIGHUP applies a new policy: container A's IMDSv1 is now refused.
	guardConfigFile(t, guardCfg, "http://127.0.0.1:5000", "refuse")
	if err := g.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	g.WaitStderr(t, "configuration reloaded", 1, 15*time.Second)
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/instance-id"); r.status != 401 || !strings.Contains(r.body, "401 - Unauthorized") {
		t.Errorf("container A, IMDSv1 under refuse: %v; want EC2's 401", r)
	}
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: "+tokA.body); r.status != 200 {
		t.Errorf("container A, IMDSv2 under refuse: %v", r)
	}

	// With EC2's IMDS gone, cached metadata answers, credentials do not
	// leak, and /readyz says so.
	if err := ec2.Stop(); err != nil {
		t.Logf("ec2 stopped: %v", err)
	}
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: "+tokA.body); r.status != 200 || r.body != guardEC2ID {
		t.Errorf("container A, cached instance-id with the upstream down: %v", r)
	}
	if r := curlIn(t, top.a, "GET", guardURL+"/latest/meta-data/iam/security-credentials/host-role", "X-aws-ec2-metadata-token: "+tokA.body); r.status != 404 {
		t.Errorf("container A, the host's credentials with the upstream down: %v; want 404", r)
	}
	if r := curlIn(t, top.host, "GET", "http://127.0.0.1:1339/readyz"); r.status != 503 || !strings.Contains(r.body, "cached metadata answers") {
		t.Errorf("/readyz with the upstream down: %v; want 503 naming the upstream", r)
	}
}
