package doctor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/imdsclient"
)

// now is the local clock of every test.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testID    = "i-0123456789abcdef0"
	testToken = "AQAEAtest-token=="
)

// instance is a fake IMDS with one instance, answering as EC2 does.
type instance struct {
	disabled   bool
	optional   bool   // http-tokens optional
	role       string // "" for none
	creds      string // the credentials document; "" builds one from expires
	expires    time.Time
	zone       string
	region     string // placement/region and the identity document
	serverTime time.Time
	noTTL      bool // the token answer lacks its TTL header
}

func newInstance() *instance {
	return &instance{role: "app-role", expires: now.Add(6 * time.Hour), zone: "us-east-1a", region: "us-east-1", serverTime: now}
}

func (in *instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", "EC2ws")
	h.Set("Date", in.serverTime.Format(http.TimeFormat))
	if in.disabled {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if r.Method == http.MethodPut && r.URL.Path == imdsclient.TokenPath {
		if !in.noTTL {
			h.Set(imdsclient.HeaderTTL, r.Header.Get(imdsclient.HeaderTTL))
		}
		io.WriteString(w, testToken)
		return
	}
	tok, v2 := r.Header[imdsclient.HeaderToken]
	if (v2 && tok[0] != testToken) || (!v2 && !in.optional) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	files := map[string]string{
		"/latest/meta-data/":                            "ami-id\ninstance-id\nplacement/",
		"/latest/meta-data/instance-id":                 testID,
		"/latest/meta-data/placement/availability-zone": in.zone,
		"/latest/meta-data/placement/region":            in.region,
		"/latest/dynamic/instance-identity/document": fmt.Sprintf(`{"availabilityZone" : %q, "instanceId" : %q, "region" : %q}`,
			in.zone, testID, in.region),
	}
	if in.role != "" {
		creds := in.creds
		if creds == "" {
			creds = fmt.Sprintf(`{"Code" : "Success", "LastUpdated" : "2026-03-01T11:00:00Z", "Type" : "AWS-HMAC", "AccessKeyId" : "ASIAEXAMPLE", "SecretAccessKey" : "secret", "Token" : "token", "Expiration" : %q}`,
				in.expires.Format(time.RFC3339))
		}
		files["/latest/meta-data/iam/security-credentials/"] = in.role
		files["/latest/meta-data/iam/security-credentials/"+in.role] = creds
		files["/latest/meta-data/iam/info"] = `{"Code" : "Success", "InstanceProfileArn" : "arn:aws:iam::123456789012:instance-profile/app"}`
	}
	body, ok := files[r.URL.Path]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	io.WriteString(w, body)
}

// network carries requests to the fake endpoints by host, or fails them.
type network struct {
	hosts   map[string]http.Handler // by host name: 169.254.169.254, fd00:ec2::254
	fail    map[string]error        // every request to the host fails so
	failPUT map[string]error        // token requests to the host fail so
}

func (n *network) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	if err := n.fail[host]; err != nil {
		return nil, err
	}
	if err := n.failPUT[host]; err != nil && r.Method == http.MethodPut {
		return nil, err
	}
	h := n.hosts[host]
	if h == nil {
		return nil, dialErr(syscall.ENETUNREACH)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func dialErr(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
}

// timeout is a transport's error when no answer comes.
type timeout struct{}

func (timeout) Error() string   { return "net/http: timeout awaiting response headers" }
func (timeout) Timeout() bool   { return true }
func (timeout) Temporary() bool { return true }

// world is everything a test sets up for Run.
type world struct {
	v4, v6  *instance // nil: no endpoint
	net     network
	env     map[string]string
	files   map[string]string
	otherNS bool // a network namespace other than PID 1's
	opts    Options
}

func newWorld() *world {
	return &world{
		v4:    newInstance(),
		env:   map[string]string{"HOME": "/home/app", "AWS_REGION": "us-east-1"},
		files: map[string]string{},
		net:   network{hosts: map[string]http.Handler{}, fail: map[string]error{}, failPUT: map[string]error{}},
	}
}

func (w *world) run(t *testing.T) (*Report, map[string]Check) {
	t.Helper()
	if w.v4 != nil {
		w.net.hosts["169.254.169.254"] = w.v4
	}
	if w.v6 != nil {
		w.net.hosts["fd00:ec2::254"] = w.v6
	}
	o := w.opts
	o.Transport = &w.net
	o.Now = func() time.Time { return now }
	o.LookupEnv = func(k string) (string, bool) { v, ok := w.env[k]; return v, ok }
	o.ReadFile = func(p string) ([]byte, error) {
		if s, ok := w.files[p]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	o.Readlink = func(p string) (string, error) {
		if w.otherNS && p == "/proc/self/ns/net" {
			return "net:[4026532000]", nil
		}
		return "net:[4026531840]", nil
	}
	rep := Run(t.Context(), o)
	byID := map[string]Check{}
	for _, c := range rep.Checks {
		byID[c.ID] = c
	}
	if t.Failed() || testing.Verbose() {
		var b bytes.Buffer
		rep.WriteText(&b)
		t.Logf("report:\n%s", b.String())
	}
	return rep, byID
}

func statuses(rep *Report) map[string]Status {
	m := map[string]Status{}
	for _, c := range rep.Checks {
		m[c.ID] = c.Status
	}
	return m
}

// want checks that the check id has status and that its message and fix
// contain the given strings.
func want(t *testing.T, checks map[string]Check, id string, status Status, msg, fix string) {
	t.Helper()
	c, ok := checks[id]
	if !ok {
		t.Errorf("no check %s", id)
		return
	}
	if c.Status != status {
		t.Errorf("%s: got %s (%s), want %s", id, c.Status, c.Message, status)
	}
	if !strings.Contains(c.Message, msg) {
		t.Errorf("%s: message %q does not contain %q", id, c.Message, msg)
	}
	if !strings.Contains(c.Fix, fix) {
		t.Errorf("%s: fix %q does not contain %q", id, c.Fix, fix)
	}
	if fix == "" && c.Fix != "" && status == Pass {
		t.Errorf("%s: a passing check has a fix: %q", id, c.Fix)
	}
}

func TestAllPass(t *testing.T) {
	w := newWorld()
	w.v6 = w.v4
	rep, checks := w.run(t)
	wantStatuses := map[string]Status{
		"env-disabled": Pass, "env-endpoint": Pass, "env-proxy": Pass,
		"endpoint-ipv4": Pass, "endpoint-ipv6": Pass, "token": Pass, "hop-limit": Pass, "imdsv1": Pass,
		"role": Pass, "credentials": Pass, "clock": Pass, "region": Pass, "env-region": Pass, "env-credentials": Pass,
	}
	if diff := cmp.Diff(wantStatuses, statuses(rep)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if !rep.OK || rep.Endpoint != imdsclient.IPv4Endpoint || rep.Container.Detected {
		t.Errorf("got OK %v, endpoint %q, container %+v", rep.OK, rep.Endpoint, rep.Container)
	}
	want(t, checks, "token", Pass, "IMDSv2 token issued (TTL 21600s)", "")
	want(t, checks, "credentials", Pass, "valid until 2026-03-01T18:00:00Z (6h0m0s left), read with IMDSv2", "")
	want(t, checks, "region", Pass, "region us-east-1, availability zone us-east-1a, instance "+testID, "")
	want(t, checks, "role", Pass, "role app-role attached (instance profile arn:aws:iam::123456789012:instance-profile/app)", "")
}

func TestHopLimit(t *testing.T) {
	for _, optional := range []bool{true, false} {
		t.Run(fmt.Sprintf("optional=%v", optional), func(t *testing.T) {
			w := newWorld()
			w.v4.optional = optional
			w.net.failPUT["169.254.169.254"] = timeout{}
			w.files["/.dockerenv"] = ""
			rep, checks := w.run(t)
			if rep.OK {
				t.Error("report OK, want a failure")
			}
			if !rep.Container.Detected || rep.Container.Evidence != "/.dockerenv: Docker" {
				t.Errorf("container: got %+v", rep.Container)
			}
			want(t, checks, "endpoint-ipv4", Pass, "answers (token PUT no answer within 1s", "")
			want(t, checks, "token", Fail, "no answer within 1s", "")
			id := "<instance-id>"
			if optional {
				id = testID
			}
			want(t, checks, "hop-limit", Fail, "hop limit too low", "aws ec2 modify-instance-metadata-options --instance-id "+id+" --http-put-response-hop-limit 2 --http-endpoint enabled")
			want(t, checks, "hop-limit", Fail, "in a container (/.dockerenv: Docker)", "host networking")
			if optional {
				want(t, checks, "hop-limit", Fail, "fall back to IMDSv1", "")
				want(t, checks, "imdsv1", Warn, "SDKs here fall back to it because the token request fails", "--http-tokens required")
				want(t, checks, "role", Pass, "app-role", "")
				want(t, checks, "credentials", Pass, "read with IMDSv1", "")
			} else {
				want(t, checks, "hop-limit", Fail, "SDKs get no metadata", "")
				want(t, checks, "imdsv1", Fail, "token request fails here", "")
				want(t, checks, "role", Skip, "no metadata could be read", "")
			}
		})
	}
}

func TestHopLimitV1DisabledByEnv(t *testing.T) {
	w := newWorld()
	w.v4.optional = true
	w.env["AWS_EC2_METADATA_V1_DISABLED"] = "TRUE"
	w.net.failPUT["169.254.169.254"] = timeout{}
	_, checks := w.run(t)
	want(t, checks, "hop-limit", Fail, "AWS_EC2_METADATA_V1_DISABLED is true, so SDKs get nothing", "")
	want(t, checks, "imdsv1", Fail, "SDKs never fall back to IMDSv1", "unset AWS_EC2_METADATA_V1_DISABLED")
}

func TestEndpointUnreachable(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		msg     string
		failure string
	}{
		{"no route", dialErr(syscall.ENETUNREACH), "no route to 169.254.169.254", "no route"},
		{"refused", dialErr(syscall.ECONNREFUSED), "connection refused: nothing listens on 169.254.169.254", "connection refused"},
		{"connect timeout", &net.OpError{Op: "dial", Err: timeout{}}, "no answer to the connection", "connect timeout"},
		{"closed", io.EOF, "closes the connection without an answer", "closed without an answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			w.net.fail["169.254.169.254"] = tt.err
			w.net.fail["fd00:ec2::254"] = tt.err
			rep, checks := w.run(t)
			if rep.OK {
				t.Error("report OK, want a failure")
			}
			want(t, checks, "endpoint-ipv4", Fail, tt.msg, "run on an EC2 instance")
			if got := checks["endpoint-ipv4"].Data["failure"]; got != tt.failure {
				t.Errorf("data failure: got %v, want %q", got, tt.failure)
			}
			want(t, checks, "endpoint-ipv6", Skip, "SDKs here use http://169.254.169.254", "")
			for _, id := range []string{"token", "hop-limit", "imdsv1", "role", "credentials", "clock", "region"} {
				if s := checks[id].Status; s != Skip {
					t.Errorf("%s: got %s, want skip", id, s)
				}
			}
		})
	}
}

func TestEndpointFamilies(t *testing.T) {
	t.Run("IPv4 down, IPv6 up", func(t *testing.T) {
		w := newWorld()
		w.v6, w.v4 = w.v4, nil
		_, checks := w.run(t)
		want(t, checks, "endpoint-ipv4", Fail, "no route", "export AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6")
		want(t, checks, "endpoint-ipv6", Pass, "answers", "")
	})
	t.Run("IPv6 mode, IPv6 closed", func(t *testing.T) {
		w := newWorld()
		w.env["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "IPv6"
		w.net.fail["fd00:ec2::254"] = io.EOF
		rep, checks := w.run(t)
		if rep.Endpoint != imdsclient.IPv6Endpoint {
			t.Errorf("endpoint: got %s", rep.Endpoint)
		}
		want(t, checks, "env-endpoint", Pass, "SDKs use http://[fd00:ec2::254] (AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6)", "")
		want(t, checks, "endpoint-ipv6", Fail, "http-protocol-ipv6 is disabled", "--http-protocol-ipv6 enabled")
		want(t, checks, "endpoint-ipv4", Pass, "SDKs here use http://[fd00:ec2::254]", "")
		want(t, checks, "token", Skip, "see endpoint-ipv6", "")
	})
	t.Run("custom endpoint", func(t *testing.T) {
		w := newWorld()
		w.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:1338"
		w.net.hosts["127.0.0.1"] = w.v4
		w.v4 = nil
		rep, checks := w.run(t)
		if rep.Endpoint != "http://127.0.0.1:1338" || !rep.OK {
			t.Errorf("got endpoint %s, OK %v", rep.Endpoint, rep.OK)
		}
		want(t, checks, "endpoint", Pass, "http://127.0.0.1:1338 answers", "")
		want(t, checks, "endpoint-ipv4", Skip, "no route", "")
		want(t, checks, "token", Pass, "", "")
	})
	t.Run("flag overrides the environment", func(t *testing.T) {
		w := newWorld()
		w.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://10.9.9.9"
		w.opts.Endpoint = "http://169.254.169.254"
		rep, checks := w.run(t)
		if rep.Endpoint != imdsclient.IPv4Endpoint {
			t.Errorf("endpoint: got %s", rep.Endpoint)
		}
		want(t, checks, "env-endpoint", Pass, "SDKs use http://10.9.9.9 (AWS_EC2_METADATA_SERVICE_ENDPOINT); probing http://169.254.169.254 (--endpoint) instead", "")
	})
}

func TestDisabledEndpoint(t *testing.T) {
	w := newWorld()
	w.v4.disabled = true
	rep, checks := w.run(t)
	if rep.OK {
		t.Error("report OK, want a failure")
	}
	want(t, checks, "endpoint-ipv4", Fail, "answers 403 Forbidden: instance metadata is turned off", "aws ec2 modify-instance-metadata-options --instance-id <instance-id> --http-endpoint enabled")
	if got := checks["endpoint-ipv4"].Data["failure"]; got != "disabled" {
		t.Errorf("data failure: got %v, want disabled", got)
	}
	for _, id := range []string{"token", "hop-limit", "imdsv1", "role"} {
		if s := checks[id].Status; s != Skip {
			t.Errorf("%s: got %s, want skip", id, s)
		}
	}
}

func TestDisabledEndpointNitroID(t *testing.T) {
	w := newWorld()
	w.v4.disabled = true
	w.files["/sys/devices/virtual/dmi/id/board_asset_tag"] = "i-0fedcba9876543210\n"
	_, checks := w.run(t)
	want(t, checks, "endpoint-ipv4", Fail, "403", "--instance-id i-0fedcba9876543210 --http-endpoint enabled")
}

func TestIMDSv1(t *testing.T) {
	t.Run("no token, required", func(t *testing.T) {
		w := newWorld()
		w.opts.NoToken = true
		rep, checks := w.run(t)
		if rep.OK {
			t.Error("report OK, want a failure")
		}
		want(t, checks, "token", Skip, "--no-token", "")
		want(t, checks, "hop-limit", Skip, "--no-token", "")
		want(t, checks, "imdsv1", Fail, "got 401 Unauthorized", "boto3 1.12.6")
		want(t, checks, "imdsv1", Fail, "", "--http-tokens optional --http-endpoint enabled")
		if got := checks["imdsv1"].Data["http-tokens"]; got != "required" {
			t.Errorf("data http-tokens: got %v", got)
		}
		want(t, checks, "role", Skip, "", "")
	})
	t.Run("no token, optional", func(t *testing.T) {
		w := newWorld()
		w.v4.optional = true
		w.opts.NoToken = true
		rep, checks := w.run(t)
		if !rep.OK {
			t.Error("report failed, want OK")
		}
		want(t, checks, "imdsv1", Pass, "IMDSv1 is allowed", "")
		want(t, checks, "credentials", Pass, "read with IMDSv1", "")
	})
	t.Run("optional", func(t *testing.T) {
		w := newWorld()
		w.v4.optional = true
		rep, checks := w.run(t)
		if !rep.OK {
			t.Error("a warning failed the report")
		}
		want(t, checks, "imdsv1", Warn, "http-tokens optional", "aws ec2 modify-instance-metadata-options --instance-id "+testID+" --http-tokens required --http-endpoint enabled")
	})
	t.Run("bad AWS_EC2_METADATA_V1_DISABLED", func(t *testing.T) {
		w := newWorld()
		w.env["AWS_EC2_METADATA_V1_DISABLED"] = "yes"
		_, checks := w.run(t)
		want(t, checks, "imdsv1", Fail, `AWS_EC2_METADATA_V1_DISABLED="yes"`, "")
	})
}

func TestToken(t *testing.T) {
	w := newWorld()
	w.v4.noTTL = true
	_, checks := w.run(t)
	want(t, checks, "token", Fail, "no valid X-Aws-Ec2-Metadata-Token-Ttl-Seconds header", "")
	want(t, checks, "hop-limit", Skip, "", "")
}

func TestRoleAndCredentials(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*instance)
		id     string
		status Status
		msg    string
		fix    string
	}{
		{"no role", func(in *instance) { in.role = "" },
			"role", Fail, "no IAM role", "aws ec2 associate-iam-instance-profile --instance-id " + testID + " --iam-instance-profile Name=PROFILE"},
		{"expired", func(in *instance) { in.expires = now.Add(-time.Minute) },
			"credentials", Fail, "expired at 2026-03-01T11:59:00Z, 1m0s ago", ""},
		{"about to expire", func(in *instance) { in.expires = now.Add(10 * time.Minute) },
			"credentials", Warn, "expire in 10m0s", ""},
		{"trust policy", func(in *instance) {
			in.creds = `{"Code" : "AssumeRoleUnauthorizedAccess", "Message" : "EC2 cannot assume the role app-role."}`
		}, "credentials", Fail, `Code "AssumeRoleUnauthorizedAccess"`, "ec2.amazonaws.com"},
		{"incomplete", func(in *instance) { in.creds = `{"Code" : "Success", "Expiration" : "2026-03-01T18:00:00Z"}` },
			"credentials", Fail, "lack AccessKeyId, SecretAccessKey, Token", ""},
		{"long-term keys", func(in *instance) {
			in.creds = `{"Code" : "Success", "AccessKeyId" : "AKIA", "SecretAccessKey" : "s", "Token" : "", "Expiration" : "2026-03-01T18:00:00Z"}`
		}, "credentials", Pass, "no session token: long-term keys", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			tt.setup(w.v4)
			_, checks := w.run(t)
			want(t, checks, tt.id, tt.status, tt.msg, tt.fix)
			if tt.name == "no role" {
				want(t, checks, "credentials", Skip, "no role", "")
			}
		})
	}
}

func TestClock(t *testing.T) {
	tests := []struct {
		offset time.Duration // server clock minus local clock
		status Status
		msg    string
	}{
		{0, Pass, "within 1s"},
		{-90 * time.Second, Warn, "1m30s ahead of"},
		{10 * time.Minute, Fail, "10m0s behind"},
	}
	for _, tt := range tests {
		t.Run(tt.offset.String(), func(t *testing.T) {
			w := newWorld()
			w.v4.serverTime = now.Add(tt.offset)
			// Keep the credentials valid by the local clock.
			_, checks := w.run(t)
			want(t, checks, "clock", tt.status, tt.msg, "")
			if tt.status != Pass && !strings.Contains(checks["clock"].Fix, "169.254.169.123") {
				t.Errorf("clock fix: got %q", checks["clock"].Fix)
			}
		})
	}
}

func TestRegion(t *testing.T) {
	t.Run("local zone", func(t *testing.T) {
		w := newWorld()
		w.v4.zone, w.v4.region = "us-west-2-lax-1a", "us-west-2"
		w.env["AWS_REGION"] = "us-west-2"
		_, checks := w.run(t)
		want(t, checks, "region", Warn, "derive the region us-west-2-lax-1 from the zone us-west-2-lax-1a", "AWS_DEFAULT_REGION=us-west-2")
	})
	t.Run("environment differs", func(t *testing.T) {
		w := newWorld()
		w.env["AWS_REGION"] = "eu-west-1"
		_, checks := w.run(t)
		want(t, checks, "env-region", Warn, "AWS_REGION=eu-west-1 but the instance is in us-east-1", "export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1")
	})
	t.Run("not set", func(t *testing.T) {
		w := newWorld()
		delete(w.env, "AWS_REGION")
		_, checks := w.run(t)
		want(t, checks, "env-region", Warn, "the Go SDK (without config.WithEC2IMDSRegion)", "export AWS_REGION=us-east-1")
	})
	t.Run("profile region", func(t *testing.T) {
		w := newWorld()
		delete(w.env, "AWS_REGION")
		w.files["/home/app/.aws/config"] = "[default]\nregion = us-east-1\n"
		_, checks := w.run(t)
		want(t, checks, "env-region", Pass, "region = us-east-1 in profile default: the instance's region", "")
	})
	t.Run("none", func(t *testing.T) {
		w := newWorld()
		w.v4.zone, w.v4.region = "", ""
		_, checks := w.run(t)
		want(t, checks, "region", Fail, "IMDS gives no region", "export AWS_REGION=REGION")
	})
}

func TestEnvDisabled(t *testing.T) {
	w := newWorld()
	w.env["AWS_EC2_METADATA_DISABLED"] = "True"
	rep, checks := w.run(t)
	if rep.OK {
		t.Error("report OK, want a failure")
	}
	want(t, checks, "env-disabled", Fail, "SDKs send no IMDS request at all", "unset AWS_EC2_METADATA_DISABLED")
}

func TestEnvEndpoint(t *testing.T) {
	tests := []struct {
		env    map[string]string
		status Status
		msg    string
		fix    string
	}{
		{map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "dualstack"}, Fail, "want IPv4 or IPv6", "export AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv4"},
		{map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": "169.254.169.254"}, Fail, "is not an http:// or https:// URL", "export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://HOST[:PORT]"},
		{map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://169.254.169.254", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}, Warn, "overrides AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6", "unset one of"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			w := newWorld()
			for k, v := range tt.env {
				w.env[k] = v
			}
			rep, checks := w.run(t)
			want(t, checks, "env-endpoint", tt.status, tt.msg, tt.fix)
			// The rest is diagnosed on the default endpoint.
			if rep.Endpoint != imdsclient.IPv4Endpoint || checks["token"].Status != Pass {
				t.Errorf("got endpoint %s, token %s", rep.Endpoint, checks["token"].Status)
			}
		})
	}
}

func TestProxy(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		status Status
		msg    string
		fix    string
	}{
		{"none", nil, Pass, "no HTTP proxy variables", ""},
		{"HTTP_PROXY", map[string]string{"HTTP_PROXY": "http://10.0.0.1:3128"}, Fail,
			"the Go SDK and botocore (boto3, the AWS CLI) send IMDS requests to the proxy http://10.0.0.1:3128 (from HTTP_PROXY)",
			"export NO_PROXY=169.254.169.254,fd00:ec2::254,[fd00:ec2::254] no_proxy=169.254.169.254,fd00:ec2::254,[fd00:ec2::254]"},
		{"keeps NO_PROXY", map[string]string{"http_proxy": "proxy:3128", "NO_PROXY": "localhost,.internal"}, Fail,
			"to the proxy", "export NO_PROXY=localhost,.internal,169.254.169.254,fd00:ec2::254,[fd00:ec2::254]"},
		{"HTTPS_PROXY only", map[string]string{"HTTPS_PROXY": "http://10.0.0.1:3128"}, Pass,
			"HTTPS_PROXY set, and no proxy applies to 169.254.169.254", ""},
		{"NO_PROXY covers", map[string]string{"HTTP_PROXY": "http://10.0.0.1:3128", "NO_PROXY": "localhost, 169.254.169.254"}, Pass, "no proxy applies", ""},
		{"CIDR fools botocore", map[string]string{"HTTP_PROXY": "http://10.0.0.1:3128", "NO_PROXY": "169.254.0.0/16"}, Fail,
			"botocore (boto3, the AWS CLI) send", ""},
		{"lower-case no_proxy wins in botocore", map[string]string{"HTTP_PROXY": "http://p:3128", "NO_PROXY": "169.254.169.254", "no_proxy": "localhost"}, Fail,
			"botocore", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			for k, v := range tt.env {
				w.env[k] = v
			}
			_, checks := w.run(t)
			want(t, checks, "env-proxy", tt.status, tt.msg, tt.fix)
			// doctor itself never uses the proxy.
			want(t, checks, "token", Pass, "", "")
		})
	}
}

// TestBypass pins the NO_PROXY rules to what golang.org/x/net/http/httpproxy
// and Python 3.11's urllib.request.proxy_bypass answer for the IMDS
// addresses (measured with both).
func TestBypass(t *testing.T) {
	tests := []struct {
		noProxy                string
		goV4, goV6, pyV4, pyV6 bool // bypassed
	}{
		{"169.254.169.254", true, false, true, false},
		{"169.254.0.0/16", true, false, false, false},
		{"[fd00:ec2::254]", false, false, false, true},
		{"fd00:ec2::254", false, true, false, false},
		{"fd00:ec2::/32", false, true, false, false},
		{"169.254.169.254:80", true, false, false, false},
		{".169.254.169.254", false, false, true, false},
		{"*", true, true, true, true},
		{"", false, false, false, false},
	}
	v4, v6 := mustURL(t, imdsclient.IPv4Endpoint), mustURL(t, imdsclient.IPv6Endpoint)
	for _, tt := range tests {
		got := [4]bool{goBypass(v4, tt.noProxy), goBypass(v6, tt.noProxy), pythonBypass(v4.Host, tt.noProxy), pythonBypass(v6.Host, tt.noProxy)}
		if wantB := [4]bool{tt.goV4, tt.goV6, tt.pyV4, tt.pyV6}; got != wantB {
			t.Errorf("NO_PROXY=%q: got go v4/v6, python v4/v6 %v, want %v", tt.noProxy, got, wantB)
		}
	}
	if !goBypass(mustURL(t, "http://127.0.0.1:1338"), "") || pythonBypass("127.0.0.1:1338", "") {
		t.Error("loopback: the Go SDK bypasses proxies for it, botocore does not")
	}
}

func TestCredentialChain(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		files  map[string]string
		status Status
		msg    string
		fix    string
	}{
		{"clean", nil, nil, Pass, "nothing ahead of the instance role app-role", ""},
		{"static keys", map[string]string{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}, nil, Warn,
			"AWS_ACCESS_KEY_ID is set: SDKs use these static keys, not the instance role app-role", "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN"},
		{"container credentials", map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"}, nil, Warn,
			"container credentials", "unset AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"},
		{"web identity", map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/pod"}, nil, Warn,
			"assume arn:aws:iam::123456789012:role/pod with web identity", ""},
		{"missing profile", map[string]string{"AWS_PROFILE": "prod"}, nil, Fail,
			"AWS_PROFILE=prod names no profile", "unset AWS_PROFILE"},
		{"profile with keys", map[string]string{"AWS_PROFILE": "prod"},
			map[string]string{"/home/app/.aws/credentials": "[default]\naws_access_key_id = A\n[prod]\naws_access_key_id = AKIA\naws_secret_access_key = s\n"}, Warn,
			"profile prod has static keys (aws_access_key_id in /home/app/.aws/credentials)", "remove the keys"},
		{"default profile with keys", nil,
			map[string]string{"/home/app/.aws/credentials": "[default]\naws_access_key_id = A\n"}, Warn, "profile default has static keys", ""},
		{"profile assumes a role with the instance role", map[string]string{"AWS_PROFILE": "x"},
			map[string]string{"/home/app/.aws/config": "[profile x]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Ec2InstanceMetadata\n"}, Pass,
			"(AWS_PROFILE=x)", ""},
		{"profile with a credential process", map[string]string{"AWS_CONFIG_FILE": "/etc/aws.cfg"},
			map[string]string{"/etc/aws.cfg": "[default]\ncredential_process = /bin/creds\n"}, Warn, "sets credential_process (in /etc/aws.cfg)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			for k, v := range tt.env {
				w.env[k] = v
			}
			for k, v := range tt.files {
				w.files[k] = v
			}
			_, checks := w.run(t)
			want(t, checks, "env-credentials", tt.status, tt.msg, tt.fix)
		})
	}
}

func TestContainerDetection(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		env      map[string]string
		otherNS  bool
		evidence string
	}{
		{"none", nil, nil, false, ""},
		{"podman", map[string]string{"/run/.containerenv": ""}, nil, false, "/run/.containerenv: Podman"},
		{"cgroup v1", map[string]string{"/proc/1/cgroup": "12:pids:/kubepods/burstable/pod1\n"}, nil, false, "/proc/1/cgroup names kubepods"},
		{"kubernetes", nil, map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, false, "KUBERNETES_SERVICE_HOST: a Kubernetes pod"},
		{"network namespace", nil, nil, true, "a network namespace other than PID 1's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			w.files, w.otherNS = map[string]string{}, tt.otherNS
			for k, v := range tt.files {
				w.files[k] = v
			}
			for k, v := range tt.env {
				w.env[k] = v
			}
			rep, checks := w.run(t)
			if got := (Container{tt.evidence != "", tt.evidence}); rep.Container != got {
				t.Errorf("got %+v, want %+v", rep.Container, got)
			}
			if tt.evidence != "" {
				want(t, checks, "hop-limit", Pass, "in a container ("+tt.evidence+")", "")
			}
		})
	}
}

func TestWriteText(t *testing.T) {
	rep := &Report{Checks: []Check{
		{ID: "token", Status: Pass, Message: "IMDSv2 token issued (TTL 21600s)"},
		{ID: "hop-limit", Status: Fail, Message: "hop limit too low", Fix: "raise it"},
		{ID: "role", Status: Skip, Message: "no metadata"},
	}}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	wantText := "PASS  token      IMDSv2 token issued (TTL 21600s)\n" +
		"FAIL  hop-limit  hop limit too low. Fix: raise it\n" +
		"SKIP  role       no metadata\n" +
		"1 passed, 0 warnings, 1 failed, 1 skipped\n"
	if diff := cmp.Diff(wantText, b.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
}

func TestWriteJSON(t *testing.T) {
	w := newWorld()
	rep, _ := w.run(t)
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		OK        bool
		Endpoint  string
		Container struct{ Detected bool }
		Checks    []struct{ ID, Status, Message, Fix string }
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if !got.OK || got.Endpoint != imdsclient.IPv4Endpoint || len(got.Checks) != len(rep.Checks) || got.Checks[0].ID != "env-disabled" || got.Checks[0].Status != "pass" {
		t.Errorf("got %+v", got)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
