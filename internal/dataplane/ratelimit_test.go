package dataplane

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/fleet"
	"github.com/imds/imds/internal/ratelimit"
	"github.com/imds/imds/internal/token"
)

// TestRateLimitPerInstance: one instance's flood is throttled with the
// configured answer and cannot spend another instance's budget.
func TestRateLimitPerInstance(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int // configured
		want   int // what a request over the limit gets
	}{
		{"429", http.StatusTooManyRequests, http.StatusTooManyRequests},
		{"503", http.StatusServiceUnavailable, http.StatusServiceUnavailable},
		// A recorder cannot be hijacked: drop falls back to an empty 403.
		{"drop", 0, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const burst, flood = 5, 200
			f := newFixture(t)
			// The clock stands still: no budget comes back during the test.
			f.h.limit = ratelimit.New(1, burst, func() time.Time { return *f.clock })
			f.h.limitCode = tc.status

			codes := make(chan int, flood)
			var wg sync.WaitGroup
			for range flood {
				wg.Go(func() {
					codes <- f.do(t, "GET", spotInstance, "/latest/meta-data/instance-id").StatusCode
				})
			}
			// Meanwhile the quiet instance spends its whole budget: a token
			// and four reads, all answered.
			tok := f.token(t, tokenInstance)
			for i := range burst - 1 {
				if res := f.do(t, "GET", tokenInstance, "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok); res.StatusCode != http.StatusOK {
					t.Errorf("quiet instance, read %d: status %d, want 200", i, res.StatusCode)
				}
			}
			wg.Wait()
			close(codes)
			n := map[int]int{}
			for c := range codes {
				n[c]++
			}
			if n[http.StatusOK] != burst || n[tc.want] != flood-burst {
				t.Errorf("flood answers %v, want %d × 200 and %d × %d", n, burst, flood-burst, tc.want)
			}
			// The quiet instance's budget was its own: exactly spent.
			if res := f.do(t, "GET", tokenInstance, "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok); res.StatusCode != tc.want {
				t.Errorf("quiet instance over its budget: status %d, want %d", res.StatusCode, tc.want)
			}
			// Time brings the budget back.
			*f.clock = f.clock.Add(time.Second)
			if res := f.do(t, "GET", spotInstance, "/latest/meta-data/instance-id"); res.StatusCode != http.StatusOK {
				t.Errorf("a second later: status %d, want 200", res.StatusCode)
			}
		})
	}
}

// BenchmarkRateLimit serves IMDSv2 GETs from 256 instances without a limit
// and with one that never refuses: the difference is the check's cost.
func BenchmarkRateLimit(b *testing.B) {
	for _, limited := range []bool{false, true} {
		b.Run(fmt.Sprintf("limit=%v", limited), func(b *testing.B) {
			snap, addrs := fleetOf(b, 256)
			ring, _ := token.NewRing([]token.Key{{ID: 1, Secret: bytes.Repeat([]byte{1}, 32)}}, nil)
			o := Options{}
			if limited {
				o.RateLimit = ratelimit.New(1e12, 1, nil)
				o.RateLimitStatus = http.StatusTooManyRequests
			}
			h := New(fleet.New(snap), ring, o)
			reqs := make([]*http.Request, 256)
			for i := range reqs {
				src := addrs[(i*7919)%len(addrs)]
				r := httptest.NewRequest("GET", "http://169.254.169.254/latest/meta-data/instance-id", nil)
				r.RemoteAddr = src + ":40000"
				r.Header.Set("X-Aws-Ec2-Metadata-Token", ring.Issue(snap.ByAddr(netip.MustParseAddr(src)).Instance.ID, time.Hour))
				reqs[i] = r
			}
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				clear(w.h)
				h.ServeHTTP(w, reqs[i%len(reqs)])
			}
		})
	}
}
