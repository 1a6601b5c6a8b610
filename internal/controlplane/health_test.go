package controlplane

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealth(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "imds_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	notReady := func() (bool, []string) {
		return false, []string{"store unreachable: dial tcp 10.0.0.1:2379: timeout", "serving the last snapshot since 2026-03-01T12:00:00Z"}
	}
	for _, tc := range []struct {
		name   string
		o      Options
		path   string
		status int
		body   string // the whole body, or a part of it with contains
		exact  bool
	}{
		{"healthz", Options{}, "/healthz", 200, "ok\n", true},
		{"healthz while not ready", Options{Ready: notReady}, "/healthz", 200, "ok\n", true},
		{"readyz without a check", Options{}, "/readyz", 200, "ok\n", true},
		{"readyz ready", Options{Ready: func() (bool, []string) { return true, nil }}, "/readyz", 200, "ok\n", true},
		{"readyz not ready", Options{Ready: notReady}, "/readyz", 503,
			"store unreachable: dial tcp 10.0.0.1:2379: timeout\nserving the last snapshot since 2026-03-01T12:00:00Z\n", true},
		{"readyz not ready without reasons", Options{Ready: func() (bool, []string) { return false, nil }}, "/readyz", 503, "not ready\n", true},
		{"metrics", Options{Gatherer: reg}, "/metrics", 200, "imds_test_total 3", false},
		{"no metrics without a gatherer", Options{}, "/metrics", 404, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The whole handler, with no operator: these answer without credentials.
			tc.o.Operators = adminTestOperators{}
			h := New(tc.o)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if got := rec.Body.String(); (tc.exact && got != tc.body) || !strings.Contains(got, tc.body) {
				t.Errorf("body %q, want %q", rec.Body, tc.body)
			}
		})
	}
}
