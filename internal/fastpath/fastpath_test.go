package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/fastpath/fastpathtest"
)

type connKey struct{}

// newHTTPServer is an http.Server configured as the data plane's.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
}

// pair serves h with net/http and with the fast path, and returns their
// addresses.
type pair struct{ std, fast string }

func servePair(tb testing.TB, h http.Handler) pair {
	tb.Helper()
	std := newHTTPServer(h)
	fast := New(newHTTPServer(h))
	return pair{std: fastpathtest.Serve(tb, "127.0.0.1:0", std.Serve, std.Shutdown), fast: fastpathtest.Serve(tb, "127.0.0.1:0", fast.Serve, fast.Shutdown)}
}

func (p pair) compare(tb testing.TB, raw []byte) {
	tb.Helper()
	fastpathtest.Compare(tb, p.std, p.fast, raw)
}

// echo answers with what it saw of the request, or, when the request has
// an X-Script field, runs it (see script).
func echo(w http.ResponseWriter, r *http.Request) {
	if s, ok := r.Header["X-Script"]; ok {
		script(w, r, s[0])
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "method=%q uri=%q proto=%q %d.%d host=%q close=%v cl=%d te=%q\n",
		r.Method, r.RequestURI, r.Proto, r.ProtoMajor, r.ProtoMinor, r.Host, r.Close, r.ContentLength, r.TransferEncoding)
	u := *r.URL
	fmt.Fprintf(&b, "url=%#v\n", u)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range r.Header {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q\n", k, r.Header[k])
	}
	body, err := io.ReadAll(r.Body)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	_, tcp := r.Context().Value(connKey{}).(*net.TCPConn)
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	_, srv := r.Context().Value(http.ServerContextKey).(*http.Server)
	fmt.Fprintf(&b, "body=%q err=%v remote=%s tcp=%v local=%v server=%v trailer=%v form=%v\n",
		body, err, host, tcp, la != nil, srv, r.Trailer, r.Form)
	w.Write([]byte(b.String()))
}

// script runs a handler written in the request: operations separated by
// spaces, each an op letter and an argument.
//
//	hK=V  add V to field K      dK   delete field K
//	cN    WriteHeader(N)        bN   write N bytes
//	sT    WriteString(T)        f    flush
//	j     hijack, write, close
func script(w http.ResponseWriter, _ *http.Request, s string) {
	for op := range strings.FieldsSeq(s) {
		arg := op[1:]
		switch op[0] {
		case 'h':
			if k, v, ok := strings.Cut(arg, "="); ok {
				w.Header()[k] = append(w.Header()[k], v)
			}
		case 'd':
			delete(w.Header(), arg)
		case 'c':
			if n, err := strconv.Atoi(arg); err == nil && n >= 100 && n <= 999 {
				w.WriteHeader(n)
			}
		case 'b':
			if n, err := strconv.Atoi(arg); err == nil && n >= 0 && n <= 8000 {
				w.Write(bytes.Repeat([]byte("<html>0123456789"), 500)[:n])
			}
		case 's':
			io.WriteString(w, arg)
		case 'f':
			w.(http.Flusher).Flush()
		case 'j':
			c, rw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			rw.WriteString("HTTP/1.1 599 Hijacked\r\nContent-Length: 0\r\n\r\n")
			rw.Flush()
			c.Close()
			return
		}
	}
}

// requests are raw requests for the differential tests, and the seeds of
// the fuzz target: ones the fast path serves and ones it hands over.
var requests = []string{
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
	"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: aws-sdk-go-v2/1.30.0\r\nX-aws-ec2-metadata-token: AQAAAA==\r\nAccept-Encoding: gzip\r\n\r\n",
	"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n",
	"HEAD /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
	"GET /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a:  2 \r\nPragma: no-cache\r\nConnection: keep-alive, Close\r\n\r\n",
	"GET /a;b=c/@:$&+,~._- HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
	"GET /a?b=c HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a(b)'*! HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS /latest/api/token HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.0\r\n\r\n",
	"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
	"GET /a HTTP/1.1\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET /a HTTP/1.1\nHost: a\n\n",
	"GET /a HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nNo-Colon\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n",
	"PUT /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"PUT /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
	"\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\n",
	"GET /a HTT",
	"get /a HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET  /a HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1 \r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 20000) + "\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: sHello\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hContent-Type=text/plain hContent-Length=5 c200 sHello\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: b3000\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\nX-Script: b10 f b10\r\n\r\n",
	"HEAD /s HTTP/1.1\r\nHost: a\r\nX-Script: b3000\r\n\r\nHEAD /s HTTP/1.1\r\nHost: a\r\nX-Script: c200\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: c204 sbody c200\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\nX-Script: c304 hEtag=x\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hContent-Length=3 sabcdef\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hContent-Length=9 sabc\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hContent-Length=x sabc\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hTransfer-Encoding=identity sabc\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hTransfer-Encoding=chunked hContent-Length=3 sabc\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hTrailer=X-T,X-U sabc hX-T=1 hTrailer:X-V=2\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hConnection=close sok\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: c103 hLink=x c200 s1\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: c101 hUpgrade=x hConnection=Upgrade\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: h=x hbad\x20key=1 hK=\x20a\x20 hDate=now c700\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: hContent-Encoding=gzip s<html> c200 c201\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: s1 j\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /s HTTP/1.1\r\nHost: a\r\nX-Script: j\r\n\r\n",
}

func TestMatchesNetHTTP(t *testing.T) {
	p := servePair(t, http.HandlerFunc(echo))
	for _, raw := range requests {
		p.compare(t, []byte(raw))
	}
}

func FuzzMatchesNetHTTP(f *testing.F) {
	for _, raw := range requests {
		f.Add([]byte(raw))
	}
	p := servePair(f, http.HandlerFunc(echo))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p.compare(t, raw)
	})
}

// TestPaths checks the fast path's choice of path bytes against net/url:
// the paths it serves are those net/url neither decodes nor escapes.
func TestPaths(t *testing.T) {
	for b := range 256 {
		if !pathByte[b] {
			continue
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET /" + string(rune(b)) + " HTTP/1.1\r\nHost: a\r\n\r\n")))
		if err != nil {
			t.Errorf("byte %q: %v", rune(b), err)
			continue
		}
		if got, want := req.URL.Path, "/"+string(rune(b)); got != want || req.URL.RawPath != "" || req.URL.RawQuery != "" {
			t.Errorf("byte %q: got path %q raw %q query %q, want path %q", rune(b), got, req.URL.RawPath, req.URL.RawQuery, want)
		}
	}
}

// TestServesPlainRequests checks which requests the fast path answers
// itself and which it hands over, and that a connection handed over stays
// with net/http.
func TestServesPlainRequests(t *testing.T) {
	var served []bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, fast := w.(*response)
		served = append(served, fast)
		w.Write([]byte("ok"))
	})
	fast := New(newHTTPServer(h))
	addr := fastpathtest.Serve(t, "127.0.0.1:0", fast.Serve, fast.Shutdown)
	for _, tc := range []struct {
		raw  string
		want []bool
	}{
		{"GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\nPUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", []bool{true, true, true}},
		{"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n", []bool{true, false, false}},
		{"GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n", []bool{false}},
		{"DELETE /a HTTP/1.1\r\nHost: a\r\n\r\n", []bool{false}},
	} {
		served = nil
		fastpathtest.Exchange(t, addr, []byte(tc.raw))
		if !slices.Equal(served, tc.want) {
			t.Errorf("%q: served on the fast path %v, want %v", tc.raw, served, tc.want)
		}
	}
}

// TestShutdownFinishesRequests checks that Shutdown lets a request in
// flight finish, closes idle connections, and then returns.
func TestShutdownFinishesRequests(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.Write([]byte("done"))
	})
	fast := New(newHTTPServer(h))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- fast.Serve(l) }()

	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	idleR := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleR, nil); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	busy, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- fast.Shutdown(context.Background()) }()
	// The idle connection is closed without an answer.
	if b, err := io.ReadAll(idleR); len(b) != 0 {
		t.Errorf("idle connection got %q (%v), want it closed", b, err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("request in flight: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Errorf("request in flight: got %q, close %v; want done and Connection: close", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v, want ErrServerClosed", err)
	}
}

// TestHeaderTimeout checks that a connection whose request header does not
// come in time is closed without an answer, on the fast path and after a
// hand-over.
func TestHeaderTimeout(t *testing.T) {
	srv := newHTTPServer(http.HandlerFunc(echo))
	srv.ReadHeaderTimeout = 50 * time.Millisecond
	fast := New(srv)
	addr := fastpathtest.Serve(t, "127.0.0.1:0", fast.Serve, fast.Shutdown)
	for _, partial := range []string{"GET /a HTTP/1.1\r\nHost: a\r\n", "GET /a HTTP/1.0\r\n"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, partial)
		b, _ := io.ReadAll(c) // returns once the server closes
		c.Close()
		if len(b) != 0 {
			t.Errorf("%q: got %q, want the connection closed without an answer", partial, b)
		}
	}
}
