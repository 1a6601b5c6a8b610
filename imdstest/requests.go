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

// wrap records every request h answers. A request is recorded when its
// status is decided, before any byte of the answer leaves, so that a client
// that has its answer finds its request in Requests.
func (rc *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &statusWriter{ResponseWriter: w, record: func(status int) {
			rc.mu.Lock()
			rc.list = append(rc.list, Request{
				Method:    r.Method,
				Path:      r.URL.Path,
				Token:     r.Header.Get("X-aws-ec2-metadata-token") != "",
				UserAgent: r.UserAgent(),
				Status:    status,
			})
			rc.mu.Unlock()
		}}
		defer rw.decide(http.StatusOK) // nothing written: net/http answers 200
		h.ServeHTTP(rw, r)
	})
}

// statusWriter records the status once, when it is decided; it passes
// Hijack through, which the data plane uses to close a connection without
// an answer (status 0).
type statusWriter struct {
	http.ResponseWriter
	record  func(status int)
	decided bool
}

func (w *statusWriter) decide(status int) {
	if !w.decided {
		w.decided = true
		w.record(status)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	w.decide(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.decide(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.decide(0)
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
