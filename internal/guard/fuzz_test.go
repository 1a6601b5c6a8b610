package guard_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzPolicy sends arbitrary paths, as a client may write them, through the
// guard to a real upstream for a caller whose policy denies user-data and
// iam/ and gives no credentials: whatever the path, neither the user data
// nor the host's credentials come back.
func FuzzPolicy(f *testing.F) {
	for _, p := range []string{
		"/latest/user-data", "/latest//user-data", "/latest/./user-data", "/latest/user-data/",
		"/latest/meta-data/iam/security-credentials/host-role", "/latest/meta-data/iam/../iam/info",
		"/latest/meta-data/iam%2Fsecurity-credentials%2Fhost-role", "/2021-03-23/user-data",
		"/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
		"/latest/meta-data/iam/security-credentials-extended/host-role", "/latest/meta-data/IAM/info",
		"/latest/meta-data/", "/", "/latest",
	} {
		f.Add(p, false)
		f.Add(p, true)
	}
	e := start(f, `guard:
  default: {imdsv1: upgrade, deny-paths: [user-data, iam/]}
`)
	f.Fuzz(func(t *testing.T, path string, v2 bool) {
		req := httptest.NewRequest("GET", "http://guard/", nil)
		req.URL.Path, req.URL.RawPath, req.RequestURI = "", "", ""
		u, err := req.URL.Parse(path)
		if err != nil || u.Path == "" || u.Path[0] != '/' || u.Host != "" {
			return
		}
		req.URL = u
		req.RemoteAddr = "127.0.0.1:40000"
		if v2 {
			pw := httptest.NewRecorder()
			put := httptest.NewRequest("PUT", "http://guard/latest/api/token", nil)
			put.RemoteAddr = req.RemoteAddr
			put.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
			e.guard.ServeHTTP(pw, put)
			req.Header.Set("X-aws-ec2-metadata-token", pw.Body.String())
		}
		w := httptest.NewRecorder()
		e.guard.ServeHTTP(w, req)
		body := w.Body.String()
		if strings.Contains(body, "echo host") || strings.Contains(body, "AKIAHOST") || strings.Contains(body, "hostsecret") {
			t.Fatalf("path %q (%q) leaked: %d %q", path, u.Path, w.Code, body)
		}
		if w.Code == http.StatusOK && strings.Contains(body, "host-role") {
			t.Fatalf("path %q (%q) named the host's role: %q", path, u.Path, body)
		}
	})
}
