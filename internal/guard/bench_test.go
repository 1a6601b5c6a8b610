package guard_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/imds/imds/internal/guard"
)

// BenchmarkGet compares a GET through the guard with the same GET sent
// directly to its upstream (a real imds data plane), in one run: both with
// IMDSv2 tokens, each on a fresh connection as EC2 closes every one. The
// guard is measured without and with process attribution (a /proc scan per
// request).
func BenchmarkGet(b *testing.B) {
	e := start(b, guardConfig)
	attributed := startWith(b, guardConfig, guard.Procfs{})
	for _, bc := range []struct{ name, url string }{
		{"direct", e.upstream.URL},
		{"guard", e.url},
		{"guard-attribution", attributed.url},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			tok := benchToken(b, c, bc.url)
			req, _ := http.NewRequest("GET", bc.url+"/latest/meta-data/instance-id", nil)
			req.Header.Set("X-aws-ec2-metadata-token", tok)
			b.ReportAllocs()
			for b.Loop() {
				res, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}

func benchToken(b *testing.B, c *http.Client, url string) string {
	b.Helper()
	req, _ := http.NewRequest("PUT", url+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	tok, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		b.Fatalf("token: %d", res.StatusCode)
	}
	return string(tok)
}
