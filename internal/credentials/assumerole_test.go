package credentials

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imds/imds/internal/config"
)

// isolateAWS points the SDK's configuration at nothing on this machine.
func isolateAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                        filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(dir, "credentials"),
		"AWS_PROFILE":                            "",
		"AWS_REGION":                             "",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_EC2_METADATA_DISABLED":              "",
	} {
		t.Setenv(k, v)
	}
}

const stsOK = `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials>
<AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>stssecret</SecretAccessKey>
<SessionToken>ststoken</SessionToken><Expiration>%s</Expiration>
</Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/app/x</Arn><AssumedRoleId>AROA:x</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleResponse>`

const stsDenied = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
<Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/imds is not authorized to perform: sts:AssumeRole</Message>
</Error><RequestId>2</RequestId></ErrorResponse>`

func TestAssumeRole(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIASOURCE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "sourcesecret")
	var form atomic.Pointer[url.Values]
	deny := atomic.Bool{}
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		f := r.PostForm
		form.Store(&f)
		if !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIASOURCE/") {
			t.Errorf("AssumeRole not signed with the source credentials: %q", r.Header.Get("Authorization"))
		}
		w.Header().Set("Content-Type", "text/xml")
		if deny.Load() {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, stsDenied)
			return
		}
		fmt.Fprintf(w, stsOK, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	defer sts.Close()

	src, err := newAssumeRole(&config.AssumeRoleSource{
		RoleARN: "arn:aws:iam::123456789012:role/app", ExternalID: "ext-123",
		Duration: "20m", SessionName: "imds-{instance-id}-{role-delivery}", STSEndpoint: sts.URL, Region: "eu-west-1",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := src.fetch(t.Context(), params{Role: "app", InstanceID: "i-0123456789abcdef0", Delivery: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != "ASIASTS" || c.SecretAccessKey != "stssecret" || c.SessionToken != "ststoken" || c.AccountID != "123456789012" || c.Expires.IsZero() {
		t.Errorf("credentials %+v", c)
	}
	f := *form.Load()
	for k, want := range map[string]string{
		"Action": "AssumeRole", "RoleArn": "arn:aws:iam::123456789012:role/app", "ExternalId": "ext-123",
		"DurationSeconds": "1200", "RoleSessionName": "imds-i-0123456789abcdef0-1.0",
	} {
		if got := f.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	deny.Store(true)
	_, err = src.fetch(t.Context(), params{Role: "app", InstanceID: "i-0123456789abcdef0", Delivery: "2.0"})
	var fe *fetchError
	if !errors.As(err, &fe) || fe.kind != kindDenied || !strings.Contains(fe.detail, "AccessDenied: User: arn:aws:iam::123456789012:user/imds is not authorized") {
		t.Errorf("denied: %#v", err)
	}
}

// TestAssumeRoleNeverAsksIMDS: without credentials of its own, the server
// fails rather than asking a metadata service (possibly itself).
func TestAssumeRoleNeverAsksIMDS(t *testing.T) {
	isolateAWS(t)
	var hits atomic.Int64
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer imds.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("STS called without credentials")
	}))
	defer sts.Close()
	src, err := newAssumeRole(&config.AssumeRoleSource{RoleARN: "arn:aws:iam::123456789012:role/app", STSEndpoint: sts.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.fetch(t.Context(), params{Role: "app", InstanceID: "i-0123456789abcdef0", Delivery: "2.0"})
	if err == nil {
		t.Fatal("AssumeRole succeeded without source credentials")
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests to IMDS", n)
	}
}

func TestAssumeRoleMissingProfile(t *testing.T) {
	isolateAWS(t)
	m := NewManager(nil, nil)
	err := m.Update(map[string]*config.Role{"app": {AssumeRole: &config.AssumeRoleSource{
		RoleARN: "arn:aws:iam::123456789012:role/app", SourceProfile: "nope"}}})
	if err == nil || !strings.Contains(err.Error(), "role app") {
		t.Errorf("Update: %v, want an error naming the role", err)
	}
}
