package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/testenv"
)

const (
	migMixed  = "i-0aaaaaaaaaaaaaaa1" // botocore with IMDSv2 and curl with IMDSv1, from 127.0.0.1
	migClean  = "i-0bbbbbbbbbbbbbbb2" // the Go SDK with IMDSv2 only, from 127.0.0.2
	migLegacy = "i-0ccccccccccccccc3" // curl with IMDSv1 against required tokens, from 127.0.0.3
	migSecret = "migrationSecretKeyThatMustNeverBeLogged0"
)

const migrationConfig = `
instances:
  - instance-id: ` + migMixed + `
    addresses: [127.0.0.1]
    availability-zone: us-east-1a
    iam-role: app
  - instance-id: ` + migClean + `
    addresses: [127.0.0.2]
    availability-zone: us-east-1a
    iam-role: app
  - instance-id: ` + migLegacy + `
    addresses: [127.0.0.3]
    availability-zone: us-east-1a
    iam-role: app
    metadata-options: {http-tokens: required}
roles:
  app:
    static: {access-key-id: AKIAMIGRATIONEXAMPLE, secret-access-key: ` + migSecret + `, session-token: migrationSessionToken}
`

// dataDir is the server's --data-dir.
func (s *server) dataDir(t *testing.T) string {
	t.Helper()
	args := s.Args()
	dir := ""
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			dir = args[i+1] // the last one wins, as for cobra
		}
	}
	if dir != "" {
		return dir
	}
	t.Fatalf("no --data-dir in %q", args)
	return ""
}

// imdsAdmin runs an admin command of the binary against s.
func (s *server) imdsAdmin(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argv := append(args, "--admin-url", s.adminURL(t), "--data-dir", s.dataDir(t))
	o, e, err := runCmd(t.Context(), []string{"PATH=" + os.Getenv("PATH")}, imdsBin, argv...)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("imds %s: %v", strings.Join(args, " "), err)
	}
	return o, e, code
}

func migrationView(t *testing.T, s *server) map[string]migration.Instance {
	t.Helper()
	out, stderr, code := s.imdsAdmin(t, "migration", "--json")
	if code != 0 {
		t.Fatalf("imds migration --json: exit %d\n%s", code, stderr)
	}
	var list []migration.Instance
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("imds migration --json: %v\n%s", err, out)
	}
	byID := map[string]migration.Instance{}
	for _, in := range list {
		byID[in.InstanceID] = in
	}
	return byID
}

func callerBySDK(in migration.Instance, sdk string) *migration.Caller {
	for i := range in.Callers {
		if in.Callers[i].SDK == sdk {
			return &in.Callers[i]
		}
	}
	return nil
}

// Real clients produce each class: botocore and the Go SDK with IMDSv2 are
// v2, curl with IMDSv1 is v1, IMDSv1 against required tokens is
// v1-rejected. The CLI's view, enforce, check and the audit log agree, and a
// restart keeps the records.
func TestMigrationRealClients(t *testing.T) {
	curl := testenv.Command(t, "curl")
	audit := filepath.Join(t.TempDir(), "audit.log")
	s := startServer(t, migrationConfig, "--audit-log", audit)
	ctx := t.Context()

	// botocore from 127.0.0.1: token first, then credentials with it.
	if r := runBotocore(t, s.URL, false); r.AccessKey == nil || *r.AccessKey != "AKIAMIGRATIONEXAMPLE" {
		t.Fatalf("botocore got no credentials: %+v", r)
	}
	// curl from 127.0.0.1 with IMDSv1: the role's credentials and user data.
	for _, path := range []string{"/latest/meta-data/iam/security-credentials/app", "/latest/meta-data/instance-id"} {
		if out, err := exec.CommandContext(ctx, curl, "-sf", "--interface", "127.0.0.1", s.URL+path).CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v\n%s", path, err, out)
		}
	}
	// The Go SDK from 127.0.0.2, IMDSv2 only.
	if _, err := getMetadata(ctx, newIMDSClient(s, newRecorder("127.0.0.2"), false), "instance-id"); err != nil {
		t.Fatalf("Go SDK from 127.0.0.2: %v", err)
	}
	if _, err := sdkCredentials(t, s, "127.0.0.2"); err != nil {
		t.Fatalf("ec2rolecreds from 127.0.0.2: %v", err)
	}
	// curl from 127.0.0.3 with IMDSv1, refused: the instance requires tokens.
	out, err := exec.CommandContext(ctx, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.3", s.URL+"/latest/meta-data/instance-id").Output()
	if err != nil || string(out) != "401" {
		t.Fatalf("curl IMDSv1 from 127.0.0.3: %q %v, want 401", out, err)
	}

	checkView := func(t *testing.T) {
		v := migrationView(t, s)
		mixed := v[migMixed]
		if mixed.Ready || mixed.HTTPTokens != "optional" {
			t.Errorf("%s: ready %v, http-tokens %s; want not ready, optional", migMixed, mixed.Ready, mixed.HTTPTokens)
		}
		if c := callerBySDK(mixed, migration.SDKBotocore); c == nil || c.Class != migration.ClassV2 || c.Address != "127.0.0.1" || c.Requests.TokenPuts == 0 {
			t.Errorf("%s: botocore caller %+v, want class v2 from 127.0.0.1 with a token request", migMixed, c)
		}
		if c := callerBySDK(mixed, migration.SDKCurl); c == nil || c.Class != migration.ClassV1 || c.Requests.V1 != 2 || !slices.Contains(c.PathsV1, "credentials") || c.LastV1 == nil {
			t.Errorf("%s: curl caller %+v, want class v1, 2 IMDSv1 requests, credentials among its paths", migMixed, c)
		}
		clean := v[migClean]
		if !clean.Ready || len(clean.Callers) != 1 || clean.Callers[0].SDK != migration.SDKGoV2 || clean.Callers[0].Class != migration.ClassV2 {
			t.Errorf("%s: %+v, want ready with one aws-sdk-go-v2 caller of class v2", migClean, clean)
		}
		legacy := v[migLegacy]
		if c := callerBySDK(legacy, migration.SDKCurl); legacy.Ready || c == nil || c.Class != migration.ClassV1Rejected || c.Requests.V1Rejected != 1 {
			t.Errorf("%s: ready %v, curl caller %+v; want not ready, v1-rejected", migLegacy, legacy.Ready, c)
		}
	}
	t.Run("view", checkView)

	t.Run("table", func(t *testing.T) {
		out, stderr, code := s.imdsAdmin(t, "migration", migMixed)
		if code != 0 || !strings.Contains(out, "v1 ") || !strings.Contains(out, "curl") || !strings.Contains(out, "legacy code") {
			t.Errorf("imds migration %s: exit %d\n%s%s", migMixed, code, out, stderr)
		}
		_, stderr, code = s.imdsAdmin(t, "migration", "i-0000000000000dead")
		if code == 0 || !strings.Contains(stderr, "i-0000000000000dead") {
			t.Errorf("imds migration of an unknown instance: exit %d, stderr %q; want a failure naming it", code, stderr)
		}
	})

	t.Run("check", func(t *testing.T) {
		_, stderr, code := s.imdsAdmin(t, "migration", "check")
		if code != 1 || !strings.Contains(stderr, "curl/") || !strings.Contains(stderr, migLegacy) {
			t.Errorf("imds migration check: exit %d, stderr %q; want 1 naming the curl callers", code, stderr)
		}
		out, stderr, code := s.imdsAdmin(t, "migration", "check", "--instance", migClean)
		if code != 0 || !strings.Contains(out, "ok:") {
			t.Errorf("imds migration check --instance %s: exit %d\n%s%s", migClean, code, out, stderr)
		}
		_, stderr, code = s.imdsAdmin(t, "migration", "check", "--allow", "v2")
		if code != 2 {
			t.Errorf("imds migration check --allow v2: exit %d (%s), want 2", code, stderr)
		}
	})

	t.Run("enforce", func(t *testing.T) {
		_, stderr, code := s.imdsAdmin(t, "migration", "enforce", migMixed)
		if code != 1 || !strings.Contains(stderr, "curl/") || !strings.Contains(stderr, "refused "+migMixed) {
			t.Errorf("enforce %s: exit %d, stderr %q; want 1, refused, naming curl", migMixed, code, stderr)
		}
		out, _, code := s.imdsAdmin(t, "migration", "enforce", "--ready", "--dry-run")
		if code != 0 || strings.TrimSpace(out) != "would require tokens on "+migClean {
			t.Errorf("enforce --ready --dry-run: exit %d, %q", code, out)
		}
		if v := migrationView(t, s); v[migClean].HTTPTokens != "optional" || v[migMixed].HTTPTokens != "optional" {
			t.Errorf("a refusal or a dry run changed http-tokens: %s %s", v[migClean].HTTPTokens, v[migMixed].HTTPTokens)
		}
		out, stderr, code = s.imdsAdmin(t, "migration", "enforce", "--ready")
		if code != 0 || strings.TrimSpace(out) != "required tokens on "+migClean {
			t.Errorf("enforce --ready: exit %d, %q %s", code, out, stderr)
		}
		if v := migrationView(t, s); v[migClean].HTTPTokens != "required" || v[migMixed].HTTPTokens != "optional" {
			t.Errorf("after enforce --ready: http-tokens %s on %s, %s on %s; want required, optional", v[migClean].HTTPTokens, migClean, v[migMixed].HTTPTokens, migMixed)
		}
		// Enforced: IMDSv1 from the clean instance is now refused.
		if status, _ := getFrom(t, s, "127.0.0.2", "", "instance-id"); status != 401 {
			t.Errorf("IMDSv1 from %s after enforce: %d, want 401", migClean, status)
		}
	})

	t.Run("audit log", func(t *testing.T) {
		lines := waitAudit(t, audit, 4)
		raw, _ := os.ReadFile(audit)
		if strings.Contains(string(raw), migSecret) || strings.Contains(string(raw), "migrationSessionToken") {
			t.Fatalf("the audit log has a secret:\n%s", raw)
		}
		want := map[string]bool{}
		for _, e := range lines {
			want[e.Event+" "+e.InstanceID+" "+e.Caller+" "+e.RoleDelivery+" "+e.AccessKeyID] = true
		}
		for _, w := range []string{
			"credentials " + migMixed + " 127.0.0.1 2.0 AKIAMIGRATIONEXAMPLE", // botocore
			"credentials " + migMixed + " 127.0.0.1 1.0 AKIAMIGRATIONEXAMPLE", // curl
			"credentials " + migClean + " 127.0.0.2 2.0 AKIAMIGRATIONEXAMPLE", // ec2rolecreds
			"imdsv1-refused " + migLegacy + " 127.0.0.3  ",
		} {
			if !want[w] {
				t.Errorf("no audit line %q in:\n%s", w, raw)
			}
		}
	})

	t.Run("restart keeps the records", func(t *testing.T) {
		dir := s.dataDir(t)
		s.stop(t)
		v := migrationView(t, startServer(t, migrationConfig, "--data-dir", dir))
		if c := callerBySDK(v[migMixed], migration.SDKCurl); c == nil || c.Class != migration.ClassV1 || c.Requests.V1 != 2 {
			t.Errorf("after a restart, %s's curl caller is %+v; want the records kept", migMixed, c)
		}
	})
}

func readAudit(t *testing.T, path string) []migration.AuditEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []migration.AuditEntry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var e migration.AuditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// SIGHUP reopens the audit log, so that logrotate can move it away.
func TestAuditLogReopen(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.log")
	s := startServer(t, migrationConfig, "--audit-log", audit)
	creds := "iam/security-credentials/app"
	mustGetFrom(t, s, "127.0.0.1", "", creds)
	waitAudit(t, audit, 1)
	rotated := audit + ".1"
	if err := os.Rename(audit, rotated); err != nil {
		t.Fatal(err)
	}
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen is done when the new file exists.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(audit); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new audit log after SIGHUP\n%s", s.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustGetFrom(t, s, "127.0.0.1", "", creds)
	if got := waitAudit(t, audit, 1); got[0].Event != migration.AuditCredentials || got[0].AccessKeyID != "AKIAMIGRATIONEXAMPLE" {
		t.Errorf("new audit log: %+v", got)
	}
	if old := readAudit(t, rotated); len(old) != 1 {
		t.Errorf("rotated audit log has %d lines, want 1", len(old))
	}
}

// waitAudit waits until the audit log has at least n lines and returns them.
func waitAudit(t *testing.T, path string, n int) []migration.AuditEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if lines := readAudit(t, path); len(lines) >= n || time.Now().After(deadline) {
			if len(lines) < n {
				t.Fatalf("audit log %s has %d lines, want %d", path, len(lines), n)
			}
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}
