package controlplane

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store/boltstore"
)

var adminTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// adminEnv is the admin API without authentication, over a bbolt store.
type adminEnv struct {
	t    *testing.T
	reg  *registry.Registry
	h    *Handler
	mux  *http.ServeMux
	last string // the ETag of the last answer that had one
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(st, func() time.Time { return adminTestNow })
	h := New(Options{Registry: reg, Now: func() time.Time { return adminTestNow }})
	mux := http.NewServeMux()
	h.adminRoutes(mux)
	return &adminEnv{t: t, reg: reg, h: h, mux: mux}
}

// do sends a request; hdr is name, value pairs. An If-Match value "LAST"
// is replaced by the last ETag seen.
func (e *adminEnv) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		v := hdr[i+1]
		if v == "LAST" {
			v = e.last
		}
		req.Header.Set(hdr[i], v)
	}
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, req)
	if et := rec.Header().Get("ETag"); et != "" {
		e.last = et
	}
	return rec
}

func decodeAs[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, rec.Body.String(), err)
	}
	return v
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) adminapi.ErrorDetail {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	return decodeAs[adminapi.ErrorBody](t, rec).Error
}

const vmA = `{"instance-id": "i-0000000000000000a", "addresses": ["10.0.0.1"], "availability-zone": "eu-west-1a",
  "tags": {"Name": "a"}, "metadata-options": {"http-tokens": "required", "http-put-response-hop-limit": 2}}`

// step is one request of a scenario and what it must answer.
type step struct {
	name, method, path, body string
	hdr                      []string
	status                   int
	code                     string // error code, for errors
	contains                 []string
}

func runSteps(t *testing.T, e *adminEnv, steps []step) {
	t.Helper()
	for _, s := range steps {
		rec := e.do(s.method, s.path, s.body, s.hdr...)
		if rec.Code != s.status {
			t.Fatalf("%s: %s %s: status %d, want %d; body %s", s.name, s.method, s.path, rec.Code, s.status, rec.Body)
		}
		if s.code != "" {
			if got := errorCode(t, rec); got.Code != s.code {
				t.Errorf("%s: error code %q, want %q (%s)", s.name, got.Code, s.code, got.Message)
			}
		}
		for _, want := range s.contains {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("%s: body %s does not contain %q", s.name, rec.Body, want)
			}
		}
	}
}

func TestInstanceCRUD(t *testing.T) {
	e := newAdminEnv(t)
	runSteps(t, e, []step{
		{name: "empty list", method: "GET", path: "/v1/instances", status: 200, contains: []string{`"instances": []`}},
		{name: "get missing", method: "GET", path: "/v1/instances/i-0000000000000000a", status: 404, code: adminapi.CodeNotFound},
		{name: "create", method: "PUT", path: "/v1/instances/i-0000000000000000a", body: vmA, status: 201,
			contains: []string{`"http-tokens": "required"`, `"launch-time": "2026-03-01T12:00:00Z"`}},
	})
	// In YAML, with the id from the path.
	rec := e.do("PUT", "/v1/instances/i-0000000000000000b", "addresses: [10.0.0.2]\nuser-data: |\n  #!/bin/sh\n  echo hi\n", "Content-Type", "application/yaml")
	if rec.Code != http.StatusCreated {
		t.Fatalf("YAML create: %d %s", rec.Code, rec.Body)
	}
	if got := decodeAs[adminapi.InstanceRecord](t, rec); got.Spec.InstanceID != "i-0000000000000000b" || *got.Spec.UserData != "#!/bin/sh\necho hi\n" {
		t.Errorf("YAML create: spec %+v", got.Spec)
	}
	if loc := rec.Header().Get("Location"); loc != "/v1/instances/i-0000000000000000b" {
		t.Errorf("Location %q", loc)
	}

	rec = e.do("GET", "/v1/instances", "")
	list := decodeAs[adminapi.InstanceList](t, rec)
	want := []adminapi.InstanceSummary{
		{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"},
			Options: registry.Options{HTTPTokens: "required", HTTPPutResponseHopLimit: 2, HTTPEndpoint: "enabled", HTTPProtocolIPv6: "disabled", InstanceMetadataTags: "disabled"}, State: "running"},
		{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2"},
			Options: registry.Options{HTTPTokens: "optional", HTTPPutResponseHopLimit: 1, HTTPEndpoint: "enabled", HTTPProtocolIPv6: "disabled", InstanceMetadataTags: "disabled"}, State: "running"},
	}
	if diff := cmp.Diff(want, list.Instances, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Revision" }, cmp.Ignore())); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	for _, in := range list.Instances {
		if in.Revision <= 0 {
			t.Errorf("%s: revision %d", in.InstanceID, in.Revision)
		}
	}

	runSteps(t, e, []step{
		{name: "get", method: "GET", path: "/v1/instances/i-0000000000000000a", status: 200, contains: []string{`"spec": {`, `"Name": "a"`}},
		{name: "replace", method: "PUT", path: "/v1/instances/i-0000000000000000a", body: `{"addresses": ["10.0.0.3"]}`, status: 200,
			contains: []string{`"10.0.0.3"`, `"http-tokens": "required"`}},
		{name: "the released address is free", method: "PUT", path: "/v1/instances/i-0000000000000000c", body: `{"addresses": ["10.0.0.1"]}`, status: 201},
		{name: "an address of another instance", method: "PUT", path: "/v1/instances/i-0000000000000000c", body: `{"addresses": ["10.0.0.2"]}`,
			status: 409, code: adminapi.CodeConflict, contains: []string{"10.0.0.2", "i-0000000000000000b"}},
		{name: "delete", method: "DELETE", path: "/v1/instances/i-0000000000000000c", status: 204},
		{name: "delete again", method: "DELETE", path: "/v1/instances/i-0000000000000000c", status: 404, code: adminapi.CodeNotFound},
		{name: "get deleted", method: "GET", path: "/v1/instances/i-0000000000000000c", status: 404, code: adminapi.CodeNotFound},
	})
}

func TestInstanceETag(t *testing.T) {
	e := newAdminEnv(t)
	rec := e.do("PUT", "/v1/instances/i-0000000000000000a", vmA)
	in := decodeAs[adminapi.InstanceRecord](t, rec)
	if want := `"` + itoa(in.Revision) + `"`; rec.Header().Get("ETag") != want {
		t.Errorf("ETag %q, want %q", rec.Header().Get("ETag"), want)
	}
	rec = e.do("GET", "/v1/instances/i-0000000000000000a", "")
	if got := rec.Header().Get("ETag"); got != `"`+itoa(in.Revision)+`"` {
		t.Errorf("GET ETag %q, want the PUT's", got)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestInstancePreconditions(t *testing.T) {
	const path = "/v1/instances/i-0000000000000000a"
	for _, tc := range []struct {
		name   string
		exists bool
		method string
		hdr    []string
		status int
		code   string
	}{
		{"put without condition creates", false, "PUT", nil, 201, ""},
		{"put without condition replaces", true, "PUT", nil, 200, ""},
		{"create only, absent", false, "PUT", []string{"If-None-Match", "*"}, 201, ""},
		{"create only, present", true, "PUT", []string{"If-None-Match", "*"}, 412, adminapi.CodePreconditionFailed},
		{"if-match current", true, "PUT", []string{"If-Match", "LAST"}, 200, ""},
		{"if-match in a list", true, "PUT", []string{"If-Match", `"999", LAST`}, 200, ""},
		{"if-match stale", true, "PUT", []string{"If-Match", `"1"`}, 412, adminapi.CodePreconditionFailed},
		{"if-match weak never matches", true, "PUT", []string{"If-Match", "W/LAST"}, 412, adminapi.CodePreconditionFailed},
		{"if-match on a missing instance", false, "PUT", []string{"If-Match", `"1"`}, 412, adminapi.CodePreconditionFailed},
		{"if-match star, present", true, "PUT", []string{"If-Match", "*"}, 200, ""},
		{"if-match star, absent", false, "PUT", []string{"If-Match", "*"}, 412, adminapi.CodePreconditionFailed},
		{"if-match unquoted", true, "PUT", []string{"If-Match", "3"}, 400, adminapi.CodeInvalidParameter},
		{"if-none-match with a tag", true, "PUT", []string{"If-None-Match", `"3"`}, 400, adminapi.CodeInvalidParameter},
		{"delete if-match current", true, "DELETE", []string{"If-Match", "LAST"}, 204, ""},
		{"delete if-match stale", true, "DELETE", []string{"If-Match", `"1"`}, 412, adminapi.CodePreconditionFailed},
		{"delete if-match missing", false, "DELETE", []string{"If-Match", `"1"`}, 412, adminapi.CodePreconditionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAdminEnv(t)
			if tc.exists {
				// Two writes, so that revision 1 is stale.
				e.do("PUT", path, vmA)
				if rec := e.do("PUT", path, vmA); rec.Code != 200 {
					t.Fatalf("setup: %d %s", rec.Code, rec.Body)
				}
			}
			hdr := tc.hdr
			if len(hdr) == 2 && strings.Contains(hdr[1], "LAST") && hdr[1] != "LAST" {
				hdr = []string{hdr[0], strings.ReplaceAll(hdr[1], "LAST", e.last)}
			}
			body := ""
			if tc.method == "PUT" {
				body = vmA
			}
			rec := e.do(tc.method, path, body, hdr...)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" {
				if got := errorCode(t, rec); got.Code != tc.code {
					t.Errorf("code %q, want %q", got.Code, tc.code)
				}
			}
		})
	}
}

func TestInstanceValidation(t *testing.T) {
	for _, tc := range []struct {
		name, body, contentType string
		status                  int
		code                    string
		mentions                []string
	}{
		{"unknown field", `{"adresses": ["10.0.0.1"]}`, "", 400, adminapi.CodeInvalidParameter, []string{`"adresses"`}},
		{"unknown nested field", `{"metadata-options": {"http-token": "required"}}`, "", 400, adminapi.CodeInvalidParameter, []string{`"http-token"`}},
		{"unknown YAML field", "adresses: [10.0.0.1]\n", "application/yaml", 400, adminapi.CodeInvalidParameter, []string{"adresses"}},
		{"bad value", `{"metadata-options": {"http-tokens": "always"}}`, "", 400, adminapi.CodeInvalidParameter, []string{"metadata-options.http-tokens", "always"}},
		{"every bad value", `{"addresses": ["nope"], "account-id": "12"}`, "", 400, adminapi.CodeInvalidParameter, []string{"addresses[0]", "account-id"}},
		{"wrong type", `{"addresses": "10.0.0.1"}`, "", 400, adminapi.CodeInvalidParameter, []string{"addresses"}},
		{"wrong nested type", `{"metadata-options": {"http-put-response-hop-limit": "2"}}`, "", 400, adminapi.CodeInvalidParameter, []string{"metadata-options.http-put-response-hop-limit"}},
		{"not an object", `[1]`, "", 400, adminapi.CodeInvalidParameter, []string{"object"}},
		{"syntax", `{"addresses": [`, "", 400, adminapi.CodeInvalidParameter, []string{"JSON"}},
		{"two values", `{} {}`, "", 400, adminapi.CodeInvalidParameter, []string{"more than one"}},
		{"empty", ``, "", 400, adminapi.CodeInvalidParameter, []string{"empty"}},
		{"other id", `{"instance-id": "i-0000000000000000b"}`, "", 400, adminapi.CodeInvalidParameter, []string{"instance-id", "i-0000000000000000b"}},
		{"media type", `{}`, "text/plain", 415, adminapi.CodeUnsupportedMediaType, []string{"text/plain"}},
		{"too large", `{"user-data": "` + strings.Repeat("x", maxAdminBody) + `"}`, "", 413, adminapi.CodeRequestTooLarge, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAdminEnv(t)
			var hdr []string
			if tc.contentType != "" {
				hdr = []string{"Content-Type", tc.contentType}
			}
			rec := e.do("PUT", "/v1/instances/i-0000000000000000a", tc.body, hdr...)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			got := errorCode(t, rec)
			if got.Code != tc.code {
				t.Errorf("code %q, want %q", got.Code, tc.code)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(got.Message, m) {
					t.Errorf("message %q does not mention %q", got.Message, m)
				}
			}
			if _, err := e.reg.Instance(t.Context(), "i-0000000000000000a"); err == nil {
				t.Error("the refused instance was registered")
			}
		})
	}
}

func TestInstanceFromConfigKeepsItsMark(t *testing.T) {
	e := newAdminEnv(t)
	c := &config.Config{Instances: []config.Instance{{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}}}}
	if _, err := e.reg.Seed(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	rec := e.do("PUT", "/v1/instances/i-0000000000000000a", `{"addresses": ["10.0.0.1"], "tags": {"Env": "api"}}`)
	if rec.Code != 200 || !decodeAs[adminapi.InstanceRecord](t, rec).FromConfig {
		t.Fatalf("PUT over a seeded instance: %d %s", rec.Code, rec.Body)
	}
	// The file has not changed: the API's change survives a restart.
	if res, err := e.reg.Seed(t.Context(), c); err != nil || res.Unchanged != 1 {
		t.Fatalf("seed again: %+v, %v", res, err)
	}
	in, _ := e.reg.Instance(t.Context(), "i-0000000000000000a")
	if v, _ := in.Spec.Tags.Get("Env"); v != "api" {
		t.Errorf("tags after a restart %v, want the API's", in.Spec.Tags)
	}
}

func TestEvents(t *testing.T) {
	e := newAdminEnv(t)
	const path = "/v1/instances/i-0000000000000000a"
	if rec := e.do("PUT", path, vmA); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		check      func(t *testing.T, s config.Instance)
		mentions   string
	}{
		{"spot, two-minute warning", `{"type": "spot"}`, 200, func(t *testing.T, s config.Instance) {
			if diff := cmp.Diff(&config.SpotAction{Action: "terminate", Time: "2026-03-01T12:02:00Z"}, s.Spot); diff != "" {
				t.Errorf("spot (-want +got):\n%s", diff)
			}
		}, ""},
		{"spot stop in 30s", `{"type": "spot", "action": "stop", "in": "30s"}`, 200, func(t *testing.T, s config.Instance) {
			if s.Spot.Action != "stop" || s.Spot.Time != "2026-03-01T12:00:30Z" {
				t.Errorf("spot %+v", s.Spot)
			}
		}, ""},
		{"rebalance now", `{"type": "rebalance"}`, 200, func(t *testing.T, s config.Instance) {
			if s.Rebalance != "2026-03-01T12:00:00Z" || s.Spot == nil {
				t.Errorf("rebalance %q, spot %+v", s.Rebalance, s.Spot)
			}
		}, ""},
		{"maintenance", `{"type": "maintenance", "code": "instance-stop", "time": "2026-03-02T00:00:00Z", "duration": "1h"}`, 200, func(t *testing.T, s config.Instance) {
			if len(s.Events) != 1 {
				t.Fatalf("events %+v", s.Events)
			}
			ev := s.Events[0]
			if ev.Code != "instance-stop" || ev.NotBefore != "2026-03-02T00:00:00Z" || ev.NotAfter != "2026-03-02T01:00:00Z" ||
				ev.State != "active" || !strings.HasPrefix(ev.EventID, "instance-event-") || len(ev.EventID) != len("instance-event-")+17 {
				t.Errorf("event %+v", ev)
			}
		}, ""},
		{"bad spot action", `{"type": "spot", "action": "reboot"}`, 400, nil, "action"},
		{"bad maintenance code", `{"type": "maintenance", "code": "explode"}`, 400, nil, "maintenance-events[1].code"},
		{"bad type", `{"type": "earthquake"}`, 400, nil, "type"},
		{"bad in", `{"type": "spot", "in": "soon"}`, 400, nil, "in"},
		{"time and in", `{"type": "spot", "in": "1m", "time": "2026-03-02T00:00:00Z"}`, 400, nil, "time and in"},
		{"field of another type", `{"type": "rebalance", "action": "stop"}`, 400, nil, "action"},
		{"unknown field", `{"type": "spot", "when": "now"}`, 400, nil, `"when"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do("POST", path+"/events", tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.check != nil {
				tc.check(t, decodeAs[adminapi.InstanceRecord](t, rec).Spec)
			}
			if tc.mentions != "" {
				if got := errorCode(t, rec); !strings.Contains(got.Message, tc.mentions) {
					t.Errorf("message %q does not mention %q", got.Message, tc.mentions)
				}
			}
		})
	}
	if rec := e.do("POST", path+"/events", `{"type": "spot"}`, "If-Match", `"1"`); rec.Code != 412 {
		t.Errorf("event with a stale If-Match: %d", rec.Code)
	}
	if rec := e.do("POST", "/v1/instances/i-0000000000000000f/events", `{"type": "spot"}`); rec.Code != 404 {
		t.Errorf("event on a missing instance: %d", rec.Code)
	}
	rec := e.do("DELETE", path+"/events", "")
	if s := decodeAs[adminapi.InstanceRecord](t, rec).Spec; rec.Code != 200 || s.Spot != nil || s.Rebalance != "" || s.Events != nil {
		t.Errorf("after clearing: %d %+v", rec.Code, s)
	}
}

func TestRoles(t *testing.T) {
	e := newAdminEnv(t)
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	runSteps(t, e, []step{
		{name: "create (JSON)", method: "PUT", path: "/v1/roles/web",
			body:   `{"static": {"access-key-id": "AKIAIOSFODNN7EXAMPLE", "secret-access-key": "` + secret + `", "session-token": "SESSION-TOKEN-VALUE"}}`,
			status: 201, contains: []string{`"source": "static"`, `"access-key-id": "AKIAIOSFODNN7EXAMPLE"`}},
		{name: "create (YAML)", method: "PUT", path: "/v1/roles/batch", hdr: []string{"Content-Type", "application/yaml"},
			body: "process:\n  command: [/usr/local/bin/broker, '{role}']\n", status: 201, contains: []string{`"source": "process"`}},
		{name: "replace if-match", method: "PUT", path: "/v1/roles/batch", hdr: []string{"Content-Type", "application/yaml", "If-Match", "LAST"},
			body: "process:\n  command: [/bin/broker]\n  timeout: 5s\n", status: 200, contains: []string{`"timeout": "5s"`}},
		{name: "replace stale", method: "PUT", path: "/v1/roles/batch", hdr: []string{"Content-Type", "application/yaml", "If-Match", `"1"`},
			body: "process:\n  command: [/bin/broker]\n", status: 412, code: adminapi.CodePreconditionFailed},
		{name: "create only", method: "PUT", path: "/v1/roles/batch", hdr: []string{"If-None-Match", "*"},
			body: `{"process": {"command": ["/bin/broker"]}}`, status: 412, code: adminapi.CodePreconditionFailed},
		{name: "unknown key", method: "PUT", path: "/v1/roles/x", body: `{"statik": {}}`, status: 400, code: adminapi.CodeInvalidParameter, contains: []string{"statik"}},
		{name: "no source", method: "PUT", path: "/v1/roles/x", body: `{}`, status: 400, code: adminapi.CodeInvalidParameter, contains: []string{"source"}},
		{name: "missing key", method: "PUT", path: "/v1/roles/x", body: `{"static": {"access-key-id": "AKIAIOSFODNN7EXAMPLE"}}`,
			status: 400, code: adminapi.CodeInvalidParameter, contains: []string{"secret-access-key"}},
		{name: "bad name", method: "PUT", path: "/v1/roles/a%20b", body: `{"process": {"command": ["/bin/x"]}}`, status: 400, code: adminapi.CodeInvalidParameter},
		{name: "get", method: "GET", path: "/v1/roles/web", status: 200, contains: []string{`"access-key-id"`}},
		{name: "list", method: "GET", path: "/v1/roles", status: 200, contains: []string{`"name": "batch"`, `"name": "web"`}},
		{name: "get missing", method: "GET", path: "/v1/roles/nope", status: 404, code: adminapi.CodeNotFound},
		{name: "delete", method: "DELETE", path: "/v1/roles/batch", status: 204},
		{name: "delete missing", method: "DELETE", path: "/v1/roles/batch", status: 404, code: adminapi.CodeNotFound},
	})
	// The secret is stored, and never shown.
	role, _, err := e.reg.Role(t.Context(), "web")
	if err != nil || role.Static.SecretAccessKey != secret {
		t.Fatalf("stored role %+v, %v", role, err)
	}
	for _, path := range []string{"/v1/roles", "/v1/roles/web"} {
		body := e.do("GET", path, "").Body.String()
		if strings.Contains(body, secret) || strings.Contains(body, "SESSION-TOKEN-VALUE") || strings.Contains(body, "secret-access-key") {
			t.Errorf("GET %s shows a secret: %s", path, body)
		}
	}
}

func TestRelays(t *testing.T) {
	e := newAdminEnv(t)
	rec := e.do("PUT", "/v1/relays/hv1", `{"addresses": ["10.1.0.1", "fd00::1"]}`)
	if rec.Code != 200 {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	got := decodeAs[adminapi.RelayRecord](t, rec)
	if len(got.Secret) != 32 {
		t.Fatalf("generated secret: %d bytes, want 32", len(got.Secret))
	}
	generated := base64.StdEncoding.EncodeToString(got.Secret)
	given := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
	if rec := e.do("PUT", "/v1/relays/hv2", `{"addresses": ["10.1.0.2"], "secret": "`+given+`"}`); rec.Code != 200 || strings.Contains(rec.Body.String(), given) {
		t.Errorf("put with a secret: %d %s (the secret must not come back)", rec.Code, rec.Body)
	}
	for _, path := range []string{"/v1/relays", "/v1/relays/hv1"} {
		rec := e.do("GET", path, "")
		if rec.Code != 200 || strings.Contains(rec.Body.String(), generated) || strings.Contains(rec.Body.String(), given) || strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	list := decodeAs[adminapi.RelayList](t, e.do("GET", "/v1/relays", ""))
	want := []adminapi.RelayRecord{{Name: "hv1", Addresses: []string{"10.1.0.1", "fd00::1"}}, {Name: "hv2", Addresses: []string{"10.1.0.2"}}}
	if diff := cmp.Diff(want, list.Relays); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	runSteps(t, e, []step{
		{name: "bad address", method: "PUT", path: "/v1/relays/hv3", body: `{"addresses": ["nope"]}`, status: 400, code: adminapi.CodeInvalidParameter, contains: []string{"addresses", "nope"}},
		{name: "no address", method: "PUT", path: "/v1/relays/hv3", body: `{}`, status: 400, code: adminapi.CodeInvalidParameter, contains: []string{"addresses"}},
		{name: "short secret", method: "PUT", path: "/v1/relays/hv3", body: `{"addresses": ["10.1.0.3"], "secret": "c2hvcnQ="}`, status: 400, code: adminapi.CodeInvalidParameter, contains: []string{"secret"}},
		{name: "conditional", method: "PUT", path: "/v1/relays/hv1", body: `{"addresses": ["10.1.0.1"]}`, hdr: []string{"If-Match", `"1"`}, status: 400, code: adminapi.CodeInvalidParameter},
		{name: "get missing", method: "GET", path: "/v1/relays/nope", status: 404, code: adminapi.CodeNotFound},
		{name: "delete", method: "DELETE", path: "/v1/relays/hv1", status: 204},
		{name: "delete missing", method: "DELETE", path: "/v1/relays/hv1", status: 404, code: adminapi.CodeNotFound},
	})
}

func TestRotateTokenKey(t *testing.T) {
	e := newAdminEnv(t)
	rec := e.do("POST", "/v1/keys/token/rotate", "")
	if rec.Code != 200 {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	got := decodeAs[adminapi.TokenKeys](t, rec)
	if got.Signing != 2 || len(got.Keys) != 2 || got.Keys[0].ID != 2 || got.Keys[1].Retired.IsZero() {
		t.Errorf("after the first rotation: %+v", got)
	}
	if strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("rotate shows secrets: %s", rec.Body)
	}
	ring, _ := e.reg.EnsureTokenRing(t.Context())
	for _, k := range ring.Keys {
		if strings.Contains(rec.Body.String(), base64.StdEncoding.EncodeToString(k.Secret)) {
			t.Errorf("rotate shows the secret of key %d", k.ID)
		}
	}
}

func TestNoRoute(t *testing.T) {
	e := newAdminEnv(t)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/nothing", 404, ""},
		{"GET", "/v1/instances/", 404, ""},
		{"POST", "/v1/instances", 405, "GET, PUT"},
		{"PATCH", "/v1/instances/i-0000000000000000a", 405, "GET, PUT, DELETE"},
		{"GET", "/v1/keys/token/rotate", 405, "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := e.do(tc.method, tc.path, "")
			if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow {
				t.Errorf("%d Allow %q, want %d Allow %q", rec.Code, rec.Header().Get("Allow"), tc.status, tc.allow)
			}
			errorCode(t, rec)
		})
	}
}

func TestStoreErrorsDoNotLeak(t *testing.T) {
	e := newAdminEnv(t)
	// A closed store fails every call.
	e.reg.Store().Close()
	rec := e.do("GET", "/v1/instances", "")
	got := errorCode(t, rec)
	if rec.Code != 500 || got != (adminapi.ErrorDetail{Code: adminapi.CodeInternalError, Message: "internal error"}) {
		t.Errorf("closed store: %d %+v, want 500 and no internal text", rec.Code, got)
	}
}
