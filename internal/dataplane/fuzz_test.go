package dataplane

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/token"
)

// The callers of testdata/fleet.yaml, and what only each may see.
var fuzzCallers = []struct {
	addr, id string
	secrets  []string // in no answer to any other caller
}{
	{tokenInstance, "i-0a1b2c3d4e5f60718", []string{"wJalrXUtnFEMI", "echo hello", "ssh-ed25519", "web-1"}},
	{spotInstance, "i-0ffffffffffffffff", []string{"instance-event-0d59937288b749b32"}},
	{offInstance, "i-0eeeeeeeeeeeeeeee", nil},
}

// FuzzRequest sends arbitrary paths, methods and IMDS headers from each
// instance of the fleet, with or without a token the data plane issued, and
// checks that the handler answers only with statuses EC2 uses, never panics,
// never shows one instance's data to another, and that a token it issues
// verifies for the caller with the TTL it was asked for.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{"/", "/latest/meta-data/", "/latest/api/token", "/latest/meta-data/iam/security-credentials",
		"/latest//", "/latest/meta-data/public-keys/0/openssh-key/", "/%2e%2e/", "/latest/user-data/"} {
		f.Add(uint8(1), "GET", s, "", "", false)
		f.Add(uint8(1), "PUT", s, "21600", "", false)
		f.Add(uint8(0), "GET", s, "", "", true)
	}
	f.Add(uint8(1), "GET", "/latest/meta-data/instance-id", "", strings.Repeat("A", 56), false)
	f.Add(uint8(0), "GET", "/latest/meta-data/iam/security-credentials/bedrock-ui-ec2-role", "", "", true)
	f.Add(uint8(0), "HEAD", "/latest/meta-data/tags/instance/Name", "", "", true)
	f.Add(uint8(1), "GET", "/latest/meta-data/events/maintenance/history", "", "", true)
	f.Add(uint8(2), "PUT", "/latest/api/token", "1", "", false)
	f.Add(uint8(0), "PUT", "/latest/api/token", "021600", "", false)
	fx := newFixture(f)
	ring := fx.h.ring.Load()
	f.Fuzz(func(t *testing.T, src uint8, method, path, ttl, tok string, issued bool) {
		if !validMethod(method) {
			return
		}
		caller := fuzzCallers[int(src)%len(fuzzCallers)]
		do := func(method, path string, hdr map[string]string) *httptest.ResponseRecorder {
			r, err := http.NewRequest(method, "http://169.254.169.254/", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.URL.Path = path
			r.RemoteAddr = caller.addr + ":40000"
			for k, v := range hdr {
				r.Header[k] = []string{v}
			}
			w := httptest.NewRecorder()
			fx.h.ServeHTTP(w, r)
			return w
		}
		if issued {
			w := do(http.MethodPut, tokenPath, map[string]string{hdrTTL: "60"})
			tok = w.Body.String()
		}
		hdr := map[string]string{}
		if ttl != "" {
			hdr[hdrTTL] = ttl
		}
		if tok != "" {
			hdr[hdrToken] = tok
		}
		w := do(method, path, hdr)
		switch w.Code {
		case 200, 301, 400, 401, 403, 404, 405:
		default:
			t.Fatalf("%s %q: status %d", method, path, w.Code)
		}
		if w.Header().Get("Server") != "EC2ws" {
			t.Fatalf("%s %q: no Server header", method, path)
		}
		body := w.Body.Bytes()
		for _, other := range fuzzCallers {
			if other.id == caller.id {
				continue
			}
			if bytes.Contains(body, []byte(other.id)) {
				t.Fatalf("%s %q from %s: %s's id in the answer", method, path, caller.id, other.id)
			}
			for _, s := range other.secrets {
				if bytes.Contains(body, []byte(s)) {
					t.Fatalf("%s %q from %s: %s's %q in the answer", method, path, caller.id, other.id, s)
				}
			}
		}
		if method == http.MethodPut && path == tokenPath && w.Code == http.StatusOK {
			n, err := strconv.Atoi(ttl)
			if err != nil || n < 1 || n > 21600 {
				t.Fatalf("token issued for a TTL of %q", ttl)
			}
			if got := w.Header().Get(hdrTTL); got != strconv.Itoa(n) {
				t.Fatalf("token for a TTL of %q answered with a TTL of %q", ttl, got)
			}
			if left, err := ring.Verify(string(body), caller.id); err != nil || left != time.Duration(n)*time.Second {
				t.Fatalf("token issued for %q with a TTL of %q: %v left, %v", caller.id, ttl, left, err)
			}
		}
	})
}

// FuzzParseTTL checks the X-aws-ec2-metadata-token-ttl-seconds header
// against its definition in docs/compatibility.md: exactly one value of 1 to
// 5 decimal digits, 1 to 21600.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"1", "21600", "21601", "0", "00060", "000060", "+60", "-1", " 60", "60 ", "1e3", "0x10", "６０", "", "999999999999999999999"} {
		f.Add(s, "", false)
	}
	f.Add("60", "60", true)
	f.Fuzz(func(t *testing.T, v, second string, two bool) {
		vals := []string{v}
		if two {
			vals = append(vals, second)
		}
		got, ok := parseTTL(vals)
		n, err := strconv.Atoi(v)
		want := !two && err == nil && n >= 1 && n <= int(token.MaxTTL/time.Second) &&
			len(v) <= 5 && strings.Trim(v, "0123456789") == ""
		if ok != want || ok && got != n {
			t.Fatalf("parseTTL(%q) = %d, %v; want %d, %v", vals, got, ok, n, want)
		}
	})
}

// FuzzGate sends requests with arbitrary methods and X-aws-ec2-metadata-token
// and TTL headers (absent, one value or several, with or without
// X-Forwarded-For) through the IMDSv2 rules that imds serve and imds guard
// share, and checks each decision against the rules as EC2 states them:
// a GET is served as IMDSv2 only with exactly one token that verifies for
// the caller, and a token PUT gets a token only for one valid TTL and
// without X-Forwarded-For.
func FuzzGate(f *testing.F) {
	f.Add("PUT", true, "21600", "", false, false, uint8(0))
	f.Add("PUT", true, "60\x0060", "", false, false, uint8(0))
	f.Add("PUT", true, "60", "", true, false, uint8(0))
	f.Add("PUT", false, "60", "", false, false, uint8(0))
	f.Add("GET", false, "", "", false, true, uint8(1))
	f.Add("GET", false, "", "\x00", false, false, uint8(2))
	f.Add("GET", false, "", "x\x00y", false, false, uint8(0))
	f.Add("GET", false, "", strings.Repeat("A", token.EncodedLen), false, false, uint8(2))
	f.Add("HEAD", false, "", "", true, true, uint8(1))
	f.Add("OPTIONS", true, "", "", false, false, uint8(0))
	f.Add("GET", true, "", "", false, false, uint8(0))
	f.Add("POST", false, "1", "", false, false, uint8(0))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ring, err := token.NewRing([]token.Key{{ID: 1, Secret: bytes.Repeat([]byte{1}, 32)}}, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	g := NewGate(ring, Options{Now: func() time.Time { return now }})
	const id = "i-0123456789abcdef0"
	f.Fuzz(func(t *testing.T, method string, onTokenPath bool, ttls, toks string, forwarded, issued bool, opts uint8) {
		if !validMethod(method) {
			return
		}
		acc := Access{ID: id, HopLimit: 1, TokensRequired: opts&1 != 0, InvalidTokenAsV1: opts&2 != 0}
		path := "/latest/meta-data/instance-id"
		if onTokenPath {
			path = tokenPath
		}
		if issued {
			toks = ring.Issue(id, time.Minute)
		}
		ttlVals, tokVals := headerValues(ttls), headerValues(toks)
		r := httptest.NewRequest(http.MethodGet, "http://169.254.169.254/", nil)
		r.Method, r.URL.Path = method, path
		if ttlVals != nil {
			r.Header[hdrTTL] = ttlVals
		}
		if tokVals != nil {
			r.Header[hdrToken] = tokVals
		}
		if forwarded {
			r.Header.Set(hdrForwards, "192.0.2.1")
		}
		w := httptest.NewRecorder()
		a := g.Admit(w, r, acc)

		// The rules, as docs/compatibility.md states them.
		code, v2 := 0, false // 0: not answered, to be served
		switch {
		case method == http.MethodPut && !onTokenPath:
			code = http.StatusForbidden
		case method == http.MethodPut:
			_, ok := parseTTL(ttlVals)
			switch {
			case forwarded:
				code = http.StatusForbidden
			case !ok:
				code = http.StatusBadRequest
			default:
				code = http.StatusOK
			}
		case onTokenPath && method == http.MethodOptions:
			code = http.StatusOK
		case onTokenPath, method != http.MethodGet && method != http.MethodHead:
			code = http.StatusMethodNotAllowed
		case tokVals == nil:
			if acc.TokensRequired {
				code = http.StatusUnauthorized
			}
		case forwarded:
			code = http.StatusForbidden
		case len(tokVals) != 1:
			code = http.StatusUnauthorized
		default:
			_, err := ring.Verify(tokVals[0], id)
			v2 = err == nil
			if !v2 && (acc.TokensRequired || !acc.InvalidTokenAsV1) {
				code = http.StatusUnauthorized
			}
		}
		if a.Answered != (code != 0) || a.Answered && (a.Code != code || w.Code != code) || a.V2 != v2 {
			t.Fatalf("%s %s, TTL %q, tokens %q, forwarded %v, %+v: %+v (status %d), want status %d (0: served), V2 %v",
				method, path, ttlVals, tokVals, forwarded, acc, a, w.Code, code, v2)
		}
		if !a.Answered && w.Body.Len() > 0 {
			t.Fatalf("%s %s: not answered, but wrote %q", method, path, w.Body)
		}
		if w.Header().Get("Server") != "EC2ws" {
			t.Fatal("no Server header")
		}
		if v2 && (a.Left <= 0 || a.Left > time.Minute) {
			t.Fatalf("GET with a valid token: %v left", a.Left)
		}
		if method == http.MethodPut && code == http.StatusOK {
			n, _ := parseTTL(ttlVals)
			if left, err := ring.Verify(w.Body.String(), id); err != nil || left != time.Duration(n)*time.Second {
				t.Fatalf("token PUT with TTL %q answered %q: %v left, %v", ttlVals, w.Body, left, err)
			}
			if got := w.Header().Get(hdrTTL); got != strconv.Itoa(n) {
				t.Fatalf("token PUT with TTL %q answered with a TTL of %q", ttlVals, got)
			}
		}
	})
}

// headerValues reads a fuzzed string as the values of one header: nil
// (absent) for "", otherwise values ended or separated by NUL, so that
// "\x00" is one empty value and "a\x00b" two values.
func headerValues(s string) []string {
	if s == "" {
		return nil
	}
	vals := strings.Split(s, "\x00")
	if strings.HasSuffix(s, "\x00") {
		vals = vals[:len(vals)-1]
	}
	return vals
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}
