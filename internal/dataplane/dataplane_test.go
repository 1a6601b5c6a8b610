package dataplane

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/token"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	tokenInstance = "192.0.2.10" // http-tokens required, role, tags, keys
	spotInstance  = "192.0.2.20" // optional tokens, spot and events, no role
	offInstance   = "192.0.2.30" // http-endpoint disabled
)

type fixture struct {
	h     *Handler
	clock *time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cfg, err := config.Load("testdata/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &fixture{clock: &now}
	clock := func() time.Time { return *f.clock }
	creds := credentials.NewManager(nil, clock)
	if err := creds.Update(cfg.Roles); err != nil {
		t.Fatal(err)
	}
	snap, err := fleet.FromConfig(cfg, clock, creds)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := token.NewRing([]token.Key{{ID: 1, Secret: bytes.Repeat([]byte{1}, 32)}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	f.h = New(fleet.New(snap), ring, Options{Now: clock})
	return f
}

// do sends one request from src and returns the response.
func (f *fixture) do(t *testing.T, method, src, path string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, "http://169.254.169.254"+path, nil)
	r.RemoteAddr = net.JoinHostPort(src, "40000")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w.Result()
}

func (f *fixture) token(t *testing.T, src string) string {
	t.Helper()
	res := f.do(t, "PUT", src, "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "21600")
	if res.StatusCode != 200 {
		t.Fatalf("token PUT: status %d", res.StatusCode)
	}
	return body(t, res)
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestMetadataBodies(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, tokenInstance)
	for _, tc := range []struct {
		name, src, path string
		want            string // exact body, or "" to compare with a golden file
		contentType     string
	}{
		{"versions", tokenInstance, "/", "", "text/plain"},
		{"version root", tokenInstance, "/latest/", "dynamic\nmeta-data\nuser-data", "text/plain"},
		{"version root without slash", tokenInstance, "/latest", "dynamic\nmeta-data\nuser-data", "text/plain"},
		{"meta-data", tokenInstance, "/latest/meta-data/", "", "text/plain"},
		{"meta-data old version", tokenInstance, "/2009-04-04/meta-data/instance-id", "i-0a1b2c3d4e5f60718", "text/plain"},
		{"leaf with slash", tokenInstance, "/latest/meta-data/placement/availability-zone/", "ap-northeast-1a", "text/plain"},
		{"dir without slash", tokenInstance, "/latest/meta-data/placement", "availability-zone\nregion", "text/plain"},
		{"region", tokenInstance, "/latest/meta-data/placement/region", "ap-northeast-1", "text/plain"},
		// The static role names no account: the extended document carries the instance's.
		{"iam", tokenInstance, "/latest/meta-data/iam/", "info\nsecurity-credentials/\nsecurity-credentials-extended/", "text/plain"},
		{"role list", tokenInstance, "/latest/meta-data/iam/security-credentials/", "bedrock-ui-ec2-role", "text/plain"},
		{"credentials", tokenInstance, "/latest/meta-data/iam/security-credentials/bedrock-ui-ec2-role", "", "text/plain"},
		{"credentials extended", tokenInstance, "/latest/meta-data/iam/security-credentials-extended/bedrock-ui-ec2-role", "", "text/plain"},
		{"iam info", tokenInstance, "/latest/meta-data/iam/info", "", "text/plain"},
		{"public keys", tokenInstance, "/latest/meta-data/public-keys/", "0=my-key", "text/plain"},
		{"public key dir", tokenInstance, "/latest/meta-data/public-keys/0/", "openssh-key", "text/plain"},
		{"public key", tokenInstance, "/latest/meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7x user@host", "text/plain"},
		{"tags", tokenInstance, "/latest/meta-data/tags/instance", "Env\nName", "text/plain"},
		{"tag", tokenInstance, "/latest/meta-data/tags/instance/Name", "web-1", "text/plain"},
		{"user data", tokenInstance, "/latest/user-data", "#!/bin/bash\necho hello\n", "application/octet-stream"},
		{"identity document", tokenInstance, "/latest/dynamic/instance-identity/document", "", "text/plain"},
		{"dynamic", tokenInstance, "/latest/dynamic/", "fws/\ninstance-identity/", "text/plain"},
		{"mac dir", tokenInstance, "/latest/meta-data/network/interfaces/macs/0e:12:34:56:78:9a/", "", "text/plain"},
		{"public hostname", tokenInstance, "/latest/meta-data/public-hostname", "ec2-203-0-113-10.ap-northeast-1.compute.amazonaws.com", "text/plain"},
		{"spot meta-data", spotInstance, "/latest/meta-data/", "", "text/plain"},
		{"spot action", spotInstance, "/latest/meta-data/spot/instance-action", `{"action": "terminate", "time": "2026-01-02T04:00:00Z"}`, "text/plain"},
		{"termination time", spotInstance, "/latest/meta-data/spot/termination-time", "2026-01-02T04:00:00Z", "text/plain"},
		{"rebalance", spotInstance, "/latest/meta-data/events/recommendations/rebalance", `{"noticeTime": "2026-01-02T03:50:00Z"}`, "text/plain"},
		{"scheduled events", spotInstance, "/latest/meta-data/events/maintenance/scheduled", "", "text/plain"},
		{"event history", spotInstance, "/latest/meta-data/events/maintenance/history", "", "text/plain"},
		{"no events", tokenInstance, "/latest/meta-data/events/maintenance/scheduled", "[]", "text/plain"},
		{"life cycle", spotInstance, "/latest/meta-data/instance-life-cycle", "spot", "text/plain"},
		{"graviton document", spotInstance, "/latest/dynamic/instance-identity/document", "", "text/plain"},
		{"hostname us-east-1", spotInstance, "/latest/meta-data/hostname", "", "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.src == tokenInstance {
				hdr = []string{"X-aws-ec2-metadata-token", tok}
			}
			res := f.do(t, "GET", tc.src, tc.path, hdr...)
			got := body(t, res)
			if res.StatusCode != 200 {
				t.Fatalf("status %d, want 200; body %q", res.StatusCode, got)
			}
			if ct := res.Header.Get("Content-Type"); ct != tc.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tc.contentType)
			}
			if tc.want != "" {
				if got != tc.want {
					t.Errorf("body %q, want %q", got, tc.want)
				}
				return
			}
			golden(t, strings.ReplaceAll(tc.name, " ", "-"), got)
		})
	}
}

func TestAbsentCategories(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{
		"/latest/meta-data/iam/",
		"/latest/meta-data/iam/security-credentials/",
		"/latest/meta-data/public-keys/",
		"/latest/meta-data/tags/instance/",
		"/latest/meta-data/public-ipv4",
		"/latest/user-data",
		"/latest/meta-data/nope",
		"/latest/meta-data//ami-id",
		"/latest/meta-data/ami-id/x",
		"/2099-01-01/meta-data/",
		"/latest/meta10-data/",
		"/latest/api",
		"/latest/api/",
	} {
		t.Run(path, func(t *testing.T) {
			res := f.do(t, "GET", spotInstance, path)
			got := body(t, res)
			if res.StatusCode != 404 {
				t.Fatalf("status %d, want 404", res.StatusCode)
			}
			if res.Header.Get("Content-Type") != "text/html" || !strings.Contains(got, "<title>404 - Not Found</title>") {
				t.Errorf("want EC2's 404 page, got %q %q", res.Header.Get("Content-Type"), got)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	f := newFixture(t)
	res := f.do(t, "GET", spotInstance, "/latest/meta-data/instance-id")
	want := map[string]string{
		"Server":         "EC2ws",
		"Connection":     "close",
		"Content-Type":   "text/plain",
		"Accept-Ranges":  "none",
		"Content-Length": "19",
		"Last-Modified":  "Fri, 02 Jan 2026 03:04:05 GMT",
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if v := res.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"); v != "" {
		t.Errorf("IMDSv1 response carries the TTL header %q", v)
	}

	res = f.do(t, "HEAD", spotInstance, "/latest/meta-data/instance-id")
	if res.StatusCode != 200 || res.Header.Get("Content-Length") != "19" {
		t.Errorf("HEAD: %d, Content-Length %q; want 200, 19", res.StatusCode, res.Header.Get("Content-Length"))
	}
}

func TestCredentialsRedirect(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, tokenInstance)
	res := f.do(t, "GET", tokenInstance, "/latest/meta-data/iam/security-credentials", "X-aws-ec2-metadata-token", tok)
	if res.StatusCode != 301 {
		t.Fatalf("status %d, want 301", res.StatusCode)
	}
	if got, want := res.Header.Get("Location"), "http://169.254.169.254/latest/meta-data/iam/security-credentials/"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if res.Header.Get("Content-Length") != "0" {
		t.Errorf("Content-Length %q, want 0", res.Header.Get("Content-Length"))
	}
}

func TestTokens(t *testing.T) {
	const ttlHdr = "X-aws-ec2-metadata-token-ttl-seconds"
	f := newFixture(t)

	t.Run("issue", func(t *testing.T) {
		res := f.do(t, "PUT", tokenInstance, "/latest/api/token", ttlHdr, "300")
		tok := body(t, res)
		if res.StatusCode != 200 || len(tok) != 56 {
			t.Fatalf("status %d, token %q; want 200 and 56 characters", res.StatusCode, tok)
		}
		if got := res.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"); got != "300" {
			t.Errorf("TTL header %q, want 300", got)
		}
	})

	for _, tc := range []struct {
		name string
		path string
		hdr  []string
		want int
	}{
		{"ttl 0", "/latest/api/token", []string{ttlHdr, "0"}, 400},
		{"ttl 21601", "/latest/api/token", []string{ttlHdr, "21601"}, 400},
		{"ttl 21600", "/latest/api/token", []string{ttlHdr, "21600"}, 200},
		{"ttl 1", "/latest/api/token", []string{ttlHdr, "1"}, 200},
		{"ttl missing", "/latest/api/token", nil, 400},
		{"ttl empty", "/latest/api/token", []string{ttlHdr, ""}, 400},
		{"ttl not a number", "/latest/api/token", []string{ttlHdr, "abc"}, 400},
		{"ttl signed", "/latest/api/token", []string{ttlHdr, "+10"}, 400},
		{"ttl negative", "/latest/api/token", []string{ttlHdr, "-1"}, 400},
		{"ttl huge", "/latest/api/token", []string{ttlHdr, "99999999999999999999"}, 400},
		{"ttl twice", "/latest/api/token", []string{ttlHdr, "10", ttlHdr, "20"}, 400},
		{"ttl other case", "/latest/api/token", []string{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "60"}, 200},
		{"forwarded", "/latest/api/token", []string{ttlHdr, "60", "X-Forwarded-For", "203.0.113.9"}, 403},
		{"trailing slash", "/latest/api/token/", []string{ttlHdr, "60"}, 403},
		{"version path", "/2021-03-23/api/token", []string{ttlHdr, "60"}, 403},
		{"metadata path", "/latest/meta-data/", []string{ttlHdr, "60"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(t, "PUT", tokenInstance, tc.path, tc.hdr...)
			if res.StatusCode != tc.want {
				t.Errorf("status %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}

func TestAccess(t *testing.T) {
	const tokHdr = "X-aws-ec2-metadata-token"
	f := newFixture(t)
	tok := f.token(t, tokenInstance)
	spotTok := f.token(t, spotInstance)
	expired := func() string {
		res := f.do(t, "PUT", tokenInstance, "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "1")
		return body(t, res)
	}()
	for _, tc := range []struct {
		name string
		src  string
		hdr  []string
		want int
	}{
		{"required, no token", tokenInstance, nil, 401},
		{"required, valid token", tokenInstance, []string{tokHdr, tok}, 200},
		{"required, token of another instance", tokenInstance, []string{tokHdr, spotTok}, 401},
		{"required, forged token", tokenInstance, []string{tokHdr, strings.Repeat("A", 56)}, 401},
		{"required, empty token", tokenInstance, []string{tokHdr, ""}, 401},
		{"required, token twice", tokenInstance, []string{tokHdr, tok, tokHdr, tok}, 401},
		{"token and forwarded", tokenInstance, []string{tokHdr, tok, "X-Forwarded-For", "198.51.100.1"}, 403},
		{"optional, no token", spotInstance, nil, 200},
		{"optional, valid token", spotInstance, []string{tokHdr, spotTok}, 200},
		{"optional, invalid token", spotInstance, []string{tokHdr, tok}, 401},
		{"disabled endpoint", offInstance, nil, 403},
		{"unknown caller", "198.51.100.77", nil, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(t, "GET", tc.src, "/latest/meta-data/instance-id", tc.hdr...)
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
			if tc.want == 401 && !strings.Contains(body(t, res), "401 - Unauthorized") {
				t.Errorf("401 without EC2's page")
			}
		})
	}

	t.Run("expired token", func(t *testing.T) {
		*f.clock = f.clock.Add(time.Second)
		res := f.do(t, "GET", tokenInstance, "/latest/meta-data/instance-id", tokHdr, expired)
		if res.StatusCode != 401 {
			t.Errorf("status %d, want 401", res.StatusCode)
		}
	})

	t.Run("remaining TTL", func(t *testing.T) {
		*f.clock = f.clock.Add(24 * time.Second) // 25s after issue
		res := f.do(t, "GET", tokenInstance, "/latest/meta-data/instance-id", tokHdr, tok)
		if got := res.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"); got != "21575" {
			t.Errorf("TTL header %q, want 21575", got)
		}
	})

	t.Run("disabled refuses token PUT", func(t *testing.T) {
		res := f.do(t, "PUT", offInstance, "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60")
		if res.StatusCode != 403 {
			t.Errorf("status %d, want 403", res.StatusCode)
		}
	})
}

// rawServer runs the handler on a real loopback listener, for what only shows
// on the wire (reason phrases, dropped connections).
func rawServer(t *testing.T, f *fixture, remap string) string {
	t.Helper()
	// Every caller on loopback is mapped to one instance of the fixture.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = net.JoinHostPort(remap, "40000")
		f.h.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(bufio.NewReader(c))
	return string(b)
}

func TestWireMethodNotAllowed(t *testing.T) {
	f := newFixture(t)
	addr := rawServer(t, f, spotInstance)
	dateRe := regexp.MustCompile(`Date: [^\r]+`)
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/latest/api/token", "HTTP/1.1 405 Not Allowed\r\nAllow: OPTIONS, PUT\r\nContent-Length: 0\r\nContent-Type: text/plain\r\nDate: X\r\nServer: EC2ws\r\nConnection: close\r\n\r\n"},
		{"POST", "/latest/api/token", "HTTP/1.1 405 Not Allowed\r\nAllow: OPTIONS, PUT\r\nContent-Length: 0\r\nContent-Type: text/plain\r\nDate: X\r\nServer: EC2ws\r\nConnection: close\r\n\r\n"},
		{"DELETE", "/latest/meta-data/", "HTTP/1.1 405 Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\nContent-Type: text/plain\r\nDate: X\r\nServer: EC2ws\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			got := rawRequest(t, addr, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: 169.254.169.254\r\nContent-Length: 0\r\n\r\n")
			got = dateRe.ReplaceAllString(got, "Date: X")
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	t.Run("OPTIONS token", func(t *testing.T) {
		got := rawRequest(t, addr, "OPTIONS /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
		for _, want := range []string{"HTTP/1.1 200 OK\r\n", "Allow: OPTIONS, PUT\r\n", "Content-Length: 0\r\n", "Server: EC2ws\r\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("response %q lacks %q", got, want)
			}
		}
	})
}

func TestIPv6EndpointDisabled(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = net.JoinHostPort(spotInstance, "40000") // IPv6 not enabled
		f.h.ServeHTTP(w, r)
	})
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h, ConnContext: ConnContext}}
	srv.Start()
	t.Cleanup(srv.Close)
	got := rawRequest(t, ln.Addr().String(), "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
	if got != "" {
		t.Errorf("IPv6 endpoint answered an instance without IPv6: %q", got)
	}
}

// TestCompatibilitySettings covers the behaviours AWS does not document,
// which the configuration can switch.
func TestCompatibilitySettings(t *testing.T) {
	cfg, err := config.Load("testdata/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DirectoryWithoutSlash = "redirect"
	cfg.InvalidTokenWhenOptional = "v1"
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	creds := credentials.NewManager(nil, clock)
	if err := creds.Update(cfg.Roles); err != nil {
		t.Fatal(err)
	}
	snap, err := fleet.FromConfig(cfg, clock, creds)
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := token.NewRing([]token.Key{{ID: 1, Secret: bytes.Repeat([]byte{1}, 32)}}, clock)
	f := &fixture{h: New(fleet.New(snap), ring, Options{Now: clock}), clock: &now}

	res := f.do(t, "GET", spotInstance, "/latest/meta-data/placement")
	if res.StatusCode != 301 || res.Header.Get("Location") != "http://169.254.169.254/latest/meta-data/placement/" {
		t.Errorf("directory without slash: %d %q, want 301 to the slash", res.StatusCode, res.Header.Get("Location"))
	}
	// An invalid token under optional tokens is served as IMDSv1...
	res = f.do(t, "GET", spotInstance, "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", strings.Repeat("A", 56))
	if res.StatusCode != 200 || res.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") != "" {
		t.Errorf("invalid token, optional: %d, TTL header %q; want 200 without TTL", res.StatusCode, res.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
	}
	// ...and still refused where tokens are required.
	res = f.do(t, "GET", tokenInstance, "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", strings.Repeat("A", 56))
	if res.StatusCode != 401 {
		t.Errorf("invalid token, required: %d, want 401", res.StatusCode)
	}
}

func TestConfiguredVersions(t *testing.T) {
	f := newFixture(t)
	ring, _ := token.NewRing([]token.Key{{ID: 1, Secret: bytes.Repeat([]byte{1}, 32)}}, nil)
	f.h = New(f.h.fleet, ring, Options{Versions: []string{"2009-04-04", "latest"}, EmptyErrorBodies: true})
	if got := body(t, f.do(t, "GET", spotInstance, "/")); got != "2009-04-04\nlatest" {
		t.Errorf("versions %q", got)
	}
	if res := f.do(t, "GET", spotInstance, "/2021-03-23/meta-data/instance-id"); res.StatusCode != 404 {
		t.Errorf("unlisted version: %d, want 404", res.StatusCode)
	}
	res := f.do(t, "GET", tokenInstance, "/latest/meta-data/instance-id")
	if b := body(t, res); res.StatusCode != 401 || b != "" || res.Header.Get("Content-Length") != "0" {
		t.Errorf("401 with error-body empty: %d %q", res.StatusCode, b)
	}
}
