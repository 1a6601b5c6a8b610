package controlplane

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/ui"
)

// The login endpoint needs SigV4; the page it leads to does not (a browser
// cannot sign) and runs its own session check instead.
func TestUILogin(t *testing.T) {
	e := newAdminEnv(t)
	ops := adminTestOperators{"IMDSTESTKEY": "test-secret"}
	now := func() time.Time { return adminTestNow }
	page := ui.New(ui.Options{Migration: migration.NewService(migration.NewRecorder(migration.Options{Now: now}), nil), Now: now})
	srv := httptest.NewServer(New(Options{Registry: e.reg, Operators: ops, UI: page, Now: now}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	post := func(sign bool) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v1/ui/login", nil)
		if err != nil {
			t.Fatal(err)
		}
		if sign {
			if err := adminapi.SignRequest(req, nil, "IMDSTESTKEY", "test-secret", "us-east-1", "imds", adminTestNow); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := post(false); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned POST /v1/ui/login: status %d, want 401", resp.StatusCode)
	}
	resp := post(true)
	var l adminapi.UILogin
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("signed POST /v1/ui/login: status %d (%v), want 200", resp.StatusCode, err)
	}
	if !strings.HasPrefix(l.Path, "/ui/login?token=") || !l.Expires.Equal(adminTestNow.Add(time.Minute)) {
		t.Errorf("login %+v: want a /ui/login?token= path expiring in 60 s", l)
	}

	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/ui/"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "imds ui") {
		t.Errorf("GET /ui/ without a session: status %d, want the page's 401 telling to run imds ui; body:\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(l.Path); resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Errorf("GET %s: status %d, cookies %q; want 303 and the session cookie", l.Path, resp.StatusCode, resp.Header["Set-Cookie"])
	}
	if resp, _ := get("/ui"); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: status %d, Location %q; want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
}
