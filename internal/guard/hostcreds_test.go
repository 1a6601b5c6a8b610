package guard_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imds/imds/internal/testenv"
)

// A role with source-credentials upstream is assumed (moto's STS) with the
// host's credentials read from the upstream: the guard's environment has no
// credentials of its own, so the role works only through them.
func TestAssumeRoleWithHostCredentials(t *testing.T) {
	py := testenv.Python(t, "moto.server")
	mt := testenv.StartMoto(t, py)
	dir := t.TempDir()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))

	e := start(t, `roles:
  app:
    assume-role:
      role-arn: arn:aws:iam::123456789012:role/app
      source-credentials: upstream
      sts-endpoint: `+mt.URL+`
      region: us-east-1
guard:
  callers:
    - {name: app, match: [127.0.0.4], role: app}
`)
	c := client("127.0.0.4")
	tok := e.token(t, c)
	code, _, body := do(t, c, "GET", e.url+"/latest/meta-data/iam/security-credentials/app", "X-aws-ec2-metadata-token", tok)
	var doc struct{ Code, AccessKeyId, Token string }
	if err := json.Unmarshal([]byte(body), &doc); err != nil || code != 200 || doc.Code != "Success" || doc.Token == "" || strings.Contains(body, "AKIAHOST") {
		t.Errorf("role credentials: %d %q (%v)", code, body, err)
	}
}
