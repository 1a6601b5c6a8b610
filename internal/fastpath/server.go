// Package fastpath serves the plain HTTP/1.1 requests that IMDS clients send
// without most of net/http's general machinery, and hands every other
// connection to net/http.
//
// A Server reads requests on its own connections, into a buffer of its own.
// A request of the small subset it serves (see request.go) goes to the
// http.Server's handler with a request and a ResponseWriter reused from one
// request to the next, and the answer is written as net/http writes it, to a
// buffered writer, in one system call. At the first request outside that
// subset, the connection and the bytes read of that request go to the
// http.Server itself, through a listener of its own, so that net/http
// answers it and the rest of the connection exactly as it would have.
//
// The fast path keeps the http.Server's limits: ReadHeaderTimeout from the
// connection's start or from the first byte of a request on a reused one,
// WriteTimeout from the end of a request's header, IdleTimeout between
// requests; requests larger than its buffer (4 KiB) go to net/http, which
// applies MaxHeaderBytes. What it leaves out: the handler's request context
// is the connection's and is not cancelled when the client goes away,
// ConnState hooks are not called, and SetKeepAlivesEnabled is not honoured.
// Handlers must not keep the request, its header or the ResponseWriter after
// ServeHTTP returns: they are reused.
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
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// bufSize is the largest request header the fast path reads; larger ones go
// to net/http, whose own limit is at least this.
const bufSize = 4 << 10

// Server serves HTTP/1.1 with an http.Server's handler and limits.
type Server struct {
	http    *http.Server
	handoff *handoffListener

	shutting atomic.Bool
	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	drained  chan struct{} // closed when shutting down and no connection is left
	isDrain  bool
}

// New returns a Server that serves with srv's Handler, BaseContext,
// ConnContext, ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout and
// ErrorLog, and serves through srv the connections it hands over. It takes
// srv over: srv's ConnContext, if any, is then given the accepted
// connection on both paths, so that a handler that reaches the socket
// through the context (the hop limit) finds the same one.
func New(srv *http.Server) *Server {
	if cc := srv.ConnContext; cc != nil {
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*replayConn); ok {
				c = rc.Conn
			}
			return cc(ctx, c)
		}
	}
	return &Server{http: srv, conns: map[*conn]struct{}{}, drained: make(chan struct{})}
}

// Serve accepts connections on l until Shutdown or an error of l, and
// returns http.ErrServerClosed after Shutdown. It may be called once.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.ln != nil || s.shutting.Load() {
		s.mu.Unlock()
		if s.shutting.Load() {
			return http.ErrServerClosed
		}
		return errors.New("fastpath: Serve called twice")
	}
	s.ln = l
	s.handoff = newHandoffListener(l.Addr())
	s.mu.Unlock()

	herr := make(chan error, 1)
	go func() { herr <- s.http.Serve(s.handoff) }()
	err := s.accept(l)
	if !s.shutting.Load() {
		s.handoff.Close()
	}
	if e := <-herr; !errors.Is(e, http.ErrServerClosed) && !errors.Is(e, net.ErrClosed) && err == nil {
		err = e
	}
	return err
}

func (s *Server) accept(l net.Listener) error {
	base := context.Background()
	if s.http.BaseContext != nil {
		base = s.http.BaseContext(l)
		if base == nil {
			panic("fastpath: BaseContext returned a nil context")
		}
	}
	base = context.WithValue(base, http.ServerContextKey, s.http)
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("fastpath: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		ctx := context.WithValue(base, http.LocalAddrContextKey, nc.LocalAddr())
		if cc := s.http.ConnContext; cc != nil {
			if ctx = cc(ctx, nc); ctx == nil {
				panic("fastpath: ConnContext returned a nil context")
			}
		}
		c := getConn(s, nc, ctx)
		if !s.track(c) {
			nc.Close()
			putConn(c)
			continue
		}
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish, and shuts the http.Server down, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.mu.Lock()
	var lerr error
	if s.ln != nil {
		lerr = s.ln.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.drainIfDone()
	s.mu.Unlock()
	herr := s.http.Shutdown(ctx)
	select {
	case <-s.drained:
	case <-ctx.Done():
		return ctx.Err()
	}
	if errors.Is(lerr, net.ErrClosed) {
		lerr = nil
	}
	return errors.Join(lerr, herr)
}

func (s *Server) shuttingDown() bool { return s.shutting.Load() }

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.drainIfDone()
	s.mu.Unlock()
}

// drainIfDone closes drained once shutting down and no connection is left;
// s.mu is held.
func (s *Server) drainIfDone() {
	if s.shutting.Load() && len(s.conns) == 0 && !s.isDrain {
		s.isDrain = true
		close(s.drained)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.http.ErrorLog != nil {
		s.http.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.http.ReadHeaderTimeout != 0 {
		return s.http.ReadHeaderTimeout
	}
	return s.http.ReadTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.http.IdleTimeout != 0 {
		return s.http.IdleTimeout
	}
	return s.http.ReadTimeout
}

// Connection states, for Shutdown.
const (
	stateNew    int32 = iota // accepted, no byte of a request yet
	stateActive              // reading or answering a request
	stateIdle                // waiting for the next request
	stateClosed              // closed by Shutdown
)

// conn is one connection on the fast path. Its buffers, header maps and
// request are reused by the next connection.
type conn struct {
	srv   *Server
	nc    net.Conn
	state atomic.Int32

	buf  [bufSize]byte
	r, w int // buf[r:w] is read and not yet consumed
	ps   parseState
	// hdrDeadline is when the current request's header must be complete;
	// zero when not set since the request began.
	hdrDeadline time.Time

	req      *http.Request
	tmpl     http.Request // the request fields every request starts with
	url      url.URL
	hdr      http.Header
	vals     []string
	seen     []seen
	lastPath string

	resp     response
	lastKeys []string // of the last answer's header, sorted
	bw       *bufio.Writer
	clen     [20]byte
	date     [29]byte
	hijacked bool
	reused   bool // a request was answered on this connection
}

var connPool sync.Pool

func getConn(s *Server, nc net.Conn, ctx context.Context) *conn {
	c, _ := connPool.Get().(*conn)
	if c == nil {
		c = &conn{hdr: http.Header{}, resp: response{hdr: http.Header{}}}
		c.bw = bufio.NewWriterSize(nil, 4<<10)
		c.resp.w = bufio.NewWriterSize(nil, bufferBeforeChunking)
	}
	c.srv, c.nc = s, nc
	c.state.Store(stateNew)
	c.r, c.w = 0, 0
	c.hijacked, c.reused = false, false
	c.hdrDeadline = time.Time{}
	c.bw.Reset(nc)
	remote := ""
	if ra := nc.RemoteAddr(); ra != nil {
		remote = ra.String()
	}
	c.tmpl = http.Request{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		RemoteAddr: remote, Body: http.NoBody,
	}
	c.req = c.tmpl.WithContext(ctx)
	c.tmpl = *c.req
	return c
}

func putConn(c *conn) {
	c.srv, c.nc, c.req = nil, nil, nil
	c.tmpl = http.Request{}
	c.bw.Reset(nil)
	connPool.Put(c)
}

func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) || c.state.CompareAndSwap(stateNew, stateClosed) {
		c.nc.Close()
	}
}

// serve reads and answers requests until the connection closes, is
// hijacked or goes to net/http.
func (c *conn) serve() {
	handedOff := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.logf("fastpath: panic serving %v: %v\n%s", c.tmpl.RemoteAddr, err, buf)
		}
		if c.hijacked || handedOff {
			putConn(c)
			return
		}
		c.bw.Flush()
		c.nc.Close()
		c.srv.untrack(c)
		putConn(c)
	}()

	h := c.srv.http.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	hdrTO, writeTO, idleTO := c.srv.readHeaderTimeout(), c.srv.http.WriteTimeout, c.srv.idleTimeout()
	if hdrTO > 0 {
		c.hdrDeadline = time.Now().Add(hdrTO)
		c.nc.SetReadDeadline(c.hdrDeadline)
	}
	for {
		switch c.readRequest(hdrTO) {
		case parseOdd:
			handedOff = true
			c.handOff(hdrTO)
			return
		case parseMore:
			return // closed, or read error
		}
		if c.srv.shuttingDown() {
			return // as net/http: a request read while shutting down is not answered
		}
		c.hdrDeadline = time.Time{}
		if writeTO > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(writeTO))
		}
		req := c.request()
		c.resp.reset(c, req, wantsClose(req))
		h.ServeHTTP(&c.resp, req)
		if c.hijacked {
			return
		}
		c.resp.finish()
		if err := c.bw.Flush(); err != nil || !c.resp.reusable() || c.srv.shuttingDown() {
			return
		}
		c.state.Store(stateIdle)
		if c.srv.shuttingDown() && c.state.CompareAndSwap(stateIdle, stateClosed) {
			return
		}
		c.reused = true
		if c.r == c.w {
			// The client has not read the answer yet, so its next request
			// cannot be here: a read now would find nothing and cost a
			// system call. Other connections' goroutines go first, and
			// under load the request has often come when this one runs
			// again. Without other work, Gosched returns at once.
			runtime.Gosched()
		}
		if c.w-c.r < 4 {
			if idleTO > 0 {
				c.nc.SetReadDeadline(time.Now().Add(idleTO))
			} else {
				c.nc.SetReadDeadline(time.Time{})
			}
		}
	}
}

// readRequest reads until buf holds a complete request header. It returns
// parseDone with the request parsed, parseOdd for a request that goes to
// net/http, or parseMore when the connection is done.
//
// On a reused connection, net/http waits for 4 bytes of the next request
// under the idle timeout before it reads the request under the header
// timeout, and closes the connection without an answer when they do not
// come. The fast path does the same, and hands a request over only once it
// has 4 bytes of it, for net/http then reads it as the first request of a
// connection.
func (c *conn) readRequest(hdrTO time.Duration) parseResult {
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	c.startParse()
	odd := false
	for {
		if n := c.w - c.r; n > 0 {
			if c.state.Load() != stateActive && !c.state.CompareAndSwap(stateNew, stateActive) && !c.state.CompareAndSwap(stateIdle, stateActive) {
				return parseMore // closed by Shutdown
			}
			if !odd {
				switch c.parse() {
				case parseDone:
					c.r = c.ps.scan
					return parseDone
				case parseOdd:
					odd = true
				}
			}
			if odd && (!c.reused || n >= 4) {
				return parseOdd
			}
			if c.w == len(c.buf) {
				if c.r == 0 {
					return parseOdd // larger than the fast path reads
				}
				n := copy(c.buf[:], c.buf[c.r:c.w])
				c.ps.scan -= c.r
				c.r, c.w = 0, n
			}
			if c.reused && n >= 4 && c.hdrDeadline.IsZero() && hdrTO > 0 {
				c.hdrDeadline = time.Now().Add(hdrTO)
				c.nc.SetReadDeadline(c.hdrDeadline)
			}
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if n > 0 || err == nil {
			continue
		}
		if errors.Is(err, io.EOF) && c.w > c.r && (!c.reused || c.w-c.r >= 4) {
			return parseOdd // net/http answers a cut request
		}
		return parseMore
	}
}

func (c *conn) startParse() {
	clear(c.hdr)
	c.vals = c.vals[:0]
	c.ps = parseState{scan: c.r}
}

// request is the parsed request, in the reused *http.Request.
func (c *conn) request() *http.Request {
	r := c.req
	*r = c.tmpl
	c.url = url.URL{Path: c.ps.path}
	r.Method = c.ps.method
	r.URL = &c.url
	r.RequestURI = c.ps.path
	r.Header = c.hdr
	r.Host = c.ps.host
	r.Close = httpguts.HeaderValuesContainsToken(c.hdr["Connection"], "close")
	return r
}

// wantsClose is net/http's test of a request that asks to close the
// connection after the answer.
func wantsClose(r *http.Request) bool {
	return r.Close || hasToken(get(r.Header, "Connection"), "close")
}

// handOff gives the connection and what was read of the current request to
// net/http.
func (c *conn) handOff(hdrTO time.Duration) {
	rc := &replayConn{Conn: c.nc, buf: bytes.Clone(c.buf[c.r:c.w])}
	if hdrTO > 0 {
		rc.limit = c.hdrDeadline
		if rc.limit.IsZero() {
			rc.limit = time.Now().Add(hdrTO)
		}
	}
	c.srv.untrack(c)
	if !c.srv.handoff.give(rc) {
		c.nc.Close()
	}
}

// hijack gives the connection to the handler.
func (c *conn) hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.hijacked = true
	c.nc.SetDeadline(time.Time{})
	var rd io.Reader = c.nc
	if c.w > c.r {
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(c.buf[c.r:c.w])), c.nc)
	}
	c.srv.untrack(c)
	return c.nc, bufio.NewReadWriter(bufio.NewReader(rd), bufio.NewWriter(c.nc)), nil
}

// handoffListener is the listener of the http.Server: its connections are
// those the fast path hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give passes c to the http.Server; false once it is shut down.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// replayConn is a connection whose first bytes were already read: net/http
// reads them again from buf. Its first read deadline is held to the
// request's header deadline, so that the hand-over does not lengthen it.
type replayConn struct {
	net.Conn
	buf     []byte
	limit   time.Time
	clamped bool
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *replayConn) SetReadDeadline(t time.Time) error {
	if !c.clamped {
		c.clamped = true
		if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
			t = c.limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite lets net/http half-close the connection, as it does a TCP one.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("fastpath: %T cannot half-close", c.Conn)
}
