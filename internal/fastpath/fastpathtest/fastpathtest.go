// Package fastpathtest is what the tests that compare the fast path with
// net/http share: serving on a loopback listener, sending raw bytes and
// comparing the answers.
package fastpathtest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Serve listens on addr ("127.0.0.1:0", "[::1]:0"), runs serve on the
// listener and returns its address. The test's cleanup shuts the server
// down and checks that serve returned http.ErrServerClosed.
func Serve(tb testing.TB, addr string, serve func(net.Listener) error, shutdown func(context.Context) error) string {
	tb.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	tb.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("serve: %v", err)
		}
	})
	return l.Addr().String()
}

// Exchange sends raw on a new connection, closes its sending side, and
// returns everything the server sends until it closes the connection.
func Exchange(tb testing.TB, addr string, raw []byte) []byte {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(raw); err != nil {
		tb.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c) // a reset after the answer is not an error here
	return got
}

var dateField = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r$`)

// Compare sends raw to the server at std (net/http) and to the one at fast
// (the fast path), and fails tb unless both answer the same bytes, Date
// values aside.
func Compare(tb testing.TB, std, fast string, raw []byte) {
	tb.Helper()
	want := dateField.ReplaceAllString(string(Exchange(tb, std, raw)), "Date: (date)\r")
	got := dateField.ReplaceAllString(string(Exchange(tb, fast, raw)), "Date: (date)\r")
	if got != want {
		tb.Errorf("request %q:\nnet/http: %q\nfast path: %q\ndiff (-net/http +fast path):\n%s", raw, want, got, cmp.Diff(want, got))
	}
}
