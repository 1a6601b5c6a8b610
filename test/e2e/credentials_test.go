package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

	"github.com/imds/imds/internal/testenv"
)

// credDoc is a document of iam/security-credentials/ROLE or
// iam/security-credentials-extended/ROLE, or its error form.
type credDoc struct {
	Code, Message, LastUpdated, Type   string
	AccessKeyID                        string `json:"AccessKeyId"`
	SecretAccessKey, Token, Expiration string
	AccountID                          string `json:"AccountId"`
}

func parseCredDoc(t *testing.T, body string) credDoc {
	t.Helper()
	var d credDoc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("credentials document %q: %v", body, err)
	}
	return d
}

// expires is the document's Expiration.
func (d credDoc) expires(t *testing.T) time.Time {
	t.Helper()
	e, err := time.Parse("2006-01-02T15:04:05Z", d.Expiration)
	if err != nil {
		t.Fatalf("Expiration %q: %v, want YYYY-MM-DDTHH:MM:SSZ", d.Expiration, err)
	}
	return e
}

// checkLifetime checks that d expires about life from now.
func checkLifetime(t *testing.T, what string, d credDoc, life time.Duration) {
	t.Helper()
	left := time.Until(d.expires(t))
	if left < life-time.Minute || left > life+5*time.Second {
		t.Errorf("%s: expires in %s, want about %s", what, left.Round(time.Second), life)
	}
}

// tokenFrom is an IMDSv2 token for the instance at the loopback address from.
func tokenFrom(t *testing.T, s *server, from string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, s.URL+"/latest/api/token", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "300")
	resp, err := newRecorder(from).Do(req)
	if err != nil {
		t.Fatalf("PUT /latest/api/token from %s: %v", from, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		t.Fatalf("PUT /latest/api/token from %s: status %d, body %q; want 200 and a token", from, resp.StatusCode, b)
	}
	return string(b)
}

// getFrom GETs /latest/meta-data/PATH (or /latest/PATH for dynamic/...) from
// the loopback address from, with token unless it is empty (IMDSv1).
func getFrom(t *testing.T, s *server, from, token, path string) (int, string) {
	t.Helper()
	if !strings.HasPrefix(path, "dynamic/") {
		path = "meta-data/" + path
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/latest/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-aws-ec2-metadata-token", token)
	}
	resp, err := newRecorder(from).Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, from, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, from, err)
	}
	return resp.StatusCode, string(b)
}

// mustGetFrom is getFrom that wants a 200.
func mustGetFrom(t *testing.T, s *server, from, token, path string) string {
	t.Helper()
	status, body := getFrom(t, s, from, token, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s from %s (token %v): status %d, body %q; want 200", path, from, token != "", status, body)
	}
	return body
}

// sdkCredentials reads role credentials with the Go SDK's ec2rolecreds
// provider, as the instance at from, through IMDSv2 only.
func sdkCredentials(t *testing.T, s *server, from string) (aws.Credentials, error) {
	t.Helper()
	c := imds.New(imds.Options{
		Endpoint:   s.URL,
		HTTPClient: newRecorder(from),
		// The serve process's environment, which this test shares, may
		// disable IMDS for the SDK; this client is aimed at imds itself.
		ClientEnableState: imds.ClientEnabled,
		EnableFallback:    aws.FalseTernary,
	})
	return ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(t.Context())
}

// adminURL is the control plane's base URL, from its log line.
func (s *server) adminURL(t *testing.T) string {
	t.Helper()
	const msg = `msg="control plane listening"`
	s.waitLog(t, 0, msg)
	for _, line := range strings.Split(s.Stderr(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		if a, ok := testenv.LogAttr(line, "addr"); ok {
			return "http://" + a
		}
	}
	t.Fatalf("no addr in the %s line:\n%s", msg, s.Stderr())
	return ""
}

// readyz GETs /readyz of the control plane at admin.
func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, admin+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/readyz: %v", admin, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// withAccount is the legacy document with AccountId added after
// Expiration: what iam/security-credentials-extended serves.
func withAccount(legacy, account string) string {
	return strings.TrimSuffix(legacy, "\n}") + ",\n  \"AccountId\" : \"" + account + "\"\n}"
}

// callerARN asks STS at endpoint whose credentials d holds.
func callerARN(t *testing.T, endpoint string, d credDoc) string {
	t.Helper()
	c := sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  awscreds.NewStaticCredentialsProvider(d.AccessKeyID, d.SecretAccessKey, d.Token),
	})
	out, err := c.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity with %s: %v", d.AccessKeyID, err)
	}
	return aws.ToString(out.Arn)
}

// serveAWSEnv gives the serve processes started by this test (they inherit
// its environment) their own AWS credentials and nothing else of this
// machine's AWS configuration, with IMDS disabled for their SDK.
func serveAWSEnv(t *testing.T, accessKeyID, secretAccessKey string) {
	t.Helper()
	testenv.IsolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", accessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretAccessKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// The role of TestAssumeRoleEndToEnd.
const (
	credAccount = "123456789012"
	credRoleARN = "arn:aws:iam::" + credAccount + ":role/app"
)

// TestAssumeRoleEndToEnd serves assume-role credentials minted by moto's
// STS through the built binary: the Go SDK and botocore get session
// credentials named after the instance; IMDSv1 and IMDSv2 get different
// sets under http-tokens optional, and only IMDSv2 exists under required;
// the extended document adds the role's account; when STS goes away the
// same sets keep being served.
func TestAssumeRoleEndToEnd(t *testing.T) {
	// Not parallel: the serve process takes its AWS credentials from the
	// environment, set here.
	mt := testenv.StartMoto(t, testenv.Python(t, "moto.server"))
	const sourceSecret = "imds-source-secret"
	serveAWSEnv(t, "AKIAIMDSSOURCE", sourceSecret)

	cfg := fmt.Sprintf(`instances:
  - instance-id: %s
    addresses: [127.0.0.1]
    account-id: "%s"
    availability-zone: us-east-1a
    iam-role: app
    metadata-options: {http-tokens: optional}
  - instance-id: %s
    addresses: [%s]
    account-id: "%s"
    availability-zone: us-east-1b
    iam-role: app
    metadata-options: {http-tokens: required}
roles:
  app:
    assume-role:
      role-arn: %s
      sts-endpoint: %s
      region: us-east-1
      duration: 15m
`, webInstanceID, credAccount, dbInstanceID, dbAddress, credAccount, credRoleARN, mt.URL)
	s := startServer(t, cfg, "--log-level", "debug")
	admin := s.adminURL(t)
	const session = 15 * time.Minute

	// web, IMDSv2, through the Go SDK.
	sdk, err := sdkCredentials(t, s, "127.0.0.1")
	if err != nil {
		t.Fatalf("ec2rolecreds Retrieve: %v\nimds log:\n%s", err, s.Stderr())
	}
	if !strings.HasPrefix(sdk.AccessKeyID, "ASIA") || sdk.SessionToken == "" || !sdk.CanExpire {
		t.Errorf("Go SDK credentials: key %s, session token %d bytes, CanExpire %v; want an ASIA key, a token, an expiry",
			sdk.AccessKeyID, len(sdk.SessionToken), sdk.CanExpire)
	}
	if left := time.Until(sdk.Expires); left < session-time.Minute || left > session+5*time.Second {
		t.Errorf("Go SDK credentials expire in %s, want about %s", left.Round(time.Second), session)
	}

	// web: the raw documents, IMDSv2 and IMDSv1.
	webToken := tokenFrom(t, s, "127.0.0.1")
	v2Body := mustGetFrom(t, s, "127.0.0.1", webToken, "iam/security-credentials/app")
	v1Body := mustGetFrom(t, s, "127.0.0.1", "", "iam/security-credentials/app")
	v2, v1 := parseCredDoc(t, v2Body), parseCredDoc(t, v1Body)
	for name, d := range map[string]credDoc{"web IMDSv2": v2, "web IMDSv1": v1} {
		if d.Code != "Success" || d.Type != "AWS-HMAC" || !strings.HasPrefix(d.AccessKeyID, "ASIA") || d.SecretAccessKey == "" || d.Token == "" {
			t.Errorf("%s: %+v, want Success, AWS-HMAC, an ASIA key, a secret and a token", name, d)
		}
		checkLifetime(t, name, d, session)
	}
	if v2.AccessKeyID != sdk.AccessKeyID || v2.Token != sdk.SessionToken {
		t.Errorf("Go SDK got %s, the IMDSv2 document has %s: want the same set", sdk.AccessKeyID, v2.AccessKeyID)
	}
	if v1.AccessKeyID == v2.AccessKeyID || v1.Token == v2.Token || v1.SecretAccessKey == v2.SecretAccessKey {
		t.Errorf("http-tokens optional: IMDSv1 and IMDSv2 got the same set %s, want different sets", v1.AccessKeyID)
	}

	// botocore's chain, IMDSv2 (AWS_EC2_METADATA_V1_DISABLED), as web.
	if r := runBotocore(t, s.URL, false); strPtr(r.Method) != "iam-role" || strPtr(r.AccessKey) != v2.AccessKeyID ||
		strPtr(r.SecretKey) != v2.SecretAccessKey || strPtr(r.Token) != v2.Token {
		t.Errorf("botocore: method %s, key %s, error %s; want iam-role and the IMDSv2 set %s",
			strPtr(r.Method), strPtr(r.AccessKey), strPtr(r.Error), v2.AccessKeyID)
	} else if exp, err := time.Parse(time.RFC3339, strPtr(r.Expiry)); err != nil || time.Until(exp) < 10*time.Minute {
		// Not the document's Expiration: botocore moves an expiry that is
		// within its refresh window plus jitter (12 to 20 minutes) to now
		// plus that window, which a 15m session always is.
		t.Errorf("botocore expiry %s (%v), want 10 minutes or more from now", strPtr(r.Expiry), err)
	}

	// db requires tokens: IMDSv1 gets 401, IMDSv2 a set of its own.
	if status, _ := getFrom(t, s, dbAddress, "", "iam/security-credentials/app"); status != http.StatusUnauthorized {
		t.Errorf("db, IMDSv1: status %d, want 401", status)
	}
	dbToken := tokenFrom(t, s, dbAddress)
	db := parseCredDoc(t, mustGetFrom(t, s, dbAddress, dbToken, "iam/security-credentials/app"))
	if db.Code != "Success" || !strings.HasPrefix(db.AccessKeyID, "ASIA") || db.Token == "" {
		t.Errorf("db, IMDSv2: %+v", db)
	}
	checkLifetime(t, "db IMDSv2", db, session)
	if db.AccessKeyID == v2.AccessKeyID || db.AccessKeyID == v1.AccessKeyID {
		t.Errorf("db shares web's set %s, want a session of its own", db.AccessKeyID)
	}
	if sdkDB, err := sdkCredentials(t, s, dbAddress); err != nil || sdkDB.AccessKeyID != db.AccessKeyID {
		t.Errorf("db, Go SDK: %s (%v), want %s", sdkDB.AccessKeyID, err, db.AccessKeyID)
	}

	// Each set is an STS session of the role named after its instance.
	for _, c := range []struct {
		name     string
		d        credDoc
		instance string
	}{{"web IMDSv2", v2, webInstanceID}, {"web IMDSv1", v1, webInstanceID}, {"db IMDSv2", db, dbInstanceID}} {
		want := "arn:aws:sts::" + credAccount + ":assumed-role/app/" + c.instance
		if got := callerARN(t, mt.URL, c.d); got != want {
			t.Errorf("%s: caller %s, want %s", c.name, got, want)
		}
	}

	// Only three sessions were minted: none for IMDSv1 on db.
	fetched := map[string]bool{}
	for _, line := range strings.Split(s.Stderr(), "\n") {
		if strings.Contains(line, `msg="credentials fetched"`) && strings.Contains(line, "role=app") {
			inst, _ := testenv.LogAttr(line, "instance")
			del, _ := testenv.LogAttr(line, "delivery")
			fetched[inst+" "+del] = true
		}
	}
	for _, k := range []string{webInstanceID + " 1.0", webInstanceID + " 2.0", dbInstanceID + " 2.0"} {
		if !fetched[k] {
			t.Errorf("no credentials fetched for %s; fetched: %v", k, fetched)
		}
	}
	if fetched[dbInstanceID+" 1.0"] {
		t.Errorf("an IMDSv1 set was fetched for db, which requires tokens")
	}

	// The extended document: the same set plus the role's account.
	for _, c := range []struct {
		name, from, token, legacy string
	}{
		{"web IMDSv2", "127.0.0.1", webToken, v2Body},
		{"web IMDSv1", "127.0.0.1", "", v1Body},
	} {
		got := mustGetFrom(t, s, c.from, c.token, "iam/security-credentials-extended/app")
		if want := withAccount(c.legacy, credAccount); got != want {
			t.Errorf("%s: security-credentials-extended/app =\n%s\nwant\n%s", c.name, got, want)
		}
	}

	if status, body := readyz(t, admin); status != http.StatusOK {
		t.Errorf("/readyz with STS up: %d %q, want 200", status, body)
	}

	// Outage: STS goes away. The sets are renewed halfway through their
	// 15 minutes, so nothing is asked of STS within this test: the same
	// sets are served, and /readyz has nothing to report. That a failed
	// renewal is reported, and that the sets are served until they expire,
	// is tested here with a process source (TestProcessRenewalFailure) and
	// for assume-role with a driven clock in test/credentials.
	mt.Stop()
	if got := mustGetFrom(t, s, "127.0.0.1", webToken, "iam/security-credentials/app"); got != v2Body {
		t.Errorf("web IMDSv2 with STS down:\n%s\nwant the same set:\n%s", got, v2Body)
	}
	if got := mustGetFrom(t, s, "127.0.0.1", "", "iam/security-credentials/app"); got != v1Body {
		t.Errorf("web IMDSv1 with STS down:\n%s\nwant the same set:\n%s", got, v1Body)
	}
	if c, err := sdkCredentials(t, s, "127.0.0.1"); err != nil || c.AccessKeyID != v2.AccessKeyID {
		t.Errorf("Go SDK with STS down: %s (%v), want %s", c.AccessKeyID, err, v2.AccessKeyID)
	}
	if status, body := readyz(t, admin); status != http.StatusOK {
		t.Errorf("/readyz with STS down before any renewal: %d %q, want 200", status, body)
	}

	log := s.Stderr()
	for _, secret := range []string{sourceSecret, v1.SecretAccessKey, v1.Token, v2.SecretAccessKey, v2.Token, db.SecretAccessKey, db.Token} {
		if strings.Contains(log, secret) {
			t.Errorf("the imds log holds a secret")
		}
	}
}

// processRole is a role whose process source is testdata/credential_process.sh
// with state in dir, printing credentials that last life.
func processRole(t *testing.T, name, dir string, life time.Duration) string {
	t.Helper()
	script, err := filepath.Abs("testdata/credential_process.sh")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("  %s:\n    process: {command: [/bin/sh, %s, %s, \"%d\", \"{role}\", \"{instance-id}\", \"{role-delivery}\"], timeout: 10s}\n",
		name, script, dir, int(life.Seconds()))
}

// needShellDate checks what testdata/credential_process.sh runs with: /bin/sh
// and a date that reads @SECONDS.
func needShellDate(t *testing.T) {
	t.Helper()
	testenv.Command(t, "/bin/sh")
	out, err := exec.CommandContext(t.Context(), "date", "-u", "-d", "@0", "+%Y").Output()
	need(t, err == nil && strings.TrimSpace(string(out)) == "1970", "date -d @SECONDS is not supported: %v", err)
}

// TestProcessCredentials serves credentials from a credential process
// through the built binary: the Go SDK and botocore read them, IMDSv1 and
// IMDSv2 get different runs, the extended document has the account the
// process printed or is 404 without one, and a process that fails gives the
// error form (HTTP 200, a Code other than Success) and a failing /readyz.
func TestProcessCredentials(t *testing.T) {
	t.Parallel()
	needShellDate(t)
	brokerDir, plainDir, brokenDir := t.TempDir(), t.TempDir(), t.TempDir()
	const account = "210987654321"
	if err := os.WriteFile(filepath.Join(brokerDir, "account"), []byte(account+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(brokenDir, "fail"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		plainInstance = "i-0c0c0c0c0c0c0c0c3"
		plainAddress  = "127.0.0.3"
	)
	cfg := fmt.Sprintf(`instances:
  - {instance-id: %s, addresses: [127.0.0.1], iam-role: broker, metadata-options: {http-tokens: optional}}
  - {instance-id: %s, addresses: [%s], iam-role: broken, metadata-options: {http-tokens: optional}}
  - {instance-id: %s, addresses: [%s], iam-role: plain, metadata-options: {http-tokens: required}}
roles:
`, webInstanceID, dbInstanceID, dbAddress, plainInstance, plainAddress) +
		processRole(t, "broker", brokerDir, time.Hour) +
		processRole(t, "plain", plainDir, time.Hour) +
		processRole(t, "broken", brokenDir, time.Hour)
	s := startServer(t, cfg, "--log-level", "debug")
	admin := s.adminURL(t)

	// broker, IMDSv2 and IMDSv1.
	token := tokenFrom(t, s, "127.0.0.1")
	v2Body := mustGetFrom(t, s, "127.0.0.1", token, "iam/security-credentials/broker")
	v1Body := mustGetFrom(t, s, "127.0.0.1", "", "iam/security-credentials/broker")
	v2, v1 := parseCredDoc(t, v2Body), parseCredDoc(t, v1Body)
	for _, c := range []struct {
		name     string
		d        credDoc
		delivery string
	}{{"IMDSv2", v2, "2.0"}, {"IMDSv1", v1, "1.0"}} {
		v := strings.TrimSuffix(c.delivery, ".0")
		prefix := "-broker-" + webInstanceID + "-" + c.delivery + "-"
		if c.d.Code != "Success" || c.d.Type != "AWS-HMAC" || !strings.HasPrefix(c.d.AccessKeyID, "ASIAPROCV"+v+"R") ||
			!strings.HasPrefix(c.d.SecretAccessKey, "proc-secret"+prefix) || !strings.HasPrefix(c.d.Token, "proc-token"+prefix) {
			t.Errorf("broker %s: %+v, want the process's set for role broker, instance %s, delivery %s", c.name, c.d, webInstanceID, c.delivery)
		}
		checkLifetime(t, "broker "+c.name, c.d, time.Hour)
	}
	if v1.AccessKeyID == v2.AccessKeyID {
		t.Errorf("IMDSv1 and IMDSv2 got the same set %s, want different runs", v1.AccessKeyID)
	}
	if sdk, err := sdkCredentials(t, s, "127.0.0.1"); err != nil || sdk.AccessKeyID != v2.AccessKeyID || sdk.SessionToken != v2.Token {
		t.Errorf("Go SDK: %s (%v), want the IMDSv2 set %s", sdk.AccessKeyID, err, v2.AccessKeyID)
	}
	if r := runBotocore(t, s.URL, false); strPtr(r.AccessKey) != v2.AccessKeyID || strPtr(r.Token) != v2.Token {
		t.Errorf("botocore: key %s, error %s; want the IMDSv2 set %s", strPtr(r.AccessKey), strPtr(r.Error), v2.AccessKeyID)
	}
	if got := mustGetFrom(t, s, "127.0.0.1", token, "iam/security-credentials-extended/broker"); got != withAccount(v2Body, account) {
		t.Errorf("broker: security-credentials-extended =\n%s\nwant\n%s", got, withAccount(v2Body, account))
	}

	// plain prints no AccountId: 404 on the extended path, where clients
	// fall back to the legacy one.
	plainToken := tokenFrom(t, s, plainAddress)
	plain := parseCredDoc(t, mustGetFrom(t, s, plainAddress, plainToken, "iam/security-credentials/plain"))
	if plain.Code != "Success" || !strings.HasPrefix(plain.AccessKeyID, "ASIAPROCV2R") {
		t.Errorf("plain: %+v", plain)
	}
	if status, body := getFrom(t, s, plainAddress, plainToken, "iam/security-credentials-extended/plain"); status != http.StatusNotFound {
		t.Errorf("plain: security-credentials-extended: %d %q, want 404", status, body)
	}

	// broken's process always fails: no good credentials ever, so the
	// error form, to IMDSv1 and IMDSv2, and to the extended path.
	brokenToken := tokenFrom(t, s, dbAddress)
	for _, c := range []struct{ name, token, path string }{
		{"IMDSv2", brokenToken, "iam/security-credentials/broken"},
		{"IMDSv1", "", "iam/security-credentials/broken"},
		{"IMDSv2 extended", brokenToken, "iam/security-credentials-extended/broken"},
	} {
		status, body := getFrom(t, s, dbAddress, c.token, c.path)
		d := parseCredDoc(t, body)
		if status != http.StatusOK || d.Code == "" || d.Code == "Success" || d.AccessKeyID != "" || d.LastUpdated == "" ||
			!strings.Contains(d.Message, "broken") || strings.Contains(body, "do not log this") {
			t.Errorf("broken %s: %d %s, want 200 and the error form naming the role", c.name, status, body)
		}
	}
	if _, err := sdkCredentials(t, s, dbAddress); err == nil || !strings.Contains(err.Error(), "CredentialsUnavailable") {
		t.Errorf("Go SDK, broken: %v, want an error with the document's Code", err)
	}

	status, body := readyz(t, admin)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "role broken:") ||
		strings.Contains(body, "role broker:") || strings.Contains(body, "role plain:") {
		t.Errorf("/readyz: %d %q, want 503 naming role broken only", status, body)
	}

	log := s.Stderr()
	if !strings.Contains(log, "process: exit status 3") {
		t.Errorf("the imds log lacks the process's exit status:\n%s", log)
	}
	for _, secret := range []string{"do not log this", "proc-secret", "proc-token"} {
		if strings.Contains(log, secret) {
			t.Errorf("the imds log holds %q", secret)
		}
	}
}

// TestProcessRenewalFailure lets a credential source fail at renewal,
// through the built binary, with the shortest lifetime imds accepts (just
// over a minute, renewed about halfway): the same set keeps being served
// while /readyz reports the failure, and once it expires the error form is
// served. It waits up to about a minute and a half.
func TestProcessRenewalFailure(t *testing.T) {
	t.Parallel()
	needShellDate(t)
	dir := t.TempDir()
	const life = 65 * time.Second
	cfg := fmt.Sprintf(`instances:
  - {instance-id: %s, addresses: [127.0.0.1], iam-role: broker, metadata-options: {http-tokens: required}}
roles:
`, webInstanceID) + processRole(t, "broker", dir, life)
	s := startServer(t, cfg)
	admin := s.adminURL(t)
	token := tokenFrom(t, s, "127.0.0.1")
	const path = "iam/security-credentials/broker"

	first := mustGetFrom(t, s, "127.0.0.1", token, path)
	d := parseCredDoc(t, first)
	if d.Code != "Success" {
		t.Fatalf("first document: %s", first)
	}
	updated, err := time.Parse("2006-01-02T15:04:05Z", d.LastUpdated)
	if err != nil {
		t.Fatalf("LastUpdated %q: %v", d.LastUpdated, err)
	}
	expires := d.expires(t)
	if status, body := readyz(t, admin); status != http.StatusOK {
		t.Fatalf("/readyz before any failure: %d %q, want 200", status, body)
	}
	if err := os.WriteFile(filepath.Join(dir, "fail"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// Until the renewal fails, /readyz is 200; then 503, while the same set
	// is served.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(time.Until(expires))
	defer deadline.Stop()
	var failedAt time.Time
	for failedAt.IsZero() {
		select {
		case <-deadline.C:
			t.Fatalf("/readyz still 200 when the credentials expired at %s\nimds log:\n%s", d.Expiration, s.Stderr())
		case <-tick.C:
		}
		if got := mustGetFrom(t, s, "127.0.0.1", token, path); got != first {
			t.Fatalf("before expiry, with the process failing:\n%s\nwant the first set:\n%s", got, first)
		}
		status, body := readyz(t, admin)
		switch status {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			failedAt = time.Now()
			if !strings.Contains(body, "role broker: 1 credential sets failing to renew") {
				t.Errorf("/readyz after the failed renewal: %q, want the role's failing set", body)
			}
		default:
			t.Fatalf("/readyz: %d %q", status, body)
		}
	}
	// Renewal is due halfway through the lifetime, less up to a tenth.
	if early := updated.Add(life*4/10 - time.Second); failedAt.Before(early) {
		t.Errorf("/readyz reported a failure at %s, before the renewal was due (%s)", failedAt.UTC().Format(time.RFC3339), early.UTC().Format(time.RFC3339))
	}
	if got := mustGetFrom(t, s, "127.0.0.1", token, path); got != first {
		t.Errorf("after the failed renewal:\n%s\nwant the first set:\n%s", got, first)
	}
	if sdk, err := sdkCredentials(t, s, "127.0.0.1"); err != nil || sdk.AccessKeyID != d.AccessKeyID {
		t.Errorf("Go SDK after the failed renewal: %s (%v), want %s", sdk.AccessKeyID, err, d.AccessKeyID)
	}

	// At expiry, the error form.
	deadline.Reset(time.Until(expires) + 15*time.Second)
	for {
		select {
		case <-deadline.C:
			t.Fatalf("still serving the expired set 15s after %s", d.Expiration)
		case <-tick.C:
		}
		body := mustGetFrom(t, s, "127.0.0.1", token, path)
		if body == first {
			continue
		}
		if now := time.Now(); now.Before(expires) {
			t.Errorf("the set changed at %s, before it expired at %s:\n%s", now.UTC().Format(time.RFC3339), d.Expiration, body)
		}
		if e := parseCredDoc(t, body); e.Code == "Success" || e.AccessKeyID != "" || !strings.Contains(e.Message, "broker") {
			t.Errorf("after expiry: %s, want the error form", body)
		}
		break
	}
	if _, err := sdkCredentials(t, s, "127.0.0.1"); err == nil {
		t.Error("Go SDK after expiry: got credentials, want an error")
	}
	if status, body := readyz(t, admin); status != http.StatusServiceUnavailable || !strings.Contains(body, "expired after failed fetches") {
		t.Errorf("/readyz after expiry: %d %q, want 503 saying the set expired", status, body)
	}
}
