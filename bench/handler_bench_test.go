package bench

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imds/imds/internal/dataplane"
	"github.com/imds/imds/internal/server"
)

// These benchmarks run one handler call per iteration, without sockets, so
// that allocs/op is the handler's own cost: net/http's parsing and writing
// are the same for every handler and left out.
//
//	go test -run '^$' -bench . -benchmem ./bench/

const instanceID = "/latest/meta-data/instance-id"

// discard is a reusable ResponseWriter: the header map is cleared, not
// reallocated, between requests, and the body is counted and dropped.
type discard struct {
	h    http.Header
	code int
	n    int
}

func newDiscard() *discard { return &discard{h: http.Header{}} }

func (w *discard) Header() http.Header { return w.h }

func (w *discard) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discard) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}

func (w *discard) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// imds is the data-plane handler as `imds serve` builds it, serving the
// built-in demo instance.
func imds(tb testing.TB) http.Handler { return imdsWith(tb, server.Options{}) }

// imdsWith is imds with options.
func imdsWith(tb testing.TB, o server.Options) http.Handler {
	tb.Helper()
	o.DataDir = tb.TempDir()
	s, err := server.New(tb.Context(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s.Handler()
}

// loopbackConn returns the server side of a loopback TCP connection, for the
// token PUT to set its hop limit on, as it does under `imds serve`.
func loopbackConn(tb testing.TB) net.Conn {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	s, err := l.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// request builds a request as net/http hands it to the handler on a
// loopback listener: remote and local address, and the connection in the
// context as server.Serve's ConnContext puts it.
func request(tb testing.TB, method, target string, hdr map[string]string) *http.Request {
	tb.Helper()
	c := loopbackConn(tb)
	ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, c.LocalAddr())
	ctx = dataplane.ConnContext(ctx, c)
	r := httptest.NewRequestWithContext(ctx, method, target, nil)
	r.RemoteAddr = c.RemoteAddr().String()
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

// token fetches a six-hour session token from h.
func token(tb testing.TB, h http.Handler) string {
	tb.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(tb, http.MethodPut, "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21600"}))
	if w.Code != http.StatusOK {
		tb.Fatalf("token PUT: got status %d, want 200", w.Code)
	}
	return w.Body.String()
}

// cases are the benchmarked requests, shared with TestCases so that a
// benchmark never measures an error page.
func cases(tb testing.TB) []struct {
	name string
	h    http.Handler
	r    *http.Request
} {
	h := imds(tb)
	tok := token(tb, h)
	norec := imdsWith(tb, server.Options{NoRecording: true})
	norecTok := token(tb, norec)
	return []struct {
		name string
		h    http.Handler
		r    *http.Request
	}{
		{"IMDSv2Get", h, request(tb, http.MethodGet, instanceID, map[string]string{"X-aws-ec2-metadata-token": tok})},
		{"TokenPut", h, request(tb, http.MethodPut, "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21600"})},
		{"IMDSv1Get", h, request(tb, http.MethodGet, instanceID, nil)},
		{"IMDSv2GetNoRecording", norec, request(tb, http.MethodGet, instanceID, map[string]string{"X-aws-ec2-metadata-token": norecTok})},
		{"IMDSv1GetNoRecording", norec, request(tb, http.MethodGet, instanceID, nil)},
		{"BareHandler", Bare, request(tb, http.MethodGet, instanceID, nil)},
	}
}

func TestCases(t *testing.T) {
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			w := newDiscard()
			c.h.ServeHTTP(w, c.r)
			if w.code != http.StatusOK || w.n == 0 {
				t.Errorf("got status %d with %d body bytes, want 200 with a body", w.code, w.n)
			}
		})
	}
}

func bench(b *testing.B, name string) {
	for _, c := range cases(b) {
		if c.name != name {
			continue
		}
		w := newDiscard()
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			c.h.ServeHTTP(w, c.r)
		}
		if w.code != http.StatusOK {
			b.Fatalf("got status %d, want 200", w.code)
		}
		return
	}
	b.Fatalf("no case %s", name)
}

func BenchmarkIMDSv2Get(b *testing.B)   { bench(b, "IMDSv2Get") }
func BenchmarkTokenPut(b *testing.B)    { bench(b, "TokenPut") }
func BenchmarkIMDSv1Get(b *testing.B)   { bench(b, "IMDSv1Get") }
func BenchmarkBareHandler(b *testing.B) { bench(b, "BareHandler") }

// The same requests without the migration recorder: the difference is what
// recording costs a request.
func BenchmarkIMDSv2GetNoRecording(b *testing.B) { bench(b, "IMDSv2GetNoRecording") }
func BenchmarkIMDSv1GetNoRecording(b *testing.B) { bench(b, "IMDSv1GetNoRecording") }
