// Package loadgen is a closed-loop HTTP/1.1 load generator for loopback
// benchmarks: a fixed number of workers each send one request, read the whole
// response and send the next, for a bounded time or number of requests.
//
// It writes prebuilt request bytes on raw TCP connections and parses only the
// status line and the headers it needs, so that the client spends as little
// CPU per request as possible and the server, not the generator, is the
// bottleneck.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	Addr    string // host:port, loopback
	Request []byte // one complete HTTP/1.1 request, see BuildRequest
	// KeepAlive reuses a connection until the server closes it. Without it
	// every request gets its own connection, closed after the response.
	KeepAlive bool
	Workers   int           // concurrent connections; at least 1
	Duration  time.Duration // measured time; 0 means until MaxRequests
	Warmup    time.Duration // load before the measurement starts, not recorded
	// MaxRequests stops the run after this many measured requests; 0 means
	// until Duration. One of the two must be set.
	MaxRequests int
	// MaxSamples bounds the latencies kept for percentiles; 0 means 4 million.
	MaxSamples int
}

// Result is what one run measured.
type Result struct {
	Requests int           `json:"requests"` // complete responses with status 200
	Non200   int           `json:"non_200"`  // complete responses with another status
	Errors   int           `json:"errors"`   // dial, write or read failures
	Conns    int           `json:"conns"`    // connections opened while measuring
	Elapsed  time.Duration `json:"elapsed_ns"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
}

// RPS is the rate of successful requests.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Header is one request header line.
type Header struct{ Name, Value string }

// BuildRequest renders an HTTP/1.1 request without a body. With closeConn the
// request asks the server to close the connection after the response.
func BuildRequest(method, path string, closeConn bool, headers ...Header) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: imdsbench\r\nAccept: */*\r\n", method, path)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
	}
	if method == "PUT" || method == "POST" {
		b.WriteString("Content-Length: 0\r\n")
	}
	if closeConn {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// Run drives cfg.Addr until the duration or request count is reached or ctx
// is done.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Workers < 1 {
		return Result{}, errors.New("loadgen: workers must be at least 1")
	}
	if cfg.Duration <= 0 && cfg.MaxRequests <= 0 {
		return Result{}, errors.New("loadgen: set a duration or a request count")
	}
	if len(cfg.Request) == 0 {
		return Result{}, errors.New("loadgen: empty request")
	}
	if cfg.MaxSamples <= 0 {
		cfg.MaxSamples = 4 << 20
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		measuring atomic.Bool
		budget    atomic.Int64 // requests left when MaxRequests is set
		wg        sync.WaitGroup
	)
	budget.Store(int64(cfg.MaxRequests))
	ws := make([]*worker, cfg.Workers)
	perWorker := cfg.MaxSamples / cfg.Workers
	for i := range ws {
		ws[i] = &worker{cfg: &cfg, measuring: &measuring, budget: &budget, maxSamples: perWorker}
	}
	for _, w := range ws {
		wg.Go(func() { w.loop(ctx) })
	}

	if cfg.Warmup > 0 {
		select {
		case <-time.After(cfg.Warmup):
		case <-ctx.Done():
		}
	}
	start := time.Now()
	measuring.Store(true)
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-allDone(&wg):
		}
		t.Stop()
		cancel()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := Result{Elapsed: elapsed}
	var lat []time.Duration
	for _, w := range ws {
		res.Requests += w.ok
		res.Non200 += w.non200
		res.Errors += w.errs
		res.Conns += w.conns
		lat = append(lat, w.lat...)
	}
	slices.Sort(lat)
	res.P50 = Percentile(lat, 50)
	res.P99 = Percentile(lat, 99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	return res, nil
}

func allDone(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}

// Percentile returns the p-th percentile (nearest rank) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

type worker struct {
	cfg        *Config
	measuring  *atomic.Bool
	budget     *atomic.Int64
	maxSamples int

	conn net.Conn
	br   *bufio.Reader

	ok, non200, errs, conns int
	lat                     []time.Duration
}

func (w *worker) loop(ctx context.Context) {
	defer w.closeConn()
	var d net.Dialer
	for ctx.Err() == nil {
		measuring := w.measuring.Load()
		if measuring && w.cfg.MaxRequests > 0 && w.budget.Add(-1) < 0 {
			return
		}
		t0 := time.Now()
		status, err := w.roundTrip(ctx, &d, measuring)
		elapsed := time.Since(t0)
		if !measuring {
			continue
		}
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return // cut off by the end of the run
			}
			w.errs++
		case status == 200:
			w.ok++
			if len(w.lat) < w.maxSamples {
				w.lat = append(w.lat, elapsed)
			}
		default:
			w.non200++
		}
	}
}

// roundTrip sends the request, on a new connection if needed, and reads the
// response. It returns the status code.
func (w *worker) roundTrip(ctx context.Context, d *net.Dialer, measuring bool) (int, error) {
	if w.conn == nil {
		c, err := d.DialContext(ctx, "tcp", w.cfg.Addr)
		if err != nil {
			return 0, err
		}
		if measuring {
			w.conns++
		}
		// Bounds a read the server never answers; the run is over long before.
		c.SetDeadline(time.Now().Add(w.cfg.Warmup + w.cfg.Duration + 10*time.Second))
		w.conn = c
		if w.br == nil {
			w.br = bufio.NewReaderSize(c, 4096)
		} else {
			w.br.Reset(c)
		}
	}
	if _, err := w.conn.Write(w.cfg.Request); err != nil {
		w.closeConn()
		return 0, err
	}
	status, keep, err := readResponse(w.br)
	if err != nil || !keep || !w.cfg.KeepAlive {
		w.closeConn()
	}
	return status, err
}

func (w *worker) closeConn() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// readResponse reads one response with a Content-Length body and reports
// whether the server lets the connection be reused.
func readResponse(br *bufio.Reader) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, ok := atoi(line[9:12])
	if !ok {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	keep = true
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return 0, false, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, ok = atoi(value); !ok {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	if length < 0 {
		return 0, false, errors.New("response without Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		return 0, false, err
	}
	return status, keep, nil
}

// atoi parses a short unsigned decimal without allocating.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
