package loadgen

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	closing := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("ok"))
	})
	missing := http.NotFoundHandler()
	tests := []struct {
		name      string
		h         http.Handler
		keepAlive bool
		wantOK    int
		wantConns func(int) bool
	}{
		{"connection per request", ok, false, 50, func(n int) bool { return n == 50 }},
		{"keep-alive", ok, true, 50, func(n int) bool { return n <= 4 }},
		{"keep-alive, server closes", closing, true, 50, func(n int) bool { return n == 50 }},
		{"non-200 counted apart", missing, true, 0, func(int) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			res, err := Run(t.Context(), Config{
				Addr:        srv.Listener.Addr().String(),
				Request:     BuildRequest("GET", "/", !tt.keepAlive),
				KeepAlive:   tt.keepAlive,
				Workers:     4,
				MaxRequests: 50,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != tt.wantOK || res.Requests+res.Non200 != 50 || res.Errors != 0 {
				t.Errorf("got %d ok, %d non-200, %d errors; want %d ok of 50, no errors", res.Requests, res.Non200, res.Errors, tt.wantOK)
			}
			if !tt.wantConns(res.Conns) {
				t.Errorf("got %d connections for 50 requests", res.Conns)
			}
			if tt.wantOK > 0 && (res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99) {
				t.Errorf("got p50 %v, p99 %v, max %v; want 0 < p50 <= p99 <= max", res.P50, res.P99, res.Max)
			}
		})
	}
}

func TestRunDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	res, err := Run(t.Context(), Config{
		Addr: srv.Listener.Addr().String(), Request: BuildRequest("GET", "/", false),
		KeepAlive: true, Workers: 2, Duration: 50 * time.Millisecond, Warmup: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Elapsed < 50*time.Millisecond {
		t.Errorf("got %d requests, %d errors in %v; want some, none, at least 50ms", res.Requests, res.Errors, res.Elapsed)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := Percentile(d, tt.p); got != tt.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}
