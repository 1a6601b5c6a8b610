package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Config is one comparison.
type Config struct {
	// Self is the imdsbench binary, run again for every server and load
	// process.
	Self string
	// ServerCPUs and ClientCPUs are taskset CPU lists for the server and the
	// load processes; empty means no pinning.
	ServerCPUs, ClientCPUs string
	// Nice, when not 0, runs the server and load processes under nice(1)
	// with this adjustment; below 0 (root only) it keeps other work on a
	// shared machine from taking their processors.
	Nice      int
	Runs      int           // measured runs of each pair
	Duration  time.Duration // of one run
	Warmup    time.Duration // one unrecorded run per pair before the first round
	Settle    time.Duration // pause after a run, before reading server counters
	Workers   int
	Modes     []string
	Scenarios []Scenario
	Progress  io.Writer // one line per run; nil for none
	// Quiet, when above 0, holds each pair of runs until the machine's
	// processors were at most this busy, as a fraction of all of them, over
	// one second; after QuietWait it runs anyway and says so.
	Quiet     float64
	QuietWait time.Duration
	// MaxOther, when above 0, runs a pair again when other work took more
	// than this many processors during either of its runs, up to Retries
	// times.
	MaxOther float64
	Retries  int
	// Control runs a second bare server in place of imds: an A/A comparison
	// whose ratios show how much the machine alone moves the figures.
	Control bool
	// Baseline is the server imds is compared with: KindBare (the default),
	// KindIMDSNoRecord (imds without the migration recorder) or
	// KindIMDSNetHTTP (imds without the fast path).
	Baseline string
}

// Measurement is one run against one server.
type Measurement struct {
	Load   LoadReport
	Server Stats // counters spent by the server during the run
	// Machine is the CPU time every processor spent busy during the load,
	// whoever used it: compared with the server's and the load process's,
	// it shows what else was running.
	Machine time.Duration
}

// Other is the CPU time that neither the server nor the load process used
// during the run: other work on the machine.
func (m Measurement) Other() time.Duration {
	return max(0, m.Machine-m.Server.CPU-m.Load.Client.CPU)
}

// Key names one row of the table.
type Key struct {
	Mode, Scenario, Server string
}

// Results hold every run, in round order.
type Results struct {
	Config Config
	Env    Env
	Runs   map[Key][]Measurement
	// Retried counts pairs run again for other work on the machine; Noisy
	// counts pairs kept although it stayed above Config.MaxOther.
	Retried, Noisy int
}

// Env are the facts about the processes that ran.
type Env struct {
	ServerGOMAXPROCS, ClientGOMAXPROCS int
}

// Compare starts the servers, then for each round, mode and scenario runs the
// same load against the bare server and imds back to back, alternating which
// goes first so that drift on the machine hits both alike.
func Compare(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.ServerCPUs != "" || cfg.ClientCPUs != "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			return nil, fmt.Errorf("pinning needs taskset (util-linux), or pass empty CPU lists: %w", err)
		}
	}
	if cfg.Nice != 0 {
		if _, err := exec.LookPath("nice"); err != nil {
			return nil, fmt.Errorf("-nice needs nice (coreutils): %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	servers := map[string]*child{} // "bare", and imds by mode
	start := func(kind string, keepAlive bool) (*child, error) {
		args := []string{"serve", "-kind", kind, "-keep-alive=" + strconv.FormatBool(keepAlive)}
		cmd := pinned(ctx, cfg, cfg.ServerCPUs, args)
		cmd.Stderr = cfg.Progress
		return startChild(cmd)
	}
	defer func() {
		for name, c := range servers {
			if err := c.stop(); err != nil {
				fmt.Fprintf(cfg.Progress, "%s server: %v\n", name, err)
			}
		}
	}()
	bare, err := start(KindBare, false)
	if err != nil {
		return nil, fmt.Errorf("start bare server: %w", err)
	}
	servers["bare"] = bare
	tokens := map[*child]string{bare: "unused-by-the-bare-server"}
	// baselines are the servers in the baseline's place, by mode: the bare
	// server in every mode, or imds without recording in each.
	baselines := map[string]*child{}
	for _, mode := range cfg.Modes {
		baselines[mode] = bare
		if cfg.Baseline == KindBare || cfg.Baseline == "" {
			continue
		}
		c, err := start(cfg.Baseline, mode == ModeKeepAlive)
		if err != nil {
			return nil, fmt.Errorf("start %s (%s): %w", cfg.Baseline, mode, err)
		}
		servers["baseline "+mode] = c
		baselines[mode] = c
		if tokens[c], err = fetchToken(ctx, c.addr); err != nil {
			return nil, err
		}
	}
	for _, mode := range cfg.Modes {
		kind := KindIMDS
		if cfg.Control {
			kind = KindBare
		}
		c, err := start(kind, mode == ModeKeepAlive)
		if err != nil {
			return nil, fmt.Errorf("start %s (%s): %w", kind, mode, err)
		}
		servers[mode] = c
		tokens[c] = "unused-by-the-bare-server"
		if kind == KindIMDS {
			if tokens[c], err = fetchToken(ctx, c.addr); err != nil {
				return nil, err
			}
		}
	}
	st, err := bare.stats()
	if err != nil {
		return nil, err
	}
	res := &Results{Config: cfg, Env: Env{ServerGOMAXPROCS: st.GOMAXPROCS}, Runs: map[Key][]Measurement{}}

	type target struct {
		kind string
		c    *child
	}
	pair := func(mode string) []target {
		return []target{{KindBare, baselines[mode]}, {KindIMDS, servers[mode]}}
	}
	one := func(t target, mode string, sc Scenario, d time.Duration) (Measurement, error) {
		before, err := t.c.stats()
		if err != nil {
			return Measurement{}, err
		}
		busy := machineBusy()
		lr, err := runLoad(ctx, cfg, LoadConfig{
			Addr: t.c.addr, Scenario: sc.Name, Mode: mode, Token: tokens[t.c],
			Workers: cfg.Workers, Duration: d,
		})
		busy = machineBusy() - busy
		if err != nil {
			return Measurement{}, fmt.Errorf("%s %s against %s: %w", mode, sc.Name, t.kind, err)
		}
		// Let connections the server is still closing finish inside this run.
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
			return Measurement{}, ctx.Err()
		}
		after, err := t.c.stats()
		if err != nil {
			return Measurement{}, err
		}
		res.Env.ClientGOMAXPROCS = lr.Client.GOMAXPROCS
		return Measurement{Load: lr, Server: diff(after, before), Machine: busy}, nil
	}

	if cfg.Warmup > 0 {
		for _, mode := range cfg.Modes {
			for _, sc := range cfg.Scenarios {
				for _, t := range pair(mode) {
					if _, err := one(t, mode, sc, cfg.Warmup); err != nil {
						return nil, err
					}
				}
			}
		}
		fmt.Fprintln(cfg.Progress, "warm-up done")
	}
	for round := range cfg.Runs {
		for _, mode := range cfg.Modes {
			for _, sc := range cfg.Scenarios {
				ts := pair(mode)
				if round%2 == 1 {
					ts[0], ts[1] = ts[1], ts[0]
				}
				var ms [2]Measurement
				for attempt := 0; ; attempt++ {
					if err := waitQuiet(ctx, cfg); err != nil {
						return nil, err
					}
					for i, t := range ts {
						m, err := one(t, mode, sc, cfg.Duration)
						if err != nil {
							return nil, err
						}
						ms[i] = m
						r := m.Load.Result
						fmt.Fprintf(cfg.Progress, "round %d/%d %-9s %-9s %-4s %8.0f req/s  p50 %-6s p99 %-6s server %3.0f%%  load %3.0f%%  other %3.0f%%  non-200 %d  errors %d\n",
							round+1, cfg.Runs, mode, sc.Name, t.kind, r.RPS(), micros(r.P50), micros(r.P99),
							percent(m.Server.CPU, r.Elapsed), percent(m.Load.Client.CPU, r.Elapsed), percent(m.Other(), r.Elapsed),
							r.Non200, r.Errors)
					}
					noisy := cfg.MaxOther > 0 && max(otherShare(ms[0]), otherShare(ms[1])) > cfg.MaxOther
					if !noisy {
						break
					}
					if attempt == cfg.Retries {
						res.Noisy++
						fmt.Fprintln(cfg.Progress, "other work still above -max-other; keeping this pair")
						break
					}
					res.Retried++
					fmt.Fprintln(cfg.Progress, "other work above -max-other during the pair; running it again")
				}
				for i, t := range ts {
					k := Key{Mode: mode, Scenario: sc.Name, Server: t.kind}
					res.Runs[k] = append(res.Runs[k], ms[i])
				}
			}
		}
	}
	return res, nil
}

// otherShare is the CPU other work took during m, in processors.
func otherShare(m Measurement) float64 {
	if m.Load.Result.Elapsed <= 0 {
		return 0
	}
	return float64(m.Other()) / float64(m.Load.Result.Elapsed)
}

// waitQuiet returns once the machine has been quiet for a second, as
// cfg.Quiet defines, or after cfg.QuietWait.
func waitQuiet(ctx context.Context, cfg Config) error {
	if cfg.Quiet <= 0 {
		return nil
	}
	deadline := time.Now().Add(cfg.QuietWait)
	for waited := false; ; waited = true {
		before := machineBusy()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		busy := float64(machineBusy()-before) / float64(time.Second) / float64(runtime.NumCPU())
		switch {
		case busy <= cfg.Quiet:
			if waited {
				fmt.Fprintf(cfg.Progress, "machine quiet (%.0f%% busy)\n", 100*busy)
			}
			return nil
		case time.Now().After(deadline):
			fmt.Fprintf(cfg.Progress, "machine still %.0f%% busy after %s; running anyway\n", 100*busy, cfg.QuietWait)
			return nil
		case !waited:
			fmt.Fprintf(cfg.Progress, "waiting for the machine to be quiet (%.0f%% busy)\n", 100*busy)
		}
	}
}

// fetchToken gets a six-hour session token from the imds server at addr.
func fetchToken(ctx context.Context, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token PUT: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("token PUT: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token PUT: %s", resp.Status)
	}
	return string(b), nil
}

// pinned runs cfg.Self with args on cpus, under nice when cfg.Nice is set.
// nice and taskset exec the program, so the Go runtime sizes GOMAXPROCS from
// the affinity mask.
func pinned(ctx context.Context, cfg Config, cpus string, args []string) *exec.Cmd {
	argv := append([]string{cfg.Self}, args...)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	if cfg.Nice != 0 {
		argv = append([]string{"nice", "-n", strconv.Itoa(cfg.Nice)}, argv...)
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

func runLoad(ctx context.Context, cfg Config, lc LoadConfig) (LoadReport, error) {
	args := []string{"load",
		"-addr", lc.Addr, "-scenario", lc.Scenario, "-mode", lc.Mode,
		"-workers", strconv.Itoa(lc.Workers), "-duration", lc.Duration.String(),
	}
	cmd := pinned(ctx, cfg, cfg.ClientCPUs, args)
	// In the environment rather than the arguments, which any user can list.
	cmd.Env = append(os.Environ(), TokenEnv+"="+lc.Token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return LoadReport{}, fmt.Errorf("load process: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var lr LoadReport
	if err := json.Unmarshal(out, &lr); err != nil {
		return LoadReport{}, fmt.Errorf("load process output %q: %w", out, err)
	}
	return lr, nil
}

// child is a running server process.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr string
}

// startChild starts a server process and reads the address it listens on.
func startChild(cmd *exec.Cmd) (*child, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
	if err != nil || !ok {
		c.stop()
		return nil, fmt.Errorf("server process said %q: %v", line, err)
	}
	c.addr = addr
	return c, nil
}

func (c *child) stats() (Stats, error) {
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return Stats{}, fmt.Errorf("server process: %w", err)
	}
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		return Stats{}, fmt.Errorf("server process: %w", err)
	}
	var s Stats
	if err := json.Unmarshal(line, &s); err != nil {
		return Stats{}, fmt.Errorf("server process said %q: %w", line, err)
	}
	return s, nil
}

// stop closes the server's stdin, which shuts it down, and waits for it.
func (c *child) stop() error {
	c.in.Close()
	return c.cmd.Wait()
}
