package cli_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/controlplane"
	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store/boltstore"
	"github.com/imds/imds/internal/ui"
)

// `imds ui` prints, first, a login URL that works once.
func TestUICommand(t *testing.T) {
	t.Setenv("IMDS_ADMIN_URL", "")
	t.Setenv("IMDS_ACCESS_KEY_ID", "")
	t.Setenv("IMDS_SECRET_ACCESS_KEY", "")
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	op := registry.NewOperator()
	page := ui.New(ui.Options{Migration: migration.NewService(migration.NewRecorder(migration.Options{}), nil)})
	srv := httptest.NewServer(controlplane.New(controlplane.Options{
		Registry:  registry.New(st, nil),
		Operators: operators{op.AccessKeyID: op.SecretAccessKey},
		UI:        page,
	}))
	t.Cleanup(srv.Close)
	dataDir := t.TempDir()
	if err := adminapi.WriteCredentialsFile(filepath.Join(dataDir, "credentials"), adminapi.Credentials{AccessKeyID: op.AccessKeyID, SecretAccessKey: op.SecretAccessKey}); err != nil {
		t.Fatal(err)
	}
	a := &adminCLI{t: t, url: srv.URL, dataDir: dataDir, withAuth: []string{"--admin-url", srv.URL, "--data-dir", dataDir}}

	code, out, errOut := a.run("", "ui")
	if code != 0 {
		t.Fatalf("imds ui: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], srv.URL+"/ui/login?token=") || !strings.Contains(lines[1], "works once") {
		t.Fatalf("imds ui printed %q; want the login URL, then a line of help", out)
	}
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := client.Get(lines[0])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET the login URL, time %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
	}

	code, _, errOut = a.runRaw("", "ui", "--admin-url", srv.URL, "--credentials", a.file("creds", "[imds]\naws_access_key_id = IMDSWRONG\naws_secret_access_key = nope\n"))
	if code != 1 || !strings.Contains(errOut, "refused the credentials") {
		t.Errorf("imds ui with wrong credentials: exit %d, stderr %q; want 1 and the refusal", code, errOut)
	}
	if code, _, errOut := a.run("", "ui", "extra"); code != 2 {
		t.Errorf("imds ui extra: exit %d, stderr %q; want 2", code, errOut)
	}
}
