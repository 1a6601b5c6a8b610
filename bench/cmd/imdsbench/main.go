// Command imdsbench compares the imds data plane with a bare net/http handler
// on loopback: requests per second, p50 and p99 latency, server CPU and
// allocations per request, and the ratio to the baseline.
//
//	go build -o imdsbench ./bench/cmd/imdsbench
//	./imdsbench run    # servers on CPU 0, load on CPU 1
//
// On a machine shared with other work (root for -nice):
//
//	./imdsbench run -nice -15 -quiet 0.15 -max-other 0.3 -retries 3
//
// "run" starts the servers and the load generator as child processes of this
// same binary ("serve" and "load"), pinned with taskset. docs/benchmarks.md
// explains the method and records results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/imds/imds/bench/harness"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: imdsbench run|serve|load [flags]")
		return exitUsage
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(ctx, args[1:], stdin, stdout)
	case "load":
		err = cmdLoad(ctx, args[1:], stdout)
	default:
		fmt.Fprintf(stderr, "imdsbench: unknown command %q; want run, serve or load\n", args[0])
		return exitUsage
	}
	if errors.Is(err, flag.ErrHelp) || errors.As(err, new(usageError)) {
		fmt.Fprintln(stderr, "imdsbench:", err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stderr, "imdsbench:", err)
		return exitFailure
	}
	return exitOK
}

type usageError struct{ error }

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg := harness.Config{}
	fs.StringVar(&cfg.ServerCPUs, "server-cpus", "0", "taskset CPU list for the server processes; empty for no pinning")
	fs.StringVar(&cfg.ClientCPUs, "client-cpus", "1", "taskset CPU list for the load processes; empty for no pinning")
	fs.IntVar(&cfg.Nice, "nice", 0, "run the server and load processes under nice -n N; negative (root only) to keep other work off their CPUs")
	fs.IntVar(&cfg.Runs, "runs", 5, "measured runs of each server, scenario and mode")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of one run")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "one unrecorded run of each pair before the first round; 0 for none")
	fs.DurationVar(&cfg.Settle, "settle", time.Second, "pause after each run before reading the server's counters")
	fs.IntVar(&cfg.Workers, "workers", 32, "concurrent connections of the load generator")
	fs.Float64Var(&cfg.Quiet, "quiet", 0, "before each pair of runs, wait until the machine's CPUs are at most this busy (0.2 = 20% of all) over a second; 0 to not wait")
	fs.DurationVar(&cfg.QuietWait, "quiet-wait", 5*time.Minute, "longest wait for -quiet before running anyway")
	fs.Float64Var(&cfg.MaxOther, "max-other", 0, "run a pair again when other work took more than this many CPUs during it (0.3 = 30% of one); 0 to keep every pair")
	fs.IntVar(&cfg.Retries, "retries", 5, "most times a pair is run again for -max-other")
	fs.BoolVar(&cfg.Control, "control", false, "A/A run: a second bare server in place of imds, to show the noise of the machine")
	fs.StringVar(&cfg.Baseline, "baseline", harness.KindBare, "the server imds is compared with: bare, imds-norecord (imds without the migration recorder) or imds-nethttp (imds without the fast path)")
	modes := fs.String("modes", strings.Join(harness.Modes, ","), "connection modes: close (a connection per request), keepalive")
	scenarios := fs.String("scenarios", "v2-get,token-put,v1-get", "requests: v2-get, token-put, v1-get")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch cfg.Baseline {
	case harness.KindBare, harness.KindIMDSNoRecord, harness.KindIMDSNetHTTP:
	default:
		return usageError{fmt.Errorf("-baseline %q: want bare, imds-norecord or imds-nethttp", cfg.Baseline)}
	}
	if cfg.Runs < 1 || cfg.Workers < 1 || cfg.Duration <= 0 {
		return usageError{errors.New("-runs, -workers and -duration must be positive")}
	}
	for _, m := range strings.Split(*modes, ",") {
		if m != harness.ModeClose && m != harness.ModeKeepAlive {
			return usageError{fmt.Errorf("-modes: unknown mode %q", m)}
		}
		cfg.Modes = append(cfg.Modes, m)
	}
	for _, name := range strings.Split(*scenarios, ",") {
		sc, err := harness.ScenarioByName(name)
		if err != nil {
			return usageError{fmt.Errorf("-scenarios: %w", err)}
		}
		cfg.Scenarios = append(cfg.Scenarios, sc)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Self = self
	cfg.Progress = stderr

	res, err := harness.Compare(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imds %s, %s, %d logical CPUs, GOMAXPROCS server %d / load %d, %d workers, %d runs x %s per row, medians over runs\n\n",
		revision(), runtime.Version(), runtime.NumCPU(), res.Env.ServerGOMAXPROCS, res.Env.ClientGOMAXPROCS, cfg.Workers, cfg.Runs, cfg.Duration)
	harness.WriteTable(stdout, res.Rows())
	if res.Retried > 0 || res.Noisy > 0 {
		fmt.Fprintf(stdout, "\n%d pairs run again for other work on the machine; %d kept above -max-other.\n", res.Retried, res.Noisy)
	}
	return nil
}

// revision is the commit the binary was built from, as go build records it.
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown revision)"
	}
	rev, modified := "(unknown revision)", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified {
		rev += " with uncommitted changes"
	}
	return rev
}

func cmdServe(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	kind := fs.String("kind", harness.KindIMDS, "server: imds, imds-norecord, imds-nethttp or bare")
	keepAlive := fs.Bool("keep-alive", false, "imds: keep connections for GETs")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the server to this file when it stops (go tool pprof -sample_index=alloc_objects)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return err
		}
		defer func() {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return harness.ServeChild(ctx, *kind, *keepAlive, stdin, stdout)
}

func cmdLoad(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var c harness.LoadConfig
	fs.StringVar(&c.Addr, "addr", "", "server host:port")
	fs.StringVar(&c.Scenario, "scenario", "v2-get", "request to send")
	fs.StringVar(&c.Mode, "mode", harness.ModeClose, "close or keepalive")
	fs.IntVar(&c.Workers, "workers", 32, "concurrent connections")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "measured time")
	fs.DurationVar(&c.Warmup, "warmup", 0, "unrecorded load before the measurement")
	if err := parse(fs, args); err != nil {
		return err
	}
	if c.Addr == "" {
		return usageError{errors.New("-addr is required")}
	}
	c.Token = os.Getenv(harness.TokenEnv)
	return harness.LoadChild(ctx, c, stdout)
}
