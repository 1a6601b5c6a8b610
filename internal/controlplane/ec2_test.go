package controlplane

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/imdsopt"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/ec2id"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
)

// The package's -update flag rewrites golden files; registered once even if
// another test file of the package defines it too.
var _ = func() bool {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
	return true
}()

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// testOperators is an in-memory Operators.
type testOperators map[string]string

func (o testOperators) Secret(_ context.Context, id string) (string, bool) {
	s, ok := o[id]
	return s, ok
}

const (
	testKeyID  = "IMDSTESTOPERATOR0001"
	testSecret = "dGVzdC1vcGVyYXRvci1zZWNyZXQtMDEyMzQ1Njc4OQ"
	testRegion = "us-east-1"
)

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type ec2Fixture struct {
	t    testing.TB
	h    *Handler
	reg  *registry.Registry
	now  time.Time
	logs *bytes.Buffer
}

// newEC2Fixture serves a control plane over a fresh bolt store with three
// instances; clock nil means a fixed time.
func newEC2Fixture(t testing.TB, clock func() time.Time) *ec2Fixture {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if clock == nil {
		clock = func() time.Time { return testNow }
	}
	reg := registry.New(st, clock)
	logs := &bytes.Buffer{}
	h := New(Options{
		Registry:  reg,
		Operators: testOperators{testKeyID: testSecret},
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		Now:       clock,
	})
	f := &ec2Fixture{t: t, h: h, reg: reg, now: clock(), logs: logs}
	for _, spec := range []config.Instance{
		{
			InstanceID: "i-0123456789abcdef0", AccountID: "111122223333", AMIID: "ami-0123456789abcdef0",
			InstanceType: "t3.micro", AvailabilityZone: "us-east-1a", LocalIPv4: "10.0.0.10", PublicIPv4: "54.0.0.10",
			MAC: "0e:00:00:00:00:01", Tags: config.OrderedMap{{Key: "Name", Value: "web"}, {Key: "env", Value: "prod"}},
			IAMRole: "web-role", MetadataOptions: config.MetadataOptions{HTTPTokens: "required"},
			LaunchTime: "2026-01-01T00:00:00Z",
		},
		{
			InstanceID: "i-0fedcba9876543210", AccountID: "111122223333", InstanceType: "m7g.large",
			AvailabilityZone: "us-east-1b", Tags: config.OrderedMap{{Key: "Name", Value: "batch"}, {Key: "env", Value: "dev"}},
			Spot: &config.SpotAction{Action: "terminate", Time: "2026-03-04T06:00:00Z"}, LaunchTime: "2026-02-01T00:00:00Z",
		},
		{InstanceID: "i-00000001", LaunchTime: "2026-02-02T00:00:00Z", IPv6: "2001:db8::1"},
	} {
		if _, err := reg.Put(t.Context(), spec, store.Absent, ""); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// signOpts say who signs a test request, for what scope and when.
type signOpts struct {
	key, secret, region, service string
	at                           time.Time
}

func (f *ec2Fixture) operator() signOpts {
	return signOpts{testKeyID, testSecret, testRegion, "ec2", f.now}
}

// signed builds a request signed by the test operator at the fixture's time.
func (f *ec2Fixture) signed(method, target string, form url.Values) *http.Request {
	return f.signedWith(method, target, form, f.operator())
}

func (f *ec2Fixture) signedWith(method, target string, form url.Values, o signOpts) *http.Request {
	f.t.Helper()
	var body []byte
	if method == http.MethodPost {
		body = []byte(form.Encode())
	} else if form != nil {
		target += "?" + form.Encode()
	}
	r := httptest.NewRequestWithContext(f.t.Context(), method, target, bytes.NewReader(body))
	r.Host = "imds.test:8080"
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	if err := adminapi.SignRequest(r, body, o.key, o.secret, o.region, o.service, o.at); err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *ec2Fixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *ec2Fixture) call(params ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.serve(f.signed(http.MethodPost, "/", query(params...)))
}

// query builds a form from name, value pairs, with Version added.
func query(params ...string) url.Values {
	v := url.Values{"Version": {"2016-11-15"}}
	for i := 0; i+1 < len(params); i += 2 {
		v.Add(params[i], params[i+1])
	}
	return v
}

var requestIDRe = regexp.MustCompile(`(<requestId>|<RequestID>)[0-9a-f-]{36}(</requestId>|</RequestID>)`)

// dump is a response as golden files hold it: status, content type, body
// with the random request id replaced.
func dump(w *httptest.ResponseRecorder) string {
	body := requestIDRe.ReplaceAllString(w.Body.String(), "${1}REQUEST-ID${2}")
	return fmt.Sprintf("HTTP %d\nContent-Type: %s\n\n%s", w.Code, w.Header().Get("Content-Type"), body)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "ec2", name+".golden")
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestEC2Golden runs a sequence of calls against one fleet; each answer is
// compared with its golden file, so later steps see earlier changes.
func TestEC2Golden(t *testing.T) {
	f := newEC2Fixture(t, nil)
	for _, step := range []struct {
		name   string
		params []string
	}{
		{"describe-instances-all", []string{"Action", "DescribeInstances"}},
		{"describe-instances-by-id", []string{"Action", "DescribeInstances", "InstanceId.1", "i-0fedcba9876543210"}},
		{"describe-instances-filter-tag", []string{"Action", "DescribeInstances",
			"Filter.1.Name", "tag:env", "Filter.1.Value.1", "prod", "Filter.1.Value.2", "staging"}},
		{"describe-instances-filter-wildcard", []string{"Action", "DescribeInstances",
			"Filter.1.Name", "tag:Name", "Filter.1.Value.1", "b*h",
			"Filter.2.Name", "metadata-options.http-tokens", "Filter.2.Value.1", "optional"}},
		{"describe-instances-filter-none", []string{"Action", "DescribeInstances",
			"Filter.1.Name", "metadata-options.http-endpoint", "Filter.1.Value.1", "disabled"}},
		{"describe-instances-filter-unknown", []string{"Action", "DescribeInstances", "Filter.1.Name", "flavour", "Filter.1.Value.1", "x"}},
		{"describe-instances-not-found", []string{"Action", "DescribeInstances", "InstanceId.1", "i-0123456789abcdef0", "InstanceId.2", "i-0aaaaaaaaaaaaaaaa", "InstanceId.3", "i-0bbbbbbbbbbbbbbbb"}},
		{"describe-instances-malformed-id", []string{"Action", "DescribeInstances", "InstanceId.1", "web-1"}},
		{"describe-instances-max-results-with-ids", []string{"Action", "DescribeInstances", "InstanceId.1", "i-00000001", "MaxResults", "5"}},
		{"modify-instance-metadata-options", []string{"Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-0fedcba9876543210",
			"HttpTokens", "required", "HttpPutResponseHopLimit", "2"}},
		{"modify-instance-metadata-options-dry-run", []string{"Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-0fedcba9876543210",
			"HttpEndpoint", "disabled", "DryRun", "true"}},
		{"modify-instance-metadata-options-not-found", []string{"Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-0aaaaaaaaaaaaaaaa", "HttpTokens", "required"}},
		{"modify-instance-metadata-options-bad-value", []string{"Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-0fedcba9876543210", "HttpTokens", "sometimes"}},
		{"modify-instance-metadata-options-hop-limit", []string{"Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-0fedcba9876543210", "HttpPutResponseHopLimit", "65"}},
		{"modify-instance-metadata-options-missing-id", []string{"Action", "ModifyInstanceMetadataOptions", "HttpTokens", "required"}},
		{"describe-instances-after-modify", []string{"Action", "DescribeInstances", "Filter.1.Name", "instance-id", "Filter.1.Value.1", "i-0fedcba9876543210"}},
		{"get-instance-metadata-defaults-unset", []string{"Action", "GetInstanceMetadataDefaults"}},
		{"modify-instance-metadata-defaults", []string{"Action", "ModifyInstanceMetadataDefaults", "HttpTokens", "required", "HttpPutResponseHopLimit", "2"}},
		{"modify-instance-metadata-defaults-bad-value", []string{"Action", "ModifyInstanceMetadataDefaults", "HttpEndpoint", "maybe"}},
		{"modify-instance-metadata-defaults-hop-limit", []string{"Action", "ModifyInstanceMetadataDefaults", "HttpPutResponseHopLimit", "0"}},
		{"get-instance-metadata-defaults", []string{"Action", "GetInstanceMetadataDefaults"}},
		{"create-tags", []string{"Action", "CreateTags", "ResourceId.1", "i-0123456789abcdef0", "ResourceId.2", "i-00000001",
			"Tag.1.Key", "team", "Tag.1.Value", "platform", "Tag.2.Key", "env", "Tag.2.Value", "staging"}},
		{"create-tags-not-found", []string{"Action", "CreateTags", "ResourceId.1", "i-0aaaaaaaaaaaaaaaa", "Tag.1.Key", "team", "Tag.1.Value", "x"}},
		{"create-tags-reserved-key", []string{"Action", "CreateTags", "ResourceId.1", "i-00000001", "Tag.1.Key", "aws:owner", "Tag.1.Value", "x"}},
		{"create-tags-not-an-instance", []string{"Action", "CreateTags", "ResourceId.1", "vol-0123456789abcdef0", "Tag.1.Key", "team", "Tag.1.Value", "x"}},
		{"delete-tags", []string{"Action", "DeleteTags", "ResourceId.1", "i-0123456789abcdef0", "Tag.1.Key", "env", "Tag.1.Value", "staging", "Tag.2.Key", "Name"}},
		{"describe-instances-after-tags", []string{"Action", "DescribeInstances", "Filter.1.Name", "tag-key", "Filter.1.Value.1", "team"}},
		{"register-image", []string{"Action", "RegisterImage", "Name", "golden-al2023", "ImdsSupport", "v2.0"}},
		{"register-image-duplicate", []string{"Action", "RegisterImage", "Name", "golden-al2023"}},
		{"register-image-missing-name", []string{"Action", "RegisterImage", "ImdsSupport", "v2.0"}},
		{"register-image-bad-value", []string{"Action", "RegisterImage", "Name", "golden-other", "ImdsSupport", "v1.0"}},
		{"describe-image-attribute-registered", []string{"Action", "DescribeImageAttribute", "ImageId", ImageIDForName("golden-al2023"), "Attribute", "imdsSupport"}},
		{"describe-image-attribute-in-use", []string{"Action", "DescribeImageAttribute", "ImageId", "ami-0123456789abcdef0", "Attribute", "imdsSupport"}},
		{"describe-image-attribute-not-found", []string{"Action", "DescribeImageAttribute", "ImageId", "ami-0aaaaaaaaaaaaaaaa", "Attribute", "imdsSupport"}},
		{"describe-image-attribute-other", []string{"Action", "DescribeImageAttribute", "ImageId", "ami-0123456789abcdef0", "Attribute", "description"}},
		{"modify-image-attribute", []string{"Action", "ModifyImageAttribute", "ImageId", "ami-0123456789abcdef0", "ImdsSupport.Value", "v2.0"}},
		{"modify-image-attribute-bad-value", []string{"Action", "ModifyImageAttribute", "ImageId", "ami-0123456789abcdef0", "ImdsSupport.Value", "v1.0"}},
		{"modify-image-attribute-malformed-id", []string{"Action", "ModifyImageAttribute", "ImageId", "ubuntu", "ImdsSupport.Value", "v2.0"}},
		{"describe-image-attribute-after-modify", []string{"Action", "DescribeImageAttribute", "ImageId", "ami-0123456789abcdef0", "Attribute", "imdsSupport"}},
		{"unknown-action", []string{"Action", "RunInstances", "ImageId", "ami-0123456789abcdef0"}},
		{"missing-action", []string{}},
	} {
		t.Run(step.name, func(t *testing.T) {
			checkGolden(t, step.name, dump(f.call(step.params...)))
		})
	}
}

func TestEC2GetQuery(t *testing.T) {
	f := newEC2Fixture(t, nil)
	w := f.serve(f.signed(http.MethodGet, "/", query("Action", "DescribeInstances", "InstanceId.1", "i-00000001")))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "<instanceId>i-00000001</instanceId>") {
		t.Errorf("GET DescribeInstances: got %d\n%s", w.Code, w.Body)
	}
}

func TestEC2DescribeInstancesPaging(t *testing.T) {
	f := newEC2Fixture(t, nil)
	for i := range 9 {
		spec := config.Instance{InstanceID: fmt.Sprintf("i-1000000%d", i), ReservationID: "r-0123456789abcdef0"}
		if _, err := f.reg.Put(t.Context(), spec, store.Absent, ""); err != nil {
			t.Fatal(err)
		}
	}
	idRe := regexp.MustCompile(`<instanceId>(i-[0-9a-f]+)</instanceId>`)
	tokenRe := regexp.MustCompile(`<nextToken>([^<]+)</nextToken>`)
	var got []string
	token := ""
	for page := 0; ; page++ {
		params := []string{"Action", "DescribeInstances", "MaxResults", "5"}
		if token != "" {
			params = append(params, "NextToken", token)
		}
		w := f.call(params...)
		if w.Code != http.StatusOK {
			t.Fatalf("page %d: got %d\n%s", page, w.Code, w.Body)
		}
		ids := idRe.FindAllStringSubmatch(w.Body.String(), -1)
		if len(ids) > 5 {
			t.Fatalf("page %d: %d instances, want at most 5", page, len(ids))
		}
		for _, m := range ids {
			got = append(got, m[1])
		}
		m := tokenRe.FindStringSubmatch(w.Body.String())
		if m == nil {
			break
		}
		token = m[1]
		if page > 5 {
			t.Fatal("too many pages")
		}
	}
	if len(got) != 12 {
		t.Errorf("got %d instances over all pages, want 12: %v", len(got), got)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("instance %s on two pages", id)
		}
		seen[id] = true
	}
	w := f.call("Action", "DescribeInstances", "NextToken", "not-a-token")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "InvalidPaginationToken") {
		t.Errorf("bad token: got %d\n%s", w.Code, w.Body)
	}
}

func TestEC2ModifyOptionsChangesRegistry(t *testing.T) {
	f := newEC2Fixture(t, nil)
	w := f.call("Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-00000001",
		"HttpEndpoint", "disabled", "InstanceMetadataTags", "enabled", "HttpProtocolIpv6", "enabled")
	if w.Code != http.StatusOK {
		t.Fatalf("got %d\n%s", w.Code, w.Body)
	}
	in, err := f.reg.Instance(t.Context(), "i-00000001")
	if err != nil {
		t.Fatal(err)
	}
	want := registry.Options{HTTPTokens: "optional", HTTPPutResponseHopLimit: 1, HTTPEndpoint: "disabled", HTTPProtocolIPv6: "enabled", InstanceMetadataTags: "enabled"}
	if diff := cmp.Diff(want, in.Options); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	// A dry run changes nothing.
	if w := f.call("Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-00000001", "HttpEndpoint", "enabled", "DryRun", "true"); w.Code != http.StatusPreconditionFailed {
		t.Errorf("dry run: got %d, want 412", w.Code)
	}
	if in, _ := f.reg.Instance(t.Context(), "i-00000001"); in.Options.HTTPEndpoint != "disabled" {
		t.Errorf("dry run changed http-endpoint to %s", in.Options.HTTPEndpoint)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "operator="+testKeyID) || !strings.Contains(logs, "EC2 ModifyInstanceMetadataOptions") {
		t.Errorf("mutation not logged with its operator:\n%s", logs)
	}
	if strings.Contains(logs, testSecret) || strings.Contains(logs, "Signature=") {
		t.Errorf("log carries a secret or signature:\n%s", logs)
	}
}

func TestEC2DefaultsAreRegional(t *testing.T) {
	f := newEC2Fixture(t, nil)
	o := f.operator()
	o.region = "eu-west-1"
	r := f.signedWith(http.MethodPost, "/", query("Action", "ModifyInstanceMetadataDefaults", "HttpTokens", "required"), o)
	if w := f.serve(r); w.Code != http.StatusOK {
		t.Fatalf("got %d\n%s", w.Code, w.Body)
	}
	for region, want := range map[string]imdsopt.Tokens{"eu-west-1": imdsopt.Required, "us-east-1": ""} {
		d, err := f.reg.Defaults(t.Context(), region)
		if err != nil {
			t.Fatal(err)
		}
		if d.HTTPTokens != want {
			t.Errorf("%s: http-tokens %q, want %q", region, d.HTTPTokens, want)
		}
	}
}

func TestImageIDForName(t *testing.T) {
	id := ImageIDForName("golden-al2023")
	if !ec2id.Image.Valid(id) || id != ImageIDForName("golden-al2023") || id == ImageIDForName("other") {
		t.Errorf("ImageIDForName: %s is not a stable AMI id", id)
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"web", "web", true},
		{"web", "web1", false},
		{"w*", "web", true},
		{"*b", "web", true},
		{"w?b", "web", true},
		{"w?b", "wb", false},
		{"*", "", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"*-*-*", "us-east-1", true},
	} {
		if got := wildcardMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// The error document escapes as EC2 does: &, < and > only, quotes and white
// space as they are, and U+FFFD for what XML cannot carry.
func TestEC2ErrorDocument(t *testing.T) {
	const head = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
	for _, tc := range []struct {
		name, code, msg, id, want string
	}{
		{"plain", "InvalidParameterValue", "Value (x) for parameter HttpTokens is invalid.", "r-1",
			`<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>Value (x) for parameter HttpTokens is invalid.</Message></Error></Errors><RequestID>r-1</RequestID></Response>`},
		{"quotes", "InvalidInstanceID.Malformed", `Invalid id: "web-1" isn't`, "r-2",
			`<Response><Errors><Error><Code>InvalidInstanceID.Malformed</Code><Message>Invalid id: "web-1" isn't</Message></Error></Errors><RequestID>r-2</RequestID></Response>`},
		{"markup", "C", "a <b> & </Message><Code>x", "r-3",
			`<Response><Errors><Error><Code>C</Code><Message>a &lt;b&gt; &amp; &lt;/Message&gt;&lt;Code&gt;x</Message></Error></Errors><RequestID>r-3</RequestID></Response>`},
		{"references sent as text", "C", "&#34; &#xA; &amp;", "r-4",
			`<Response><Errors><Error><Code>C</Code><Message>&amp;#34; &amp;#xA; &amp;amp;</Message></Error></Errors><RequestID>r-4</RequestID></Response>`},
		{"white space", "C", "a\tb\nc\rd", "r-5",
			"<Response><Errors><Error><Code>C</Code><Message>a\tb\nc\rd</Message></Error></Errors><RequestID>r-5</RequestID></Response>"},
		{"not XML", "C", "nul\x00 esc\x1b bad\xff fffe\uFFFE ok\uFFFD é", "r-6",
			"<Response><Errors><Error><Code>C</Code><Message>nul\uFFFD esc\uFFFD bad\uFFFD fffe\uFFFD ok\uFFFD é</Message></Error></Errors><RequestID>r-6</RequestID></Response>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ec2ErrorDocument(tc.code, tc.msg, tc.id)
			if diff := cmp.Diff(head+tc.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			checkXML(t, got)
		})
	}
}
