package credentials

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/imds/imds/internal/config"
	imdscreds "github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/testenv"
)

const (
	instanceA = "i-0123456789abcdef0" // http-tokens optional: IMDSv1 and IMDSv2 sets
	instanceB = "i-0fedcba987654321f" // http-tokens required: an IMDSv2 set
)

// TestAssumeRoleRotationAndOutage runs an assume-role source against moto's
// STS: credentials are there before the first request, one session per
// instance and delivery named after the instance, renewed halfway through
// their life; when STS goes away the last good set is served until it
// expires, then EC2's error form. The AWS SDK for Go v2 and botocore read
// each stage through their IMDS credential providers.
func TestAssumeRoleRotationAndOutage(t *testing.T) {
	py := testenv.Python(t, "moto.server")
	mt := testenv.StartMoto(t, py)
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAIMDSSOURCE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "imds-source-secret")

	cfg, err := config.Parse([]byte(fmt.Sprintf(`instances:
  - {instance-id: %s, iam-role: app, metadata-options: {http-tokens: optional}}
  - {instance-id: %s, iam-role: app, metadata-options: {http-tokens: required}}
roles:
  app:
    assume-role:
      role-arn: arn:aws:iam::123456789012:role/app
      external-id: imds-test
      duration: 15m
      sts-endpoint: %s
      region: us-east-1
      timeout: 20s
`, instanceA, instanceB, mt.URL)))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	logs := &logBuffer{}
	m := imdscreds.NewManager(logs.logger(), clk.Now)
	if err := m.Update(cfg.Roles); err != nil {
		t.Fatal(err)
	}
	subA := imdscreds.Subject{Role: "app", InstanceID: instanceA, V1: true}
	docA, extA := m.For(subA), m.ForExtended(subA)
	docB := m.For(imdscreds.Subject{Role: "app", InstanceID: instanceB})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.WaitFetched(ctx); err != nil {
		t.Fatalf("WaitFetched: %v\nlog:\n%s", err, logs)
	}

	var secrets []string // everything that must never be logged
	seen := func(ds ...doc) {
		for _, d := range ds {
			secrets = append(secrets, d.SecretAccessKey, d.Token)
		}
	}

	// Fetched before the first request, three different sets.
	v2, v1, b := render(t, docA, true), render(t, docA, false), render(t, docB, true)
	seen(v2, v1, b)
	for name, d := range map[string]doc{"A v2": v2, "A v1": v1, "B v2": b} {
		if d.Code != "Success" || d.Type != "AWS-HMAC" || !strings.HasPrefix(d.AccessKeyID, "ASIA") || d.Token == "" {
			t.Errorf("%s: %+v", name, d)
		}
		if left := time.Until(d.expires(t)); left < 14*time.Minute || left > 15*time.Minute {
			t.Errorf("%s: expires in %s, want the 15m session", name, left)
		}
	}
	if v2.AccessKeyID == v1.AccessKeyID || v2.AccessKeyID == b.AccessKeyID {
		t.Errorf("sets are shared: A v2 %s, A v1 %s, B %s", v2.AccessKeyID, v1.AccessKeyID, b.AccessKeyID)
	}
	for _, c := range []struct {
		d    doc
		want string
	}{{v2, instanceA}, {v1, instanceA}, {b, instanceB}} {
		if arn := callerARN(t, mt.URL, c.d); arn != "arn:aws:sts::123456789012:assumed-role/app/"+c.want {
			t.Errorf("caller %s, want the session named %s", arn, c.want)
		}
	}
	if ext := render(t, extA, true); ext.AccountID != "123456789012" || ext.AccessKeyID != v2.AccessKeyID {
		t.Errorf("extended document: %+v", ext)
	}
	stub := imdsStub(t, "app", docA)
	if got := sdkKey(t, stub.URL); got != v2.AccessKeyID {
		t.Errorf("Go SDK read %s, want the IMDSv2 set %s", got, v2.AccessKeyID)
	}
	if got := botocoreKey(t, py, stub.URL); got != v2.AccessKeyID {
		t.Errorf("botocore read %q, want the IMDSv2 set %s", got, v2.AccessKeyID)
	}

	// Rotation: halfway through the 15 minutes, new sessions.
	clk.Add(8 * time.Minute)
	m.RefreshDue(ctx)
	v2r, v1r := render(t, docA, true), render(t, docA, false)
	seen(v2r, v1r)
	if v2r.AccessKeyID == v2.AccessKeyID || v1r.AccessKeyID == v1.AccessKeyID {
		t.Fatalf("not renewed after 8 minutes: %s then %s\nlog:\n%s", v2.AccessKeyID, v2r.AccessKeyID, logs)
	}
	if lu := v2r.LastUpdated; lu != clk.Now().UTC().Format(metadata.TimeFormat) && lu != clk.Now().Add(-time.Second).UTC().Format(metadata.TimeFormat) {
		t.Errorf("LastUpdated %s, want about %s", lu, clk.Now().UTC())
	}
	if got := sdkKey(t, stub.URL); got != v2r.AccessKeyID {
		t.Errorf("Go SDK read %s after rotation, want %s", got, v2r.AccessKeyID)
	}
	if got := botocoreKey(t, py, stub.URL); got != v2r.AccessKeyID {
		t.Errorf("botocore read %q after rotation, want %s", got, v2r.AccessKeyID)
	}

	// Outage: the next renewal fails; the last good set is served.
	mt.Stop()
	clk.Add(4 * time.Minute)
	m.RefreshDue(ctx)
	if got := render(t, docA, true); got.AccessKeyID != v2r.AccessKeyID {
		t.Errorf("during the outage: %+v, want the last good set %s", got, v2r.AccessKeyID)
	}
	st := m.Status()
	if len(st) != 1 || st[0].Sets != 3 || st[0].Serving != 3 || st[0].Failing == 0 || st[0].LastErrorKind != "unavailable" {
		t.Errorf("status during the outage: %+v", st)
	}
	if got := sdkKey(t, stub.URL); got != v2r.AccessKeyID {
		t.Errorf("Go SDK read %s during the outage, want %s", got, v2r.AccessKeyID)
	}

	// Expiry: EC2's error form, HTTP 200 and a Code other than Success.
	clk.set(v2r.expires(t).Add(time.Second))
	m.RefreshDue(ctx)
	e := render(t, docA, true)
	if e.Code != "CredentialsUnavailable" || e.AccessKeyID != "" || !strings.Contains(e.Message, "role app") {
		t.Errorf("after expiry: %+v", e)
	}
	_, err = ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = imds.New(imds.Options{Endpoint: stub.URL}) }).Retrieve(t.Context())
	if err == nil || !strings.Contains(err.Error(), "CredentialsUnavailable") {
		t.Errorf("Go SDK after expiry: %v, want the error code", err)
	}
	if got := botocoreKey(t, py, stub.URL); got != "" {
		t.Errorf("botocore read %q after expiry, want nothing", got)
	}
	if st := m.Status(); st[0].Expired == 0 || st[0].Ready() {
		t.Errorf("status after expiry: %+v", st)
	}

	log := logs.String()
	for _, want := range []string{"credential source failed: serving the last credentials", "connection refused", "credentials expired"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for _, s := range append(secrets, "imds-source-secret") {
		if s != "" && strings.Contains(log, s) {
			t.Errorf("log holds a secret:\n%s", log)
		}
	}
}

// callerARN asks moto's STS who the credentials of d belong to.
func callerARN(t *testing.T, endpoint string, d doc) string {
	t.Helper()
	c := sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  awscreds.NewStaticCredentialsProvider(d.AccessKeyID, d.SecretAccessKey, d.Token),
	})
	out, err := c.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	return aws.ToString(out.Arn)
}

// sdkKey reads the role's credentials with the Go SDK's IMDS provider.
func sdkKey(t *testing.T, url string) string {
	t.Helper()
	p := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = imds.New(imds.Options{Endpoint: url}) })
	c, err := p.Retrieve(t.Context())
	if err != nil {
		t.Fatalf("ec2rolecreds: %v", err)
	}
	return c.AccessKeyID
}

// botocoreKey reads the role's credentials with botocore's IMDS fetcher; ""
// when it finds none.
func botocoreKey(t *testing.T, py, url string) string {
	t.Helper()
	const script = `import json, sys
from botocore.utils import InstanceMetadataFetcher
f = InstanceMetadataFetcher(timeout=5, num_attempts=1, base_url=sys.argv[1], env={})
print(json.dumps(f.retrieve_iam_role_credentials()))
`
	out, err := exec.CommandContext(t.Context(), py, "-c", script, url).Output()
	if err != nil {
		t.Fatalf("botocore: %v", err)
	}
	var c struct {
		AccessKey string `json:"access_key"`
	}
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("botocore output %q: %v", out, err)
	}
	return c.AccessKey
}

// TestProcessSource runs a credential process: it gets the role, instance and
// delivery as arguments, is run again halfway through the credentials'
// life, and its failures leave the last good set served until it expires;
// what it prints on stderr is never logged.
func TestProcessSource(t *testing.T) {
	dir := t.TempDir()
	broker := filepath.Join(dir, "broker")
	err := os.WriteFile(broker, []byte(fmt.Sprintf(`#!/bin/sh
echo "$@" >> %[1]s/args
if [ -e %[1]s/fail ]; then echo "broker down; leaked-secret" >&2; exit 2; fi
cat %[1]s/out.json
`, dir)), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	write := func(key string, life time.Duration) {
		t.Helper()
		out := fmt.Sprintf(`{"Version": 1, "AccessKeyId": %q, "SecretAccessKey": "proc-secret-%s", "SessionToken": "proc-token", "Expiration": %q, "AccountId": "210987654321"}`,
			key, key, clk.Now().Add(life).UTC().Format(time.RFC3339))
		if err := os.WriteFile(filepath.Join(dir, "out.json"), []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ASIAPROC1", time.Hour)

	cfg, err := config.Parse([]byte(fmt.Sprintf(`instances:
  - {instance-id: %s, iam-role: broker}
roles:
  broker:
    process: {command: [%s, "{role}", "{instance-id}", "{role-delivery}"], timeout: 10s}
`, instanceA, broker)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	m := imdscreds.NewManager(logs.logger(), clk.Now)
	if err := m.Update(cfg.Roles); err != nil {
		t.Fatal(err)
	}
	sub := imdscreds.Subject{Role: "broker", InstanceID: instanceA, V1: true}
	fn, ext := m.For(sub), m.ForExtended(sub)
	if err := m.WaitFetched(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := render(t, fn, true); d.Code != "Success" || d.AccessKeyID != "ASIAPROC1" || d.SecretAccessKey != "proc-secret-ASIAPROC1" {
		t.Errorf("first set: %+v", d)
	}
	if d := render(t, ext, false); d.AccountID != "210987654321" {
		t.Errorf("extended: %+v", d)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	for _, want := range []string{"broker " + instanceA + " 2.0\n", "broker " + instanceA + " 1.0\n"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("arguments %q lack %q", args, want)
		}
	}

	clk.Add(31 * time.Minute)
	write("ASIAPROC2", time.Hour)
	m.RefreshDue(t.Context())
	second := render(t, fn, true)
	if second.AccessKeyID != "ASIAPROC2" {
		t.Fatalf("after 31 minutes: %+v, want the second set", second)
	}

	if err := os.WriteFile(filepath.Join(dir, "fail"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(31 * time.Minute)
	m.RefreshDue(t.Context())
	if d := render(t, fn, true); d.AccessKeyID != "ASIAPROC2" {
		t.Errorf("while the process fails: %+v, want the last good set", d)
	}
	clk.set(second.expires(t))
	if d := render(t, fn, true); d.Code != "CredentialsUnavailable" {
		t.Errorf("after expiry: %+v, want the error form", d)
	}
	log := logs.String()
	if !strings.Contains(log, "process: exit status 2") {
		t.Errorf("log lacks the exit status:\n%s", log)
	}
	for _, s := range []string{"leaked-secret", "proc-secret", "proc-token"} {
		if strings.Contains(log, s) {
			t.Errorf("log holds %q:\n%s", s, log)
		}
	}
}
