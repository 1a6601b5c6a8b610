package dataplane

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequest sends arbitrary paths, methods and IMDS headers and checks that
// the handler answers only with statuses EC2 uses, never panics, and never
// shows one instance's data to another.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{"/", "/latest/meta-data/", "/latest/api/token", "/latest/meta-data/iam/security-credentials",
		"/latest//", "/latest/meta-data/public-keys/0/openssh-key/", "/%2e%2e/", "/latest/user-data/"} {
		f.Add("GET", s, "", "")
		f.Add("PUT", s, "21600", "")
	}
	f.Add("GET", "/latest/meta-data/instance-id", "", strings.Repeat("A", 56))
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, method, path, ttl, tok string) {
		if !validMethod(method) {
			return
		}
		r, err := http.NewRequest(method, "http://169.254.169.254/", nil)
		if err != nil {
			return
		}
		r.URL.Path = path
		r.RemoteAddr = spotInstance + ":40000"
		if ttl != "" {
			r.Header["X-Aws-Ec2-Metadata-Token-Ttl-Seconds"] = []string{ttl}
		}
		if tok != "" {
			r.Header["X-Aws-Ec2-Metadata-Token"] = []string{tok}
		}
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 301, 400, 401, 403, 404, 405:
		default:
			t.Fatalf("%s %q: status %d", method, path, w.Code)
		}
		if strings.Contains(w.Body.String(), "i-0a1b2c3d4e5f60718") {
			t.Fatalf("%s %q: another instance's id in the answer", method, path)
		}
		if w.Header().Get("Server") != "EC2ws" {
			t.Fatalf("%s %q: no Server header", method, path)
		}
	})
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
