package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/imds/imds/bench"
	"github.com/imds/imds/internal/server"
)

// Server kinds.
const (
	KindBare = "bare"
	KindIMDS = "imds"
	// KindIMDSNoRecord is imds without the migration recorder: the baseline
	// that shows what recording costs.
	KindIMDSNoRecord = "imds-norecord"
	// KindIMDSNetHTTP is imds without the fast path, serving every request
	// with net/http: the baseline that shows what the fast path gains.
	KindIMDSNetHTTP = "imds-nethttp"
)

// Stats are a process's cumulative counters.
type Stats struct {
	CPU        time.Duration `json:"cpu_ns"` // user + system
	Allocs     uint64        `json:"allocs"` // heap objects allocated
	AllocBytes uint64        `json:"alloc_bytes"`
	GOMAXPROCS int           `json:"gomaxprocs"`
}

func readStats() Stats {
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:objects"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	metrics.Read(s)
	return Stats{
		CPU:        processCPU(),
		Allocs:     s[0].Value.Uint64(),
		AllocBytes: s[1].Value.Uint64(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
}

// ServeChild runs one server of kind on 127.0.0.1:0 until in reaches EOF or
// ctx is done. It first writes "addr HOST:PORT" to out, then answers every
// "stats" line read from in with one line of JSON Stats.
func ServeChild(ctx context.Context, kind string, keepAlive bool, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		addr  net.Addr
		serve func(context.Context) error
	)
	switch kind {
	case KindIMDS, KindIMDSNoRecord, KindIMDSNetHTTP:
		dir, err := os.MkdirTemp("", "imdsbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s, err := server.New(ctx, server.Options{Listen: []string{"127.0.0.1:0"}, DataDir: dir, KeepAlive: keepAlive,
			NoRecording: kind == KindIMDSNoRecord, NoFastPath: kind == KindIMDSNetHTTP})
		if err != nil {
			return err
		}
		if err := s.Listen(ctx); err != nil {
			return err
		}
		addr, serve = s.Addrs()[0], s.Serve
	case KindBare:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr, serve = l.Addr(), func(ctx context.Context) error { return serveBare(ctx, l) }
	default:
		return fmt.Errorf("unknown server kind %q", kind)
	}

	errc := make(chan error, 1)
	go func() { errc <- serve(ctx) }()
	fmt.Fprintf(out, "addr %s\n", addr)

	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case cmds <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	enc := json.NewEncoder(out)
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return <-errc
		case cmd, ok := <-cmds:
			if !ok {
				cancel()
				return <-errc
			}
			if cmd != "stats" {
				cancel()
				<-errc
				return fmt.Errorf("unknown command %q", cmd)
			}
			if err := enc.Encode(readStats()); err != nil {
				cancel()
				<-errc
				return err
			}
		}
	}
}

// serveBare serves the baseline handler with the limits server.Serve sets
// on the data plane, so that the handler is the only difference.
func serveBare(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           bench.Bare,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
