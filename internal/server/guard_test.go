package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
)

// imds guard in front of an imds serve that requires tokens (standing in
// for EC2's IMDS): an IMDSv1 caller is served, and the migration view of
// the guard's control plane shows it with its process.
func TestGuardMode(t *testing.T) {
	up := startWith(t, Options{Listen: []string{"127.0.0.1:0"}, DataDir: t.TempDir(), ConfigPath: writeFile(t, `default-instance: i-0123456789abcdef1
instances:
  - instance-id: i-0123456789abcdef1
    metadata-options: {http-tokens: required}
`)})
	dir := t.TempDir()
	g := startWith(t, Options{
		Listen: []string{"127.0.0.1:0"}, AdminListen: "127.0.0.1:0", DataDir: dir,
		Guard: true, GuardUpstream: "http://" + up.Addrs()[0].String(),
	})
	if code, _ := get(t, "http://"+up.Addrs()[0].String()+"/latest/meta-data/instance-id"); code != 401 {
		t.Fatalf("upstream v1: %d, want 401", code)
	}
	code, body := get(t, "http://"+g.Addrs()[0].String()+"/latest/meta-data/instance-id")
	if code != 200 || body != "i-0123456789abcdef1" {
		t.Fatalf("guard v1: %d %q", code, body)
	}
	if code, body := get(t, "http://"+g.Addrs()[0].String()+"/latest/meta-data/iam/security-credentials/"); code != 404 {
		t.Errorf("credentials by default: %d %q, want 404", code, body)
	}
	if code, body := get(t, "http://"+g.AdminAddr().String()+"/readyz"); code != 200 {
		t.Errorf("readyz: %d %q", code, body)
	}
	creds, err := adminapi.ReadCredentialsFile(filepath.Join(dir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := adminclient.New(adminclient.Options{URL: "http://" + g.AdminAddr().String(), Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.MigrationInstance(t.Context(), "i-0123456789abcdef1")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, cl := range in.Callers {
		if cl.Class == "v1" && strings.HasPrefix(cl.Process, fmt.Sprintf("pid %d ", os.Getpid())) {
			found = true
		}
	}
	if !found {
		t.Errorf("callers %+v: want a v1 caller with this process", in.Callers)
	}
}

func writeFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
