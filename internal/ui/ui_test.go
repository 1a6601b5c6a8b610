package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/identity"
	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/ui"
)

const (
	legacyID = "i-0a1b2c3d4e5f60718" // a curl caller with IMDSv1: not ready
	modernID = "i-0fedcba9876543210" // the Go SDK with IMDSv2 only: ready
)

// fleet is the registry's part the migration service needs, in memory.
type fleet struct {
	mu     sync.Mutex
	tokens map[string]string
}

func (f *fleet) Instances(context.Context) ([]migration.InstanceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []migration.InstanceInfo
	for id, t := range f.tokens {
		out = append(out, migration.InstanceInfo{ID: id, HTTPTokens: t})
	}
	slices.SortFunc(out, func(a, b migration.InstanceInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fleet) RequireTokens(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[id] = "required"
	return nil
}

func (f *fleet) httpTokens(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens[id]
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	h     *ui.Handler
	fleet *fleet
	clock *clock
}

// newEnv is the page over a real migration service whose recorder has seen
// curl use IMDSv1 on legacyID and the Go SDK use IMDSv2 on modernID.
func newEnv(t *testing.T) *env {
	t.Helper()
	c := &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	rec := migration.NewRecorder(migration.Options{Now: c.Now})
	f := &fleet{tokens: map[string]string{legacyID: "optional", modernID: "optional"}}
	observe := func(id, from, ua, method, path string, token bool) {
		rec.Observe(dataplane.Outcome{
			Instance: id, Via: identity.ViaAddress, Source: netip.MustParseAddr(from), UserAgent: ua,
			Method: method, Path: path, Token: token, TokenValid: token, Status: 200, HopLimit: 2,
		})
	}
	observe(legacyID, "10.0.0.12", "curl/8.5.0", "GET", "/latest/meta-data/instance-id", false)
	observe(modernID, "10.0.0.13", "aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.24.1 md/GOOS#linux", "PUT", "/latest/api/token", false)
	observe(modernID, "10.0.0.13", "aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.24.1 md/GOOS#linux", "GET", "/latest/meta-data/instance-id", true)
	h := ui.New(ui.Options{Migration: migration.NewService(rec, f), Now: c.Now})
	return &env{h: h, fleet: f, clock: c}
}

// do serves one request; cookie is the session (none if empty).
func (e *env) do(t *testing.T, method, target, cookie string, hdr map[string]string, body string) *http.Response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, target, strings.NewReader(body))
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: ui.CookieName, Value: cookie})
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w.Result()
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// login logs in with a fresh login token and returns the session cookie's
// value and the page's CSRF token.
func (e *env) login(t *testing.T) (cookie, csrf string) {
	t.Helper()
	path, _ := e.h.NewLogin()
	resp := e.do(t, "GET", path, "", nil, "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET %s: status %d, Location %q; want 303 to /ui/", path, resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, c := range resp.Cookies() {
		if c.Name == ui.CookieName {
			cookie = c.Value
		}
	}
	page := e.do(t, "GET", "/ui/", cookie, nil, "")
	body := readBody(t, page)
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(body)
	if page.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET /ui/ after login: status %d, want 200 and a csrf-token meta tag; body:\n%s", page.StatusCode, body)
	}
	return cookie, m[1]
}

func TestLoginSetsASessionCookie(t *testing.T) {
	e := newEnv(t)
	path, exp := e.h.NewLogin()
	if !strings.HasPrefix(path, "/ui/login?token=") {
		t.Fatalf("NewLogin path = %q, want /ui/login?token=...", path)
	}
	if got, want := exp.Sub(e.clock.Now()), 60*time.Second; got != want {
		t.Errorf("login token lives %v, want %v", got, want)
	}
	resp := e.do(t, "GET", path, "", nil, "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET login: status %d, Location %q; want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == ui.CookieName {
			c = k
		}
	}
	if c == nil {
		t.Fatalf("no %s cookie in %q", ui.CookieName, resp.Header["Set-Cookie"])
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || len(c.Value) != 43 {
		t.Errorf("cookie %q: want HttpOnly, SameSite=Strict, Path=/ui/ and a 256-bit id (43 characters)", resp.Header.Get("Set-Cookie"))
	}
	if got, want := c.Expires.Sub(e.clock.Now()), 12*time.Hour; got != want {
		t.Errorf("session cookie expires in %v, want %v", got, want)
	}
	if page := e.do(t, "GET", "/ui/", c.Value, nil, ""); page.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/ with the session: status %d, want 200", page.StatusCode)
	}

	// The token works once.
	again := e.do(t, "GET", path, "", nil, "")
	body := readBody(t, again)
	if again.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "already used") || !strings.Contains(body, "imds ui") {
		t.Errorf("reused login token: status %d, want 401 saying it expired or was already used and to run imds ui; body:\n%s", again.StatusCode, body)
	}
}

func TestLoginRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		path  func(e *env) string
		want  string
		after time.Duration
	}{
		{"expired", func(e *env) string { p, _ := e.h.NewLogin(); return p }, "expired", 61 * time.Second},
		{"at expiry", func(e *env) string { p, _ := e.h.NewLogin(); return p }, "expired", 60 * time.Second},
		{"unknown", func(*env) string { return "/ui/login?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, "expired or was already used", 0},
		{"missing", func(*env) string { return "/ui/login" }, "no login token", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			path := tc.path(e)
			e.clock.Add(tc.after)
			resp := e.do(t, "GET", path, "", nil, "")
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, tc.want) || !strings.Contains(body, "imds ui") {
				t.Errorf("status %d, want 401 saying %q and to run imds ui; body:\n%s", resp.StatusCode, tc.want, body)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("refused login set cookies %q", resp.Header["Set-Cookie"])
			}
		})
	}
}

func TestNoSession(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	expired := func(t *testing.T) string {
		old, _ := e.login(t)
		e.clock.Add(12*time.Hour + time.Second)
		return old
	}
	for _, tc := range []struct {
		name, path string
		cookie     func(t *testing.T) string
		json       bool
	}{
		{"fleet page", "/ui/", func(*testing.T) string { return "" }, false},
		{"instance page", "/ui/instances/" + legacyID, func(*testing.T) string { return "" }, false},
		{"wrong cookie", "/ui/", func(*testing.T) string { return cookie + "x" }, false},
		{"fleet api", "/ui/api/migration", func(*testing.T) string { return "" }, true},
		{"instance api", "/ui/api/migration/" + legacyID, func(*testing.T) string { return "" }, true},
		{"expired session", "/ui/api/migration", expired, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, "GET", tc.path, tc.cookie(t), nil, "")
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "imds ui") {
				t.Fatalf("GET %s: status %d, want 401 telling to run imds ui; body:\n%s", tc.path, resp.StatusCode, body)
			}
			ct := resp.Header.Get("Content-Type")
			if tc.json {
				var e struct{ Error string }
				if ct != "application/json" || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
					t.Errorf("GET %s: Content-Type %q, body %q; want a JSON error", tc.path, ct, body)
				}
			} else if !strings.HasPrefix(ct, "text/html") {
				t.Errorf("GET %s: Content-Type %q, want a page", tc.path, ct)
			}
		})
	}
}

func TestEnforceNeedsSessionAndCSRF(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	_, otherCSRF := e.login(t)
	body := `{"instance-id":"` + modernID + `"}`
	for _, tc := range []struct {
		name   string
		cookie string
		hdr    map[string]string
		want   string
	}{
		{"no session", "", map[string]string{"X-CSRF-Token": csrf}, "no session"},
		{"no csrf token", cookie, nil, "X-CSRF-Token"},
		{"wrong csrf token", cookie, map[string]string{"X-CSRF-Token": strings.Repeat("A", len(csrf))}, "X-CSRF-Token"},
		{"another session's csrf token", cookie, map[string]string{"X-CSRF-Token": otherCSRF}, "X-CSRF-Token"},
		{"cross-site fetch", cookie, map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}, "cross-origin"},
		{"foreign origin", cookie, map[string]string{"X-CSRF-Token": csrf, "Origin": "http://evil.example"}, "cross-origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": "application/json"}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			resp := e.do(t, "POST", "/ui/api/enforce", tc.cookie, hdr, body)
			got := readBody(t, resp)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(got, tc.want) || !strings.Contains(got, "nothing was changed") {
				t.Errorf("status %d, want 403 naming %q and saying nothing was changed; body:\n%s", resp.StatusCode, tc.want, got)
			}
			if got := e.fleet.httpTokens(modernID); got != "optional" {
				t.Errorf("http-tokens of %s = %q after a refused request, want optional", modernID, got)
			}
		})
	}

	// The same request with the session and its token, same-origin, works.
	resp := e.do(t, "POST", "/ui/api/enforce", cookie, map[string]string{
		"Content-Type": "application/json", "X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin",
	}, body)
	var ans struct {
		OK      bool
		Message string
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK || !ans.OK {
		t.Fatalf("enforce with session and CSRF token: status %d, answer %+v (%v); want 200 and ok", resp.StatusCode, ans, err)
	}
	if want := "required tokens on " + modernID + "\n"; ans.Message != want {
		t.Errorf("message %q, want %q", ans.Message, want)
	}
	if got := e.fleet.httpTokens(modernID); got != "required" {
		t.Errorf("http-tokens of %s = %q, want required", modernID, got)
	}
}

func TestEnforceRefusesNamingTheCallers(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	hdr := map[string]string{"Content-Type": "application/json", "X-CSRF-Token": csrf}
	resp := e.do(t, "POST", "/ui/api/enforce", cookie, hdr, `{"instance-id":"`+legacyID+`"}`)
	var ans struct {
		OK      bool
		Message string
		Result  migration.EnforceResult
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%v), want 200", resp.StatusCode, err)
	}
	if ans.OK || len(ans.Result.Refused) != 1 {
		t.Fatalf("answer %+v, want a refusal", ans)
	}
	if want := ans.Result.Text(); ans.Message != want {
		t.Errorf("message %q, want the CLI's words %q", ans.Message, want)
	}
	for _, want := range []string{"refused " + legacyID, `v1 10.0.0.12 "curl/8.5.0"`, "legacy code"} {
		if !strings.Contains(ans.Message, want) {
			t.Errorf("message %q does not contain %q", ans.Message, want)
		}
	}
	if got := e.fleet.httpTokens(legacyID); got != "optional" {
		t.Errorf("http-tokens of %s = %q after a refusal, want optional", legacyID, got)
	}
}

func TestBadEnforceRequests(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	for _, tc := range []struct {
		name, ct, body string
		status         int
		want           string
	}{
		{"unknown instance", "application/json", `{"instance-id":"i-00000000000000000"}`, 404, "i-00000000000000000"},
		{"no instance", "application/json", `{}`, 400, "names no instance"},
		{"not json", "application/json", `instance-id=i-1`, 400, "is not"},
		{"unknown field", "application/json", `{"instance":"i-1"}`, 400, "unknown field"},
		{"form", "application/x-www-form-urlencoded", `instance-id=i-1`, 415, "must be JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, "POST", "/ui/api/enforce", cookie, map[string]string{"Content-Type": tc.ct, "X-CSRF-Token": csrf}, tc.body)
			got := readBody(t, resp)
			if resp.StatusCode != tc.status || !strings.Contains(got, tc.want) {
				t.Errorf("status %d, body %q; want %d naming %q", resp.StatusCode, got, tc.status, tc.want)
			}
		})
	}
	for _, id := range []string{legacyID, modernID} {
		if got := e.fleet.httpTokens(id); got != "optional" {
			t.Errorf("http-tokens of %s = %q after bad requests, want optional", id, got)
		}
	}
}

func TestUnknownInstance(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	resp := e.do(t, "GET", "/ui/instances/i-00000000000000000", cookie, nil, "")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "i-00000000000000000") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("unknown instance page: status %d, want a 404 page naming it; body:\n%s", resp.StatusCode, body)
	}
	resp = e.do(t, "GET", "/ui/api/migration/i-00000000000000000", cookie, nil, "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "i-00000000000000000") {
		t.Errorf("unknown instance API: status %d, body %q; want 404 naming it", resp.StatusCode, body)
	}
	if resp := e.do(t, "GET", "/ui/no-such-page", cookie, nil, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/no-such-page: status %d, want 404", resp.StatusCode)
	}
}

func TestPagesAndAPI(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	resp := e.do(t, "GET", "/ui/api/migration", cookie, nil, "")
	var v migration.View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/api/migration: status %d (%v)", resp.StatusCode, err)
	}
	if len(v.Instances) != 2 || v.Instances[0].InstanceID != legacyID || v.Instances[0].Callers[0].SDK != "curl" || !v.Instances[1].Ready {
		t.Errorf("view %+v: want %s with a curl caller and %s ready", v, legacyID, modernID)
	}
	resp = e.do(t, "GET", "/ui/api/migration/"+legacyID, cookie, nil, "")
	var in struct {
		migration.Instance
		Window string
	}
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil || in.InstanceID != legacyID || in.Window == "" || len(in.Callers) != 1 {
		t.Errorf("GET /ui/api/migration/%s: %+v (%v); want its one caller and the window", legacyID, in, err)
	}
	page := readBody(t, e.do(t, "GET", "/ui/instances/"+legacyID, cookie, nil, ""))
	if !strings.Contains(page, `data-api="/ui/api/migration/`+legacyID+`"`) {
		t.Errorf("instance page does not poll its instance's JSON:\n%s", page)
	}
}

// Every answer under /ui/ carries the security headers, and no page has an
// inline script.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	want := map[string]string{
		"X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer",
		"Cache-Control":   "no-store",
	}
	for _, tc := range []struct{ method, path, cookie string }{
		{"GET", "/ui/", cookie},
		{"GET", "/ui/", ""},
		{"GET", "/ui/instances/" + legacyID, cookie},
		{"GET", "/ui/instances/i-00000000000000000", cookie},
		{"GET", "/ui/login?token=x", ""},
		{"GET", "/ui/api/migration", cookie},
		{"GET", "/ui/assets/app.js", ""},
		{"GET", "/ui/assets/app.css", ""},
		{"POST", "/ui/api/enforce", cookie},
		{"GET", "/ui/nothing", ""},
	} {
		resp := e.do(t, tc.method, tc.path, tc.cookie, nil, "")
		body := readBody(t, resp)
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s %s (session %v): Content-Security-Policy %q, want default-src 'self' and nothing inline", tc.method, tc.path, tc.cookie != "", csp)
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s %s (session %v): %s %q, want %q", tc.method, tc.path, tc.cookie != "", k, got, v)
			}
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			if m := regexp.MustCompile(`<script(?:\s[^>]*)?>`).FindAllString(body, -1); len(m) > 0 {
				for _, s := range m {
					if !strings.Contains(s, "src=") {
						t.Errorf("%s %s: inline script %s", tc.method, tc.path, s)
					}
				}
			}
			if strings.Contains(body, " style=") || strings.Contains(body, "<style") || strings.Contains(body, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
				t.Errorf("%s %s: inline style or event handler in\n%s", tc.method, tc.path, body)
			}
		}
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	if resp := e.do(t, "POST", "/ui/logout", cookie, nil, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without the CSRF token: status %d, want 403", resp.StatusCode)
	}
	if resp := e.do(t, "POST", "/ui/logout", cookie, map[string]string{"X-CSRF-Token": csrf}, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("logout: status %d, want 200", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/ui/", cookie, nil, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /ui/ after logout: status %d, want 401", resp.StatusCode)
	}
}
