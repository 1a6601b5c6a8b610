package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"
)

// sent is one HTTP request a client made, as seen on the wire.
type sent struct {
	Method string
	Path   string
	Token  bool   // carried X-aws-ec2-metadata-token
	TTL    string // X-aws-ec2-metadata-token-ttl-seconds on the request
	Status int
}

// recorder is an imds.HTTPClient that records every request it sends.
type recorder struct {
	client *http.Client
	header http.Header // added to every request

	mu   sync.Mutex
	reqs []sent
}

// newRecorder sends from localIP (any loopback address if empty).
func newRecorder(localIP string) *recorder {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	return newRecorderDial(d.DialContext, 0)
}

// newRecorderDial opens its connections with dial, and gives up on a
// response whose headers take longer than headerTimeout (if not 0), as the
// SDK's own client does after 500 ms.
func newRecorderDial(dial dialFunc, headerTimeout time.Duration) *recorder {
	tr := &http.Transport{DialContext: dial, DisableKeepAlives: true, ResponseHeaderTimeout: headerTimeout}
	return &recorder{client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	s := sent{
		Method: req.Method,
		Path:   req.URL.Path,
		Token:  req.Header.Get("X-Aws-Ec2-Metadata-Token") != "",
		TTL:    req.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"),
	}
	resp, err := r.client.Do(req)
	if resp != nil {
		s.Status = resp.StatusCode
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) sent() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.reqs...)
}

// newIMDSClient is the SDK's IMDS client aimed at s through rec. fallback
// mirrors AWS_EC2_METADATA_V1_DISABLED: false means IMDSv1 is never used.
func newIMDSClient(s *server, rec *recorder, fallback bool) *imds.Client {
	o := imds.Options{Endpoint: s.URL, HTTPClient: rec}
	if !fallback {
		o.EnableFallback = aws.FalseTernary
	}
	return imds.New(o)
}

func getMetadata(ctx context.Context, c *imds.Client, path string) (string, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

// httpStatus is the HTTP status behind an SDK error, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestGoSDKDemoInstance(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	ctx := t.Context()
	c := newIMDSClient(s, newRecorder(""), false)

	for _, tc := range []struct{ path, want string }{
		{"instance-id", demoInstanceID},
		{"ami-id", demoAMI},
		{"instance-type", demoType},
		{"local-ipv4", demoLocalIPv4},
		{"mac", demoMAC},
		{"placement/availability-zone", demoAZ},
		{"placement/region", demoRegion},
		{"iam/security-credentials/", demoRole},
		{"tags/instance/Name", demoTagName},
		{"network/interfaces/macs/" + demoMAC + "/local-ipv4s", demoLocalIPv4},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := getMetadata(ctx, c, tc.path)
			if err != nil {
				t.Fatalf("GetMetadata(%q): %v", tc.path, err)
			}
			if got != tc.want {
				t.Errorf("GetMetadata(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}

	t.Run("user-data", func(t *testing.T) {
		out, err := c.GetUserData(ctx, &imds.GetUserDataInput{})
		if err != nil {
			t.Fatalf("GetUserData: %v", err)
		}
		defer out.Content.Close()
		b, err := io.ReadAll(out.Content)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != demoUserData {
			t.Errorf("GetUserData = %q, want %q", b, demoUserData)
		}
	})

	t.Run("identity document", func(t *testing.T) {
		out, err := c.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
		if err != nil {
			t.Fatalf("GetInstanceIdentityDocument: %v", err)
		}
		doc := out.InstanceIdentityDocument
		got := map[string]string{
			"accountId":        doc.AccountID,
			"availabilityZone": doc.AvailabilityZone,
			"imageId":          doc.ImageID,
			"instanceId":       doc.InstanceID,
			"instanceType":     doc.InstanceType,
			"privateIp":        doc.PrivateIP,
			"region":           doc.Region,
			"version":          doc.Version,
		}
		want := map[string]string{
			"accountId":        demoAccountID,
			"availabilityZone": demoAZ,
			"imageId":          demoAMI,
			"instanceId":       demoInstanceID,
			"instanceType":     demoType,
			"privateIp":        demoLocalIPv4,
			"region":           demoRegion,
			"version":          "2017-09-30",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("identity document (-want +got):\n%s", diff)
		}
		if doc.PendingTime.IsZero() || doc.PendingTime.After(time.Now().Add(time.Minute)) {
			t.Errorf("pendingTime = %v, want a time in the past", doc.PendingTime)
		}
	})

	t.Run("region", func(t *testing.T) {
		out, err := c.GetRegion(ctx, &imds.GetRegionInput{})
		if err != nil {
			t.Fatalf("GetRegion: %v", err)
		}
		if out.Region != demoRegion {
			t.Errorf("GetRegion = %q, want %q", out.Region, demoRegion)
		}
	})

	t.Run("iam info", func(t *testing.T) {
		out, err := c.GetIAMInfo(ctx, &imds.GetIAMInfoInput{})
		if err != nil {
			t.Fatalf("GetIAMInfo: %v", err)
		}
		if wantPrefix := "arn:aws:iam::" + demoAccountID + ":instance-profile/"; !strings.HasPrefix(out.InstanceProfileArn, wantPrefix) {
			t.Errorf("InstanceProfileArn = %q, want prefix %q", out.InstanceProfileArn, wantPrefix)
		}
		if !strings.HasPrefix(out.InstanceProfileID, "AIPA") {
			t.Errorf("InstanceProfileID = %q, want an AIPA… id", out.InstanceProfileID)
		}
		if out.LastUpdated.IsZero() {
			t.Error("LastUpdated is zero, want a time")
		}
	})

	t.Run("role credentials", func(t *testing.T) {
		p := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c })
		creds, err := p.Retrieve(ctx)
		if err != nil {
			t.Fatalf("ec2rolecreds Retrieve: %v", err)
		}
		checkCreds(t, creds)
	})

	// The SDK asks for a 300 s token once, then sends it on every GET.
	t.Run("token flow", func(t *testing.T) {
		rec := newRecorder("")
		c := newIMDSClient(s, rec, false)
		for _, path := range []string{"instance-id", "mac"} {
			if _, err := getMetadata(ctx, c, path); err != nil {
				t.Fatalf("GetMetadata(%q): %v", path, err)
			}
		}
		if _, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(ctx); err != nil {
			t.Fatalf("ec2rolecreds Retrieve: %v", err)
		}
		reqs := rec.sent()
		if len(reqs) < 5 {
			t.Fatalf("client sent %d requests (%+v), want a PUT and 4 GETs", len(reqs), reqs)
		}
		first := reqs[0]
		if first.Method != http.MethodPut || first.Path != "/latest/api/token" || first.TTL != "300" || first.Status != http.StatusOK {
			t.Errorf("first request = %+v, want PUT /latest/api/token with TTL 300 answered 200", first)
		}
		for _, r := range reqs[1:] {
			if r.Method == http.MethodPut {
				t.Errorf("client fetched another token: %+v; the first should have been cached", r)
				continue
			}
			if !r.Token || r.Status != http.StatusOK {
				t.Errorf("request %+v, want a GET with a token answered 200", r)
			}
		}
	})
}

// checkCreds checks role credentials from a static role of the test config.
func checkCreds(t *testing.T, creds aws.Credentials) {
	t.Helper()
	if creds.AccessKeyID != testAccessKeyID {
		t.Errorf("AccessKeyID = %q, want %q", creds.AccessKeyID, testAccessKeyID)
	}
	if creds.SecretAccessKey != testSecretAccessKey {
		t.Errorf("SecretAccessKey = %q, want %q", creds.SecretAccessKey, testSecretAccessKey)
	}
	if !creds.CanExpire {
		t.Error("CanExpire = false, want true")
	}
	if !creds.Expires.After(time.Now()) {
		t.Errorf("Expires = %v, want a time in the future", creds.Expires)
	}
	if creds.Source != ec2rolecreds.ProviderName {
		t.Errorf("Source = %q, want %q", creds.Source, ec2rolecreds.ProviderName)
	}
}

// With http-tokens required and IMDSv1 disabled in the client, every SDK
// operation works through tokens, and a request without one gets 401.
func TestGoSDKTokensRequired(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{}))
	ctx := t.Context()
	c := newIMDSClient(s, newRecorder(""), false)

	for _, tc := range []struct{ path, want string }{
		{"instance-id", webInstanceID},
		{"public-keys/", "0=" + webKeyName},
		{"public-keys/0/openssh-key", webKey},
		{"placement/availability-zone", webAZ},
		{"tags/instance/Env", "prod"},
		{"tags/instance/Name", "web-1"},
	} {
		got, err := getMetadata(ctx, c, tc.path)
		if err != nil {
			t.Errorf("GetMetadata(%q): %v", tc.path, err)
			continue
		}
		if got != tc.want {
			t.Errorf("GetMetadata(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}

	region, err := c.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		t.Fatalf("GetRegion: %v", err)
	}
	if region.Region != webRegion {
		t.Errorf("GetRegion = %q, want %q", region.Region, webRegion)
	}

	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(ctx)
	if err != nil {
		t.Fatalf("ec2rolecreds Retrieve: %v", err)
	}
	checkCreds(t, creds)

	// IMDSv1: no token.
	resp, err := http.Get(s.URL + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("IMDSv1 GET instance-id with http-tokens required: status %d, want 401", resp.StatusCode)
	}
}

// The default credential and region chain of the SDK, configured only by
// the environment, ends at the instance role and the instance's region.
func TestGoSDKDefaultChain(t *testing.T) {
	s := startServer(t, webConfig(t, webOptions{}))
	isolateAWSEnv(t, s.URL)

	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithEC2IMDSRegion())
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	if cfg.Region != webRegion {
		t.Errorf("region = %q, want %q", cfg.Region, webRegion)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	checkCreds(t, creds)
}

// isolateAWSEnv leaves the SDKs no credential source but the IMDS at url:
// every AWS_* variable is cleared, HOME and the config files point into an
// empty directory, and IMDSv1 is disabled.
func isolateAWSEnv(t *testing.T, url string) {
	t.Helper()
	for _, kv := range awsFreeEnv(t, url) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_EC2_METADATA_DISABLED",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
	} {
		t.Setenv(k, "")
	}
}

// awsFreeEnv is a whole environment for a child process whose only AWS
// configuration points at the IMDS at url, with IMDSv1 disabled.
func awsFreeEnv(t *testing.T, url string) []string {
	t.Helper()
	home := t.TempDir()
	return []string{
		"PATH=" + envOr("PATH", "/usr/local/bin:/usr/bin:/bin"),
		"HOME=" + home,
		"LANG=C.UTF-8",
		"AWS_CONFIG_FILE=" + home + "/no-config",
		"AWS_SHARED_CREDENTIALS_FILE=" + home + "/no-credentials",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + url,
		"AWS_EC2_METADATA_V1_DISABLED=true",
	}
}

// With http-endpoint disabled, the SDK's token PUT and GETs get 403 and
// the credential provider fails.
func TestGoSDKEndpointDisabled(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{HTTPEndpoint: "disabled"}))
	ctx := t.Context()

	for _, fallback := range []bool{false, true} {
		rec := newRecorder("")
		c := newIMDSClient(s, rec, fallback)
		_, err := getMetadata(ctx, c, "instance-id")
		if err == nil {
			t.Errorf("fallback=%v: GetMetadata(instance-id) succeeded, want an error", fallback)
		}
		for _, r := range rec.sent() {
			if r.Status != http.StatusForbidden {
				t.Errorf("fallback=%v: %s %s: status %d, want 403", fallback, r.Method, r.Path, r.Status)
			}
		}
		if _, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(ctx); err == nil {
			t.Errorf("fallback=%v: ec2rolecreds Retrieve succeeded, want an error", fallback)
		}
	}
}

// A client behind a proxy that adds X-Forwarded-For (the SSRF case IMDSv2
// exists for) gets no token, so with http-tokens required it gets nothing.
func TestGoSDKForwardedForRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{}))
	ctx := t.Context()

	for _, fallback := range []bool{false, true} {
		rec := newRecorder("")
		rec.header = http.Header{"X-Forwarded-For": {"198.51.100.7"}}
		c := newIMDSClient(s, rec, fallback)
		if got, err := getMetadata(ctx, c, "instance-id"); err == nil {
			t.Errorf("fallback=%v: GetMetadata(instance-id) = %q through a proxy, want an error", fallback, got)
		}
		reqs := rec.sent()
		if len(reqs) == 0 {
			t.Fatalf("fallback=%v: no request sent", fallback)
		}
		if r := reqs[0]; r.Method != http.MethodPut || r.Status != http.StatusForbidden {
			t.Errorf("fallback=%v: first request %+v, want the token PUT answered 403", fallback, r)
		}
		for _, r := range reqs[1:] {
			if r.Method == http.MethodGet && r.Status == http.StatusOK {
				t.Errorf("fallback=%v: %+v, want no metadata through the proxy", fallback, r)
			}
		}
	}
}

// Each caller is served its own instance, and a token issued to one
// instance is refused for another.
func TestTokenBoundToInstance(t *testing.T) {
	t.Parallel()
	s := startServer(t, twoInstanceConfig)
	ctx := t.Context()

	web := newIMDSClient(s, newRecorder("127.0.0.1"), false)
	db := newIMDSClient(s, newRecorder(dbAddress), false)
	for _, tc := range []struct {
		name   string
		c      *imds.Client
		wantID string
	}{
		{"web", web, webInstanceID},
		{"db", db, dbInstanceID},
	} {
		got, err := getMetadata(ctx, tc.c, "instance-id")
		if err != nil {
			t.Fatalf("%s: GetMetadata(instance-id): %v", tc.name, err)
		}
		if got != tc.wantID {
			t.Errorf("%s: instance-id = %q, want %q", tc.name, got, tc.wantID)
		}
	}
	if _, err := db.GetIAMInfo(ctx, &imds.GetIAMInfoInput{}); httpStatus(err) != http.StatusNotFound {
		t.Errorf("db (no role): GetIAMInfo error %v, want a 404", err)
	}

	// A token from web, replayed by db.
	webHTTP := newRecorder("127.0.0.1")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.URL+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := webHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(token) == 0 {
		t.Fatalf("PUT token from web: status %d, body %q; want 200 and a token", resp.StatusCode, token)
	}
	for _, tc := range []struct {
		from string
		want int
	}{
		{"127.0.0.1", http.StatusOK},
		{dbAddress, http.StatusUnauthorized},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/latest/meta-data/instance-id", nil)
		req.Header.Set("X-aws-ec2-metadata-token", string(token))
		resp, err := newRecorder(tc.from).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET instance-id from %s with web's token: status %d, want %d", tc.from, resp.StatusCode, tc.want)
		}
	}

	// 127.0.0.3 is no instance's address and there is no default instance.
	_, err = getMetadata(ctx, newIMDSClient(s, newRecorder("127.0.0.3"), true), "instance-id")
	if got := httpStatus(err); got != http.StatusForbidden {
		t.Errorf("unknown caller: GetMetadata error %v (status %d), want 403", err, got)
	}
}
