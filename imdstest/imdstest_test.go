package imdstest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/imdstest"
)

func sdk(srv *imdstest.Server) *imds.Client { return imds.New(imds.Options{Endpoint: srv.URL()}) }

func getMetadata(t *testing.T, c *imds.Client, path string) string {
	t.Helper()
	out, err := c.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		t.Fatalf("GetMetadata %s: %v", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// getV1 reads path without a token and returns the status and body.
func getV1(t *testing.T, srv *imdstest.Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get(srv.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestDemoInstance(t *testing.T) {
	t.Parallel()
	srv := imdstest.New(t)
	c := sdk(srv)
	if got := getMetadata(t, c, "instance-id"); got != "i-0123456789abcdef0" || srv.ID() != got {
		t.Errorf("instance-id: got %q (ID %q), want i-0123456789abcdef0", got, srv.ID())
	}
	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.Credentials("imds-demo-role"); creds.AccessKeyID != want.AccessKeyID || creds.SecretAccessKey != want.SecretAccessKey {
		t.Errorf("credentials: got %s, want the demo role's %s", creds.AccessKeyID, want.AccessKeyID)
	}
	reqs := srv.Requests()
	if len(reqs) == 0 || reqs[0].Method != http.MethodPut || reqs[0].Path != "/latest/api/token" || reqs[0].Status != 200 {
		t.Fatalf("first request: got %+v, want the token PUT", reqs)
	}
	for _, r := range reqs[1:] {
		if !r.Token || r.Status != 200 || !strings.Contains(r.UserAgent, "aws-sdk-go-v2") {
			t.Errorf("SDK request %+v: want a token, status 200 and the SDK's user agent", r)
		}
	}
	srv.ResetRequests()
	if got := srv.Requests(); len(got) != 0 {
		t.Errorf("after ResetRequests: %d requests", len(got))
	}
}

func TestSetMetadataOptions(t *testing.T) {
	t.Parallel()
	srv := imdstest.New(t)
	if code, _ := getV1(t, srv, "/latest/meta-data/instance-id"); code != 200 {
		t.Fatalf("IMDSv1 while tokens are optional: got %d, want 200", code)
	}
	srv.SetMetadataOptions(imdstest.MetadataOptions{HTTPTokens: "required"})
	if code, _ := getV1(t, srv, "/latest/meta-data/instance-id"); code != 401 {
		t.Errorf("IMDSv1 after tokens required: got %d, want 401", code)
	}
	if got := getMetadata(t, sdk(srv), "instance-id"); got != srv.ID() {
		t.Errorf("IMDSv2 after tokens required: got %q", got)
	}
	srv.SetMetadataOptions(imdstest.MetadataOptions{HTTPEndpoint: "disabled"})
	if code, _ := getV1(t, srv, "/latest/meta-data/instance-id"); code != 403 {
		t.Errorf("endpoint disabled: got %d, want 403", code)
	}
	srv.SetMetadataOptions(imdstest.MetadataOptions{HTTPEndpoint: "enabled", HTTPTokens: "optional"})
	if code, _ := getV1(t, srv, "/latest/meta-data/instance-id"); code != 200 {
		t.Errorf("IMDSv1 after tokens optional again: got %d, want 200", code)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	srv := imdstest.New(t)
	c := sdk(srv)
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	if code, _ := getV1(t, srv, "/latest/meta-data/spot/instance-action"); code != 404 {
		t.Fatalf("spot/instance-action before any notice: got %d, want 404", code)
	}
	srv.SetSpotInterruption(imdstest.SpotStop, at)
	if got, want := getMetadata(t, c, "spot/instance-action"), `{"action": "stop", "time": "2030-05-06T07:08:09Z"}`; got != want {
		t.Errorf("spot/instance-action: got %s, want %s", got, want)
	}
	srv.SetRebalanceRecommendation(at.Add(-time.Minute))
	if got, want := getMetadata(t, c, "events/recommendations/rebalance"), `{"noticeTime": "2030-05-06T07:07:09Z"}`; got != want {
		t.Errorf("rebalance: got %s, want %s", got, want)
	}
	srv.AddMaintenanceEvent(imdstest.MaintenanceEvent{Code: "system-reboot", Description: "scheduled reboot",
		NotBefore: at.Add(24 * time.Hour)})
	var events []map[string]string
	if err := json.Unmarshal([]byte(getMetadata(t, c, "events/maintenance/scheduled")), &events); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0]["Code"] != "system-reboot" || events[0]["Description"] != "scheduled reboot" {
		t.Errorf("scheduled events: got %v", events)
	}
	srv.ClearEvents()
	for _, p := range []string{"spot/instance-action", "events/recommendations/rebalance"} {
		if code, _ := getV1(t, srv, "/latest/meta-data/"+p); code != 404 {
			t.Errorf("%s after ClearEvents: got %d, want 404", p, code)
		}
	}
	if got := getMetadata(t, c, "events/maintenance/scheduled"); got != "[]" {
		t.Errorf("scheduled events after ClearEvents: got %s, want []", got)
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	srv := imdstest.New(t, imdstest.WithRole("app", imdstest.Credentials{AccessKeyID: "AKIAFIRST", SecretAccessKey: "first"}))
	c := sdk(srv)
	retrieve := func() (string, error) {
		cr, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(t.Context())
		return cr.AccessKeyID, err
	}
	if got := getMetadata(t, c, "iam/security-credentials/"); got != "app" {
		t.Fatalf("role listing: got %q, want app", got)
	}
	if id, err := retrieve(); err != nil || id != "AKIAFIRST" {
		t.Fatalf("first keys: got %q, %v", id, err)
	}
	rotated := srv.RotateCredentials("app")
	if id, err := retrieve(); err != nil || id != rotated.AccessKeyID || !strings.HasPrefix(id, "ASIA") {
		t.Errorf("after RotateCredentials: got %q, %v; want %s", id, err, rotated.AccessKeyID)
	}
	srv.ExpireCredentials("app")
	if id, err := retrieve(); err == nil {
		t.Errorf("after ExpireCredentials: got keys %s, want an error", id)
	}
	exp := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	srv.SetCredentials("app", imdstest.Credentials{AccessKeyID: "ASIATHIRD", SecretAccessKey: "third", SessionToken: "tok", Expiration: exp})
	cr, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(t.Context())
	if err != nil || cr.AccessKeyID != "ASIATHIRD" || cr.SessionToken != "tok" {
		t.Errorf("after SetCredentials: got %s %s, %v; want ASIATHIRD", cr.AccessKeyID, cr.SessionToken, err)
	}
	// The SDK caps the expiry it reports; the document carries the keys' own.
	var doc struct{ Expiration time.Time }
	if err := json.Unmarshal([]byte(getMetadata(t, c, "iam/security-credentials/app")), &doc); err != nil || !doc.Expiration.Equal(exp) {
		t.Errorf("served Expiration: got %s, %v; want %s", doc.Expiration, err, exp)
	}
	if diff := cmp.Diff(imdstest.Credentials{AccessKeyID: "ASIATHIRD", SecretAccessKey: "third", SessionToken: "tok", Expiration: exp}, srv.Credentials("app")); diff != "" {
		t.Errorf("Credentials (-want +got):\n%s", diff)
	}
}

func TestWithConfigAndOptions(t *testing.T) {
	t.Parallel()
	srv := imdstest.New(t,
		imdstest.WithConfig(`
instances:
  - instance-id: i-00000000000000001
    addresses: [127.0.0.1]
    availability-zone: ap-northeast-1a
  - instance-id: i-00000000000000002
    addresses: [127.0.0.2]
`),
		imdstest.WithMetadataOptions(imdstest.MetadataOptions{HTTPTokens: "required", HTTPPutResponseHopLimit: 2}),
	)
	if srv.ID() != "i-00000000000000001" {
		t.Errorf("ID: got %s, want the first instance", srv.ID())
	}
	if code, _ := getV1(t, srv, "/latest/meta-data/instance-id"); code != 401 {
		t.Errorf("IMDSv1 with tokens required at launch: got %d, want 401", code)
	}
	if got := getMetadata(t, sdk(srv), "placement/region"); got != "ap-northeast-1" {
		t.Errorf("region: got %s", got)
	}
	// The second instance is there (callers from 127.0.0.2 get it).
	other := srv.ForInstance("i-00000000000000002")
	other.SetMetadataOptions(imdstest.MetadataOptions{HTTPTokens: "required"})
	if other.ID() != "i-00000000000000002" {
		t.Errorf("ForInstance: got %s", other.ID())
	}
}

// fatalT records a fatal failure instead of ending a real test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestInvalidConfigFailsTheTest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []imdstest.Option
		want []string
	}{
		{"unknown key", []imdstest.Option{imdstest.WithConfig("instances: [{instance-id: i-0123456789abcdef0, colour: red}]")}, []string{"colour"}},
		{"bad id", []imdstest.Option{imdstest.WithConfig("instances: [{instance-id: x-1}]")}, []string{"instance-id", "x-1"}},
		{"no instance", []imdstest.Option{imdstest.WithConfig("roles: {}")}, []string{"instance"}},
		{"bad hop limit", []imdstest.Option{imdstest.WithMetadataOptions(imdstest.MetadataOptions{HTTPPutResponseHopLimit: 99})}, []string{"http-put-response-hop-limit", "99"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fatalT{TB: t}
			func() {
				defer func() {
					if r := recover(); r != nil && r != ft {
						panic(r)
					}
				}()
				imdstest.New(ft, tc.opts...)
			}()
			if ft.msg == "" {
				t.Fatal("New did not fail")
			}
			for _, w := range tc.want {
				if !strings.Contains(ft.msg, w) {
					t.Errorf("message %q lacks %q", ft.msg, w)
				}
			}
		})
	}
}

// TestClock: the server's clock decides token expiry.
func TestClock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := imdstest.New(t, imdstest.WithClock(clock))
	req, _ := http.NewRequest(http.MethodPut, srv.URL()+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(res.Body)
	res.Body.Close()
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/latest/meta-data/instance-id", nil)
		req.Header.Set("X-aws-ec2-metadata-token", string(tok))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("fresh token: got %d, want 200", code)
	}
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	if code := get(); code != 401 {
		t.Errorf("token past its TTL: got %d, want 401", code)
	}
}

// TestManyServers: servers in parallel tests share nothing.
func TestManyServers(t *testing.T) {
	t.Parallel()
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("i-%017d", i+1)
			srv := imdstest.New(t, imdstest.WithConfig("instances: [{instance-id: "+id+"}]"))
			if i%2 == 0 {
				srv.SetMetadataOptions(imdstest.MetadataOptions{HTTPTokens: "required"})
			}
			if got := getMetadata(t, sdk(srv), "instance-id"); got != id {
				t.Errorf("got %s, want %s", got, id)
			}
			wantV1 := 200
			if i%2 == 0 {
				wantV1 = 401
			}
			if code, _ := getV1(t, srv, "/latest/meta-data/instance-id"); code != wantV1 {
				t.Errorf("IMDSv1: got %d, want %d", code, wantV1)
			}
		})
	}
}
