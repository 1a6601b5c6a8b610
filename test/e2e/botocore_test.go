package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/imds/imds/internal/testenv"
)

// botocoreResult is what testdata/botocore_imds.py prints.
type botocoreResult struct {
	Method    *string `json:"method"`
	AccessKey *string `json:"access_key"`
	SecretKey *string `json:"secret_key"`
	Token     *string `json:"token"`
	Expiry    *string `json:"expiry"`
	Region    *string `json:"region"`
	Error     *string `json:"error"`
	RegionErr *string `json:"region_error"`
}

// runBotocore runs testdata/botocore_imds.py against the IMDS at url, with
// no other AWS configuration. v1 false sets AWS_EC2_METADATA_V1_DISABLED.
func runBotocore(t *testing.T, url string, v1 bool) botocoreResult {
	t.Helper()
	py := testenv.Python(t, "botocore", "python3", "/usr/bin/python3")
	script, err := filepath.Abs("testdata/botocore_imds.py")
	if err != nil {
		t.Fatal(err)
	}
	env := awsFreeEnv(t, url)
	if v1 {
		env = append(env, "AWS_EC2_METADATA_V1_DISABLED=false")
	}
	stdout, stderr, err := runCmd(t.Context(), env, py, script)
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", py, script, err, stderr)
	}
	var r botocoreResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("botocore_imds.py output: %v\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	return r
}

// botocore's default credential chain ends at the instance role, through
// IMDSv2 tokens (IMDSv1 is disabled and the instance requires tokens), and
// its IMDS region provider reads the instance's region.
func TestBotocoreInstanceRole(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{}))
	r := runBotocore(t, s.URL, false)
	if r.Error != nil || r.RegionErr != nil {
		t.Errorf("errors: credentials %s, region %s; want none", strPtr(r.Error), strPtr(r.RegionErr))
	}
	for _, c := range []struct {
		name string
		got  *string
		want string
	}{
		{"method", r.Method, "iam-role"},
		{"access_key", r.AccessKey, testAccessKeyID},
		{"secret_key", r.SecretKey, testSecretAccessKey},
		{"region", r.Region, webRegion},
	} {
		if strPtr(c.got) != c.want {
			t.Errorf("%s = %s, want %s", c.name, strPtr(c.got), c.want)
		}
	}
	if r.Expiry == nil {
		t.Fatal("expiry = null, want a time")
	}
	exp, err := time.Parse(time.RFC3339, *r.Expiry)
	if err != nil {
		t.Fatalf("expiry %q: %v", *r.Expiry, err)
	}
	if !exp.After(time.Now()) {
		t.Errorf("expiry = %v, want a time in the future", exp)
	}
}

// With the HTTP endpoint disabled, botocore finds no credentials and no
// region: with IMDSv1 disabled it fails for want of a token, otherwise its
// IMDSv1 fallback gets 403 too and the chain ends empty.
func TestBotocoreEndpointDisabled(t *testing.T) {
	t.Parallel()
	s := startServer(t, webConfig(t, webOptions{HTTPEndpoint: "disabled"}))
	for _, v1 := range []bool{false, true} {
		r := runBotocore(t, s.URL, v1)
		if r.Method != nil || r.AccessKey != nil {
			t.Errorf("v1=%v: credentials method %s, access key %s; want none", v1, strPtr(r.Method), strPtr(r.AccessKey))
		}
		if r.Region != nil {
			t.Errorf("v1=%v: region = %s, want none", v1, *r.Region)
		}
		for what, e := range map[string]*string{"credentials": r.Error, "region": r.RegionErr} {
			switch {
			case v1 && e != nil:
				t.Errorf("v1=true: %s error %s, want none", what, *e)
			case !v1 && (e == nil || !strings.Contains(*e, "token")):
				t.Errorf("v1=false: %s error %s, want one about the token", what, strPtr(e))
			}
		}
	}
}

// The AWS CLI reports the instance role as its credential source, and
// signs a real call with those credentials. The call goes to a local stub
// of STS, which checks the SigV4 signature.
func TestAWSCLIInstanceRole(t *testing.T) {
	t.Parallel()
	awsCLI := testenv.Command(t, "aws")
	s := startServer(t, webConfig(t, webOptions{}))
	env := awsFreeEnv(t, s.URL)
	ctx := t.Context()

	t.Run("configure list", func(t *testing.T) {
		stdout, stderr, err := runCmd(ctx, env, awsCLI, "configure", "list")
		if err != nil {
			t.Fatalf("aws configure list: %v\nstderr:\n%s", err, stderr)
		}
		for _, key := range []struct{ name, id string }{
			{"access_key", testAccessKeyID},
			{"secret_key", testSecretAccessKey},
		} {
			fields, ok := findRow(stdout, key.name)
			if !ok {
				t.Errorf("aws configure list has no %s row:\n%s", key.name, stdout)
				continue
			}
			// name, masked value, type, [location]
			want := "****************" + key.id[len(key.id)-4:]
			if len(fields) < 3 || fields[1] != want || fields[2] != "iam-role" {
				t.Errorf("aws configure list %s row = %q, want value %s and type iam-role", key.name, fields, want)
			}
		}
	})

	t.Run("signed call", func(t *testing.T) {
		sts := newSTSStub(t)
		stdout, stderr, err := runCmd(ctx, env, awsCLI, "sts", "get-caller-identity",
			"--endpoint-url", sts.URL, "--region", webRegion, "--output", "json")
		if err != nil {
			t.Fatalf("aws sts get-caller-identity: %v\nstderr:\n%s", err, stderr)
		}
		var out struct{ Account string }
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.Account != webAccountID {
			t.Errorf("aws sts get-caller-identity printed %q (%v), want Account %s", stdout, err, webAccountID)
		}
		sts.check(t, webRegion)
	})
}

// findRow returns the whitespace-separated fields of the first line whose
// first field is name.
func findRow(out, name string) ([]string, bool) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return f, true
		}
	}
	return nil, false
}

// stsStub answers GetCallerIdentity and keeps the requests it got.
type stsStub struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []stsRequest
}

type stsRequest struct {
	header http.Header
	host   string
	body   []byte
}

func newSTSStub(t *testing.T) *stsStub {
	s := &stsStub{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, stsRequest{header: r.Header.Clone(), host: r.Host, body: body})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult>
<Arn>arn:aws:sts::123456789012:assumed-role/bedrock-ui-ec2-role/i-0a1b2c3d4e5f60718</Arn>
<UserId>AROAIOSFODNN7EXAMPLE:i-0a1b2c3d4e5f60718</UserId>
<Account>123456789012</Account>
</GetCallerIdentityResult>
<ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>`)
	}))
	t.Cleanup(s.Close)
	return s
}

// check verifies that exactly one request came, signed with the test role's
// keys: it signs the same request again and compares the signatures.
func (s *stsStub) check(t *testing.T, region string) {
	t.Helper()
	s.mu.Lock()
	reqs := append([]stsRequest(nil), s.reqs...)
	s.mu.Unlock()
	if len(reqs) != 1 {
		t.Fatalf("STS stub got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	auth := r.header.Get("Authorization")
	wantCred := "Credential=" + testAccessKeyID + "/"
	if !strings.Contains(auth, wantCred) {
		t.Fatalf("Authorization = %q, want it to contain %q", auth, wantCred)
	}
	if tok := r.header.Get("X-Amz-Security-Token"); tok != "" {
		t.Errorf("X-Amz-Security-Token = %q, want none (the role's session token is empty)", tok)
	}

	// Re-sign with the same time and the headers the client signed.
	amzDate := r.header.Get("X-Amz-Date")
	when, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		t.Fatalf("X-Amz-Date %q: %v", amzDate, err)
	}
	_, signed, _ := strings.Cut(auth, "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	// No body: the payload hash is given, and botocore does not sign
	// Content-Length, which the Go signer would add for a body.
	req, err := http.NewRequest(http.MethodPost, s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = r.host
	for _, h := range strings.Split(signed, ";") {
		if h != "host" {
			req.Header.Set(h, r.header.Get(h))
		}
	}
	creds := aws.Credentials{AccessKeyID: testAccessKeyID, SecretAccessKey: testSecretAccessKey}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, sha256Hex(r.body), "sts", region, when); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != auth {
		t.Errorf("signature mismatch: the client signed\n  %s\nwith the test role's keys it would be\n  %s", auth, got)
	}
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
