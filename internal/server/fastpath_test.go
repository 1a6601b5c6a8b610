package server

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/fastpath"
	"github.com/imds/imds/internal/fastpath/fastpathtest"
	"github.com/imds/imds/internal/testenv"
)

// dataPair is one data-plane handler served twice, as Serve serves it: by
// net/http alone and by the fast path, on listeners at the same address.
type dataPair struct {
	std, fast string
	token     string // valid for the demo instance
}

// newDataPair builds the data plane of the demo instance on a fixed clock,
// so that its tokens and TTL headers do not depend on when a request comes.
func newDataPair(tb testing.TB, keepAlive bool, addr string) dataPair {
	tb.Helper()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	s, err := New(tb.Context(), Options{DataDir: tb.TempDir(), KeepAlive: keepAlive, Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	h := s.Handler()
	errLog := log.New(io.Discard, "", 0)
	std := newHTTPServer(h, context.Background(), errLog)
	fast := fastpath.New(newHTTPServer(h, context.Background(), errLog))
	p := dataPair{
		std:  fastpathtest.Serve(tb, addr, std.Serve, std.Shutdown),
		fast: fastpathtest.Serve(tb, addr, fast.Serve, fast.Shutdown),
	}
	req := httptest.NewRequest(http.MethodPut, "/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	p.token = w.Body.String()
	return p
}

// compare checks that both servers answer raw with the same bytes, Date
// values aside.
func (p dataPair) compare(tb testing.TB, raw []byte) {
	tb.Helper()
	fastpathtest.Compare(tb, p.std, p.fast, raw)
}

// dataRequests are what IMDS clients send, and what they should not,
// with tok as the session token.
func dataRequests(tok string) []string {
	const host = "Host: 169.254.169.254\r\n"
	get := func(path string, fields ...string) string {
		return "GET " + path + " HTTP/1.1\r\n" + host + strings.Join(fields, "") + "\r\n"
	}
	v2 := "X-aws-ec2-metadata-token: " + tok + "\r\n"
	put := "PUT /latest/api/token HTTP/1.1\r\n" + host + "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"
	return []string{
		get("/latest/meta-data/instance-id"),
		get("/latest/meta-data/instance-id", v2),
		get("/latest/meta-data/instance-id", v2, "User-Agent: aws-sdk-go-v2/1.30.0 os/linux\r\nAccept-Encoding: gzip\r\n"),
		get("/latest/meta-data/instance-id", v2, "Connection: close\r\n"),
		get("/latest/meta-data/instance-id", v2) + get("/latest/meta-data/ami-id", v2) + get("/latest/user-data", v2),
		put + "\r\n",
		put + "Content-Length: 0\r\nUser-Agent: Boto3/1.34\r\n\r\n" + get("/latest/meta-data/", v2),
		put + "X-Forwarded-For: 10.0.0.1\r\n\r\n",
		"PUT /latest/api/token HTTP/1.1\r\n" + host + "X-aws-ec2-metadata-token-ttl-seconds: 0\r\n\r\n",
		"PUT /latest/api/token HTTP/1.1\r\n" + host + "\r\n",
		"PUT /latest/api/token/ HTTP/1.1\r\n" + host + "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n",
		"PUT /latest/meta-data/ HTTP/1.1\r\n" + host + "\r\n",
		"OPTIONS /latest/api/token HTTP/1.1\r\n" + host + "\r\n",
		get("/latest/api/token"),
		"HEAD /latest/meta-data/instance-id HTTP/1.1\r\n" + host + v2 + "\r\n",
		"HEAD /latest/meta-data/ HTTP/1.1\r\n" + host + "\r\n" + get("/latest/meta-data/"),
		"POST /latest/meta-data/ HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n",
		get("/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: AAAA\r\n"),
		get("/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: \r\n"),
		get("/latest/meta-data/instance-id", v2, v2),
		get("/latest/meta-data/instance-id", v2, "X-Forwarded-For: 10.0.0.1\r\n"),
		get("/latest/meta-data/iam/security-credentials"),
		get("/latest/meta-data/iam/security-credentials/"),
		"GET /latest/meta-data/iam/security-credentials HTTP/1.1\r\nHost: [fd00:ec2::254]\r\n\r\n",
		get("/"),
		get("/latest"),
		get("/latest/"),
		get("/2009-04-04/meta-data/"),
		get("/1999-01-01/meta-data/"),
		get("/latest/meta-data/nothing-here"),
		get("/latest/dynamic/instance-identity/document", v2),
		get("/latest/meta-data/placement/"),
		get("/latest/meta-data/instance-id?x=1"),
		get("/latest/meta-data/instance%2Did"),
		"GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n",
		"GET http://169.254.169.254/latest/meta-data/instance-id HTTP/1.1\r\n" + host + "\r\n",
		get("/latest/meta-data/instance-id") + "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n",
		"GET /latest/meta-data/instance-id HTTP/1.1\r\n" + host,
	}
}

// TestFastPathMatchesNetHTTP sends the same bytes to the data plane served
// by net/http and by the fast path, and compares the answers byte for byte.
func TestFastPathMatchesNetHTTP(t *testing.T) {
	for _, keepAlive := range []bool{false, true} {
		p := newDataPair(t, keepAlive, "127.0.0.1:0")
		for _, raw := range dataRequests(p.token) {
			p.compare(t, []byte(raw))
		}
	}
}

// TestFastPathMatchesNetHTTPOnIPv6 does the same on an IPv6 endpoint, which
// the demo instance does not serve: the connection is closed unanswered.
func TestFastPathMatchesNetHTTPOnIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	testenv.Need(t, "IPv6 loopback", err)
	l.Close()
	p := newDataPair(t, true, "[::1]:0")
	for _, raw := range dataRequests(p.token)[:8] {
		p.compare(t, []byte(raw))
	}
}

func FuzzFastPathDataPlane(f *testing.F) {
	pairs := []dataPair{newDataPair(f, false, "127.0.0.1:0"), newDataPair(f, true, "127.0.0.1:0")}
	for _, raw := range dataRequests(pairs[0].token) {
		f.Add(false, []byte(raw))
	}
	for _, raw := range dataRequests(pairs[1].token) {
		f.Add(true, []byte(raw))
	}
	f.Fuzz(func(t *testing.T, keepAlive bool, raw []byte) {
		p := pairs[0]
		if keepAlive {
			p = pairs[1]
		}
		p.compare(t, raw)
	})
}
