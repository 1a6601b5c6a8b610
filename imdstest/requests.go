package imdstest

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"sync"
)

// Request is one request a client made.
type Request struct {
	Method string
	Path   string // without the query
	// Token: the request carried X-aws-ec2-metadata-token (IMDSv2), valid
	// or not.
	Token     bool
	UserAgent string
	// Status is the answer's HTTP status; 0 when the server closed the
	// connection without one (as EC2 does, e.g. for a disabled IPv6
	// endpoint).
	Status int
}

// Requests returns the requests answered so far, oldest first.
func (s *Server) Requests() []Request {
	s.reqs.mu.Lock()
	defer s.reqs.mu.Unlock()
	return slices.Clone(s.reqs.list)
}

// ResetRequests forgets the requests recorded so far.
func (s *Server) ResetRequests() {
	s.reqs.mu.Lock()
	defer s.reqs.mu.Unlock()
	s.reqs.list = nil
}

type recorder struct {
	mu   sync.Mutex
	list []Request
}

// wrap records every request h answers.
func (rc *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &statusWriter{ResponseWriter: w}
		defer func() {
			rc.mu.Lock()
			rc.list = append(rc.list, Request{
				Method:    r.Method,
				Path:      r.URL.Path,
				Token:     r.Header.Get("X-aws-ec2-metadata-token") != "",
				UserAgent: r.UserAgent(),
				Status:    rw.status,
			})
			rc.mu.Unlock()
		}()
		h.ServeHTTP(rw, r)
	})
}

// statusWriter remembers the status written; it passes Hijack through, which
// the data plane uses to close a connection without an answer.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && !w.hijacked {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 && !w.hijacked {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
