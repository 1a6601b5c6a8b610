package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// startWith starts a server with o and serves until the test ends.
func startWith(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func startTest(t *testing.T) *Server {
	t.Helper()
	return startWith(t, Options{
		Listen:      []string{"127.0.0.1:0"},
		AdminListen: "127.0.0.1:0",
		DataDir:     t.TempDir(),
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServeDemo(t *testing.T) {
	s := startTest(t)
	code, body := get(t, "http://"+s.Addrs()[0].String()+"/latest/meta-data/instance-id")
	if code != 200 || body != "i-0123456789abcdef0" {
		t.Errorf("instance-id: %d %q", code, body)
	}
	if code, body := get(t, "http://"+s.AdminAddr().String()+"/readyz"); code != 200 {
		t.Errorf("readyz: %d %q", code, body)
	}
}

// TestMetricNames checks every exported metric against Prometheus's naming
// rules.
func TestMetricNames(t *testing.T) {
	s := startTest(t)
	get(t, "http://"+s.Addrs()[0].String()+"/latest/meta-data/")
	code, body := get(t, "http://"+s.AdminAddr().String()+"/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "imds_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	for _, want := range []string{"imds_requests_total", "imds_fleet_instances", "imds_store_synced", "imds_credentials_sets"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestStartWithoutConfigOnAFleet: a server started without --config on a
// store that holds a fleet says so, and a caller it refuses is logged with
// the addresses the fleet knows.
func TestStartWithoutConfigOnAFleet(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(cfg, []byte(`instances:
- instance-id: i-0000000000000000a
  addresses: [10.0.0.1]
- instance-id: i-0000000000000000b
  addresses: [10.0.0.2]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), Options{DataDir: dir, ConfigPath: cfg})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	var logs bytes.Buffer
	s, err = New(t.Context(), Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := `msg="no --config: serving the instances already in the store" component=server instances=2 store="bolt ` + filepath.Join(dir, "imds.db") + `"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log does not contain %s:\n%s", want, logs.String())
	}

	req := httptest.NewRequest("GET", "/latest/meta-data/instance-id", nil)
	req.RemoteAddr = "192.0.2.9:40000"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("unknown caller: status %d, want 403", rec.Code)
	}
	want = `msg="refused caller" component=dataplane remote=192.0.2.9 reason="identity: unknown caller" fleet_instances=2 fleet_addresses=2 known_addresses="[10.0.0.1 10.0.0.2]"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log does not contain %s:\n%s", want, logs.String())
	}
}
