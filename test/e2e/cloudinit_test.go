package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/testenv"
)

// cloudInitResult is what testdata/cloudinit_ec2.py prints.
type cloudInitResult struct {
	OK          bool               `json:"ok"`
	Address     *string            `json:"address"`
	APIVersion  *string            `json:"api_version"`
	Metadata    map[string]any     `json:"metadata"`
	UserDataB64 string             `json:"userdata_b64"`
	Identity    map[string]any     `json:"identity"`
	InstanceID  string             `json:"instance_id"`
	Region      string             `json:"region"`
	Requests    []cloudInitRequest `json:"requests"`
}

type cloudInitRequest struct {
	Method string  `json:"method"`
	URL    string  `json:"url"`
	Token  bool    `json:"token"`
	TTL    *string `json:"ttl"`
	Status *int    `json:"status"`
}

func (r cloudInitRequest) String() string {
	st := "no response"
	if r.Status != nil {
		st = fmt.Sprint(*r.Status)
	}
	return fmt.Sprintf("%s %s token=%v -> %s", r.Method, r.URL, r.Token, st)
}

// runCloudInit crawls the IMDS at url with cloud-init's EC2 datasource
// (Debian's cloud-init, run by /usr/bin/python3). platform "aws" uses the
// IMDSv2 token flow; "unknown" uses IMDSv1.
func runCloudInit(t *testing.T, url, platform string, maxWait int) cloudInitResult {
	t.Helper()
	py := testenv.Python(t, "cloudinit.sources.DataSourceEc2", "/usr/bin/python3")
	script, err := filepath.Abs("testdata/cloudinit_ec2.py")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + envOr("PATH", "/usr/bin:/bin"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
	stdout, stderr, err := runCmd(t.Context(), env, py, script,
		"--url", url, "--tmp", t.TempDir(), "--platform", platform,
		"--max-wait", fmt.Sprint(maxWait), "--timeout", "5")
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", py, script, err, stderr)
	}
	var r cloudInitResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("cloudinit_ec2.py output: %v\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cloud-init log:\n%s", stderr)
		}
	})
	return r
}

// cloud-init on AWS (platform forced) crawls an instance that requires
// tokens: one PUT for a 6 h token, then every GET carries it.
func TestCloudInitIMDSv2(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{}))
	r := runCloudInit(t, s.URL, "aws", 20)
	if !r.OK {
		t.Fatalf("cloud-init found no datasource; requests:\n%s", requestList(r.Requests))
	}

	if got := strPtr(r.Address); got != s.URL {
		t.Errorf("metadata address = %s, want %s", got, s.URL)
	}
	if got := strPtr(r.APIVersion); got != "2021-03-23" {
		t.Errorf("metadata API version = %s, want 2021-03-23 (the newest cloud-init asks for)", got)
	}
	if r.InstanceID != webInstanceID {
		t.Errorf("get_instance_id() = %q, want %q", r.InstanceID, webInstanceID)
	}
	if r.Region != webRegion {
		t.Errorf("region = %q, want %q", r.Region, webRegion)
	}

	ud, err := base64.StdEncoding.DecodeString(r.UserDataB64)
	if err != nil {
		t.Fatal(err)
	}
	if string(ud) != webUserData {
		t.Errorf("user-data = %q, want %q", ud, webUserData)
	}

	md := r.Metadata
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"instance-id"}, webInstanceID},
		{[]string{"ami-id"}, webAMI},
		{[]string{"local-ipv4"}, webLocalIPv4},
		{[]string{"mac"}, webMAC},
		{[]string{"placement", "availability-zone"}, webAZ},
		{[]string{"public-keys"}, map[string]any{webKeyName: webKey}},
		{[]string{"tags", "instance"}, map[string]any{"Name": "web-1", "Env": "prod"}},
		{[]string{"network", "interfaces", "macs", webMAC, "local-ipv4s"}, webLocalIPv4},
	} {
		got, ok := lookup(md, c.path...)
		if !ok {
			t.Errorf("meta-data %s missing", strings.Join(c.path, "/"))
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("meta-data %s (-want +got):\n%s", strings.Join(c.path, "/"), diff)
		}
	}
	if _, ok := lookup(md, "iam", "security-credentials"); ok {
		t.Error("meta-data has iam/security-credentials; cloud-init must not crawl credentials")
	}

	for key, want := range map[string]string{
		"instanceId":       webInstanceID,
		"accountId":        webAccountID,
		"region":           webRegion,
		"availabilityZone": webAZ,
		"imageId":          webAMI,
		"privateIp":        webLocalIPv4,
	} {
		if got := r.Identity[key]; got != want {
			t.Errorf("identity document %s = %v, want %s", key, got, want)
		}
	}

	// The token flow: first a PUT for a 21600 s token, then only GETs with
	// it, each answered 200 (a directory fetched without a slash may be
	// redirected).
	reqs := r.Requests
	if len(reqs) == 0 {
		t.Fatal("cloud-init sent no requests")
	}
	first := reqs[0]
	if first.Method != http.MethodPut || first.URL != s.URL+"/latest/api/token" || strPtr(first.TTL) != "21600" || intPtr(first.Status) != http.StatusOK {
		t.Errorf("first request = %v ttl=%s, want PUT %s/latest/api/token with TTL 21600 answered 200", first, strPtr(first.TTL), s.URL)
	}
	for _, q := range reqs[1:] {
		switch {
		case q.Method != http.MethodGet:
			t.Errorf("%v: want only GETs after the token (no 401 made it re-PUT)", q)
		case !q.Token:
			t.Errorf("%v: GET without the token", q)
		case intPtr(q.Status) == http.StatusOK:
		case intPtr(q.Status) == http.StatusMovedPermanently && !strings.HasSuffix(q.URL, "/"):
		default:
			t.Errorf("%v: want 200", q)
		}
	}
}

// On an unknown platform cloud-init uses IMDSv1: no PUT, no token.
func TestCloudInitIMDSv1(t *testing.T) {
	t.Parallel()
	t.Run("tokens optional", func(t *testing.T) {
		s := startServer(t, webConfig(t, webOptions{HTTPTokens: "optional"}))
		r := runCloudInit(t, s.URL, "unknown", 20)
		if !r.OK {
			t.Fatalf("cloud-init found no datasource; requests:\n%s", requestList(r.Requests))
		}
		if got, _ := lookup(r.Metadata, "instance-id"); got != webInstanceID {
			t.Errorf("meta-data instance-id = %v, want %s", got, webInstanceID)
		}
		ud, _ := base64.StdEncoding.DecodeString(r.UserDataB64)
		if string(ud) != webUserData {
			t.Errorf("user-data = %q, want %q", ud, webUserData)
		}
		for _, q := range r.Requests {
			if q.Method != http.MethodGet || q.Token {
				t.Errorf("%v: want IMDSv1 GETs only", q)
			}
		}
	})

	// With tokens required every IMDSv1 GET gets 401, and cloud-init gives
	// up after max_wait.
	t.Run("tokens required", func(t *testing.T) {
		s := startServer(t, webConfig(t, webOptions{}))
		r := runCloudInit(t, s.URL, "unknown", 2)
		if r.OK {
			t.Fatalf("cloud-init found a datasource with IMDSv1 against http-tokens required, want none")
		}
		if len(r.Requests) == 0 {
			t.Fatal("cloud-init sent no requests")
		}
		for _, q := range r.Requests {
			if q.Method != http.MethodGet || intPtr(q.Status) != http.StatusUnauthorized {
				t.Errorf("%v: want a GET answered 401", q)
			}
		}
	})
}

// With the HTTP endpoint disabled, the token PUT gets 403, which cloud-init
// on AWS reads as "IMDS disabled": it gives up at once, with no GET.
func TestCloudInitEndpointDisabled(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{HTTPEndpoint: "disabled"}))
	r := runCloudInit(t, s.URL, "aws", 20)
	if r.OK {
		t.Fatal("cloud-init found a datasource with the endpoint disabled, want none")
	}
	want := []string{"PUT " + s.URL + "/latest/api/token token=false -> 403"}
	var got []string
	for _, q := range r.Requests {
		got = append(got, q.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func lookup(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func requestList(reqs []cloudInitRequest) string {
	var b strings.Builder
	for _, q := range reqs {
		b.WriteString("  " + q.String() + "\n")
	}
	return b.String()
}

func strPtr(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

func intPtr(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
