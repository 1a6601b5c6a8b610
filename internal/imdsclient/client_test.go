package imdsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeIMDS is a small IMDS for the client's tests. It records every request
// as "METHOD PATH" with " token" when it carried one.
type fakeIMDS struct {
	mu       sync.Mutex
	log      []string
	required bool              // http-tokens required
	put      func() (int, int) // status and TTL header of a token answer; nil: 200, the requested TTL
	files    map[string]string // path -> body; a path ending in "/" is a listing
}

const fakeToken = "AQAEAFAKE-token=="

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := r.Header.Get(HeaderToken)
	f.mu.Lock()
	entry := r.Method + " " + r.URL.Path
	if tok != "" {
		entry += " token"
	}
	f.log = append(f.log, entry)
	f.mu.Unlock()
	w.Header().Set("Server", "EC2ws")
	if r.Method == http.MethodPut {
		status, ttl := http.StatusOK, 0
		if f.put != nil {
			status, ttl = f.put()
		} else {
			fmt.Sscan(r.Header.Get(HeaderTTL), &ttl)
		}
		if ttl > 0 {
			w.Header().Set(HeaderTTL, fmt.Sprint(ttl))
		}
		w.WriteHeader(status)
		if status == http.StatusOK {
			io.WriteString(w, fakeToken)
		}
		return
	}
	if (tok == "" && f.required) || (tok != "" && tok != fakeToken) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, ok := f.files[r.URL.Path]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	io.WriteString(w, body)
}

func (f *fakeIMDS) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func newClient(t *testing.T, srv *httptest.Server, o Options) *Client {
	t.Helper()
	o.Endpoint = srv.URL
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// failPUT is a transport that fails every token request with err and sends
// everything else to the server.
type failPUT struct{ err error }

func (f failPUT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		return nil, f.err
	}
	return http.DefaultTransport.RoundTrip(r)
}

// timeoutError is what a transport returns when an answer does not come.
type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout awaiting response headers" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestGetTokenFirstAndCached(t *testing.T) {
	f := &fakeIMDS{files: map[string]string{"/latest/meta-data/instance-id": "i-0123456789abcdef0"}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv, Options{})
	for range 2 {
		r, err := c.Get(t.Context(), "/latest/meta-data/instance-id")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(r.Body), "i-0123456789abcdef0"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if !r.Token || r.Fallback != nil {
			t.Errorf("got Token %v Fallback %v, want a token and no fallback", r.Token, r.Fallback)
		}
	}
	if err := c.FellBack(); err != nil {
		t.Errorf("FellBack: got %v, want nil", err)
	}
	want := []string{"PUT /latest/api/token", "GET /latest/meta-data/instance-id token", "GET /latest/meta-data/instance-id token"}
	if diff := cmp.Diff(want, f.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestGetFallback(t *testing.T) {
	const path = "/latest/meta-data/instance-id"
	tests := []struct {
		name       string
		put        func() (int, int)
		transport  error // token requests fail with this instead
		noFallback bool
		want       []string // requests of two Gets
		wantErr    bool
	}{
		{name: "403 turns tokens off", put: status(403),
			want: []string{"PUT /latest/api/token", "GET " + path, "GET " + path}},
		{name: "404 turns tokens off", put: status(404),
			want: []string{"PUT /latest/api/token", "GET " + path, "GET " + path}},
		{name: "405 turns tokens off", put: status(405),
			want: []string{"PUT /latest/api/token", "GET " + path, "GET " + path}},
		{name: "500 falls back once", put: status(500),
			want: []string{"PUT /latest/api/token", "GET " + path, "PUT /latest/api/token", "GET " + path}},
		{name: "no TTL header falls back once", put: func() (int, int) { return 200, 0 },
			want: []string{"PUT /latest/api/token", "GET " + path, "PUT /latest/api/token", "GET " + path}},
		{name: "400 is terminal", put: status(400), wantErr: true,
			want: []string{"PUT /latest/api/token", "PUT /latest/api/token"}},
		{name: "403 without fallback", put: status(403), noFallback: true, wantErr: true,
			want: []string{"PUT /latest/api/token", "PUT /latest/api/token"}},
		{name: "no answer turns tokens off", transport: timeoutError{},
			want: []string{"GET " + path, "GET " + path}},
		{name: "refused turns tokens off", transport: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
			want: []string{"GET " + path, "GET " + path}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeIMDS{put: tt.put, files: map[string]string{path: "i-0123456789abcdef0"}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			o := Options{NoFallback: tt.noFallback}
			if tt.transport != nil {
				o.Transport = failPUT{tt.transport}
			}
			c := newClient(t, srv, o)
			for range 2 {
				r, err := c.Get(t.Context(), path)
				if tt.wantErr {
					if err == nil {
						t.Errorf("got %q, want an error", r.Body)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if r.Token || r.Fallback == nil {
					t.Errorf("got Token %v Fallback %v, want IMDSv1 with the token failure", r.Token, r.Fallback)
				}
			}
			if diff := cmp.Diff(tt.want, f.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if got := c.FellBack(); (got != nil) == tt.wantErr {
				t.Errorf("FellBack: got %v", got)
			}
		})
	}
}

func status(code int) func() (int, int) { return func() (int, int) { return code, 0 } }

func TestGetRenewsTokenOn401(t *testing.T) {
	f := &fakeIMDS{files: map[string]string{"/latest/meta-data/ami-id": "ami-0123456789abcdef0"}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv, Options{})
	// A token the server no longer accepts, as after a key rotation.
	c.token, c.expires = "stale", time.Now().Add(time.Hour)
	r, err := c.Get(t.Context(), "/latest/meta-data/ami-id")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.Body); got != "ami-0123456789abcdef0" {
		t.Errorf("got %q", got)
	}
	want := []string{"GET /latest/meta-data/ami-id token", "PUT /latest/api/token", "GET /latest/meta-data/ami-id token"}
	if diff := cmp.Diff(want, f.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestGetNoToken(t *testing.T) {
	f := &fakeIMDS{required: true}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv, Options{NoToken: true})
	_, err := c.Get(t.Context(), "/latest/meta-data/")
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode() != http.StatusUnauthorized {
		t.Fatalf("got %v, want a 401 StatusError", err)
	}
	if diff := cmp.Diff([]string{"GET /latest/meta-data/"}, f.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestTokenTTLHeader(t *testing.T) {
	f := &fakeIMDS{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv, Options{TokenTTL: 300 * time.Second})
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Value != fakeToken || tok.TTL != 300*time.Second {
		t.Errorf("got %q %v, want %q 5m0s", tok.Value, tok.TTL, fakeToken)
	}
}

func TestNewRejects(t *testing.T) {
	for _, o := range []Options{
		{Endpoint: "169.254.169.254"},
		{Endpoint: "ftp://169.254.169.254"},
		{TokenTTL: 21601 * time.Second},
		{TokenTTL: 1500 * time.Millisecond},
		{NoToken: true, NoFallback: true},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): got no error", o)
		}
	}
}

func TestTransportIgnoresProxy(t *testing.T) {
	if tr := NewTransport(0, 0); tr.Proxy != nil {
		t.Error("transport has a proxy function; IMDS requests must never go through a proxy")
	}
}

func TestClassify(t *testing.T) {
	sys := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		err  error
		want Failure
	}{
		{nil, Answered},
		{&StatusError{"PUT", TokenPath, &Response{StatusCode: 403}}, Answered},
		{fmt.Errorf("x: %w", ErrNoTTL), Answered},
		{sys(syscall.ECONNREFUSED), Refused},
		{sys(syscall.ENETUNREACH), NoRoute},
		{sys(syscall.EHOSTUNREACH), NoRoute},
		{&net.OpError{Op: "dial", Err: timeoutError{}}, ConnectTimeout},
		{&net.OpError{Op: "dial", Err: context.DeadlineExceeded}, ConnectTimeout},
		{timeoutError{}, NoAnswer},
		{fmt.Errorf("Get: %w", context.DeadlineExceeded), NoAnswer},
		{io.EOF, Closed},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, Closed},
		{errors.New("something else"), OtherFailure},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestClassifyRealErrors checks Classify on the errors a real transport
// returns, not only on hand-made ones.
func TestClassifyRealErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := New(Options{Endpoint: "http://" + addr})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Do(t.Context(), http.MethodGet, "/", nil)
		if got := Classify(err); got != Refused {
			t.Errorf("got %v (%v), want %v", got, err, Refused)
		}
	})
	t.Run("closed", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				io.ReadAtLeast(c, make([]byte, 16), 16)
				c.Close()
			}
		}()
		c, err := New(Options{Endpoint: "http://" + l.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Do(t.Context(), http.MethodGet, "/", nil)
		if got := Classify(err); got != Closed {
			t.Errorf("got %v (%v), want %v", got, err, Closed)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
		}))
		defer srv.Close()
		defer close(release)
		// The answer never comes; the timeout is what is under test.
		c, err := New(Options{Endpoint: srv.URL, AnswerTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Do(t.Context(), http.MethodPut, TokenPath, nil)
		if got := Classify(err); got != NoAnswer {
			t.Errorf("got %v (%v), want %v", got, err, NoAnswer)
		}
	})
}

func TestCrawl(t *testing.T) {
	f := &fakeIMDS{files: map[string]string{
		"/latest/meta-data/":                              "ami-id\niam/\nplacement/\npublic-keys/\nspot-gone",
		"/latest/meta-data/ami-id":                        "ami-0123456789abcdef0",
		"/latest/meta-data/iam/":                          "info\nsecurity-credentials/",
		"/latest/meta-data/iam/info":                      "{\n  \"Code\" : \"Success\"\n}",
		"/latest/meta-data/iam/security-credentials/":     "role",
		"/latest/meta-data/iam/security-credentials/role": `{"AccessKeyId": "secret"}`,
		"/latest/meta-data/placement/":                    "availability-zone",
		"/latest/meta-data/placement/availability-zone":   "us-east-1a",
		"/latest/meta-data/public-keys/":                  "0=my-key",
		"/latest/meta-data/public-keys/0/":                "openssh-key",
		"/latest/meta-data/public-keys/0/openssh-key":     "ssh-ed25519 AAAA",
		"/latest/":                                "dynamic\nmeta-data\nuser-data",
		"/latest/user-data":                       "#!/bin/sh",
		"/latest/dynamic/":                        "fws/",
		"/latest/dynamic/fws/":                    "instance-monitoring",
		"/latest/dynamic/fws/instance-monitoring": "enabled",
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv, Options{})

	got, err := c.Crawl(t.Context(), "/latest/meta-data/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ami-id":"ami-0123456789abcdef0","iam":{"info":{"Code":"Success"},"security-credentials":{"role":null}},` +
		`"placement":{"availability-zone":"us-east-1a"},"public-keys":{"0=my-key":{"openssh-key":"ssh-ed25519 AAAA"}},"spot-gone":null}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("crawl (-want +got):\n%s", diff)
	}

	root, err := c.Crawl(t.Context(), "/latest")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(root)
	if got, want := string(b), `{"dynamic":{"fws":{"instance-monitoring":"enabled"}},"meta-data":`+want+`,"user-data":"#!/bin/sh"}`; got != want {
		t.Errorf("crawl of /latest/: got %s, want %s", got, want)
	}

	creds, err := c.Crawl(t.Context(), "/latest/meta-data/iam/security-credentials")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(creds)
	if got, want := string(b), `{"role":{"AccessKeyId":"secret"}}`; got != want {
		t.Errorf("crawl inside security-credentials: got %s, want %s", got, want)
	}
	if strings.Contains(strings.Join(f.requests(), "\n"), "PUT /latest/api/token\nPUT") {
		t.Errorf("token requested twice: %v", f.requests())
	}
}
