// Package nth plays the scenarios of docs/scenarios.md against an imds
// server on a driven clock, and checks that an agent polling by the rules of
// aws-node-termination-handler sees each step at the right moment.
package nth

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/events/eventstest"
	"github.com/imds/imds/internal/events/scenario"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/server"
	"github.com/imds/imds/internal/testenv"
)

var t0 = time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)

// fleet: ten Spot instances in a pool, two others; each calls from its own
// loopback address.
func fleetConfig() string {
	var b strings.Builder
	b.WriteString("instances:\n")
	for i := range 10 {
		fmt.Fprintf(&b, "  - instance-id: i-0a00000000000000%d\n    addresses: [127.0.1.%d]\n    instance-life-cycle: spot\n    tags: {pool: spot}\n", i, 10+i)
	}
	for i := 1; i <= 2; i++ {
		fmt.Fprintf(&b, "  - instance-id: i-0b00000000000000%d\n    addresses: [127.0.2.%d]\n", i, i)
	}
	return b.String()
}

func addrOf(id string) net.IP {
	var n int
	if _, err := fmt.Sscanf(id[len(id)-1:], "%d", &n); err != nil {
		panic(id)
	}
	if strings.HasPrefix(id, "i-0a") {
		return net.IPv4(127, 0, 1, byte(10+n))
	}
	return net.IPv4(127, 0, 2, byte(n))
}

type env struct {
	t     *testing.T
	clk   *eventstest.Clock
	srv   *server.Server
	admin *adminclient.Client
	base  string
}

// needLoopbackRange checks that 127.0.1.10 is a local address, as on Linux:
// each instance calls from an address of its own.
func needLoopbackRange(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.1.10:0")
	if err == nil {
		l.Close()
	}
	testenv.Need(t, "127.0.1.10 is not a local address here (loopback aliases)", err)
}

func start(t *testing.T) *env {
	needLoopbackRange(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "imds.yaml")
	if err := os.WriteFile(cfg, []byte(fleetConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	e, _ := launch(t, eventstest.NewClock(t0), server.Options{ConfigPath: cfg, DataDir: filepath.Join(dir, "data")})
	return e
}

// launch starts a server on clk with o (listeners on loopback ports added),
// and returns it with a function that stops it.
func launch(t *testing.T, clk *eventstest.Clock, o server.Options) (*env, func()) {
	o.Listen, o.AdminListen = []string{"127.0.0.1:0"}, "127.0.0.1:0"
	o.Now, o.EventClock = clk.Now, clk
	s, err := server.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	creds, err := adminapi.ReadCredentialsFile(filepath.Join(o.DataDir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := adminclient.New(adminclient.Options{URL: "http://" + s.AdminAddr().String(), Credentials: creds, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clk: clk, srv: s, admin: c, base: "http://" + s.Addrs()[0].String()}, stop
}

// examples are the scenarios of docs/scenarios.md, in order.
func examples(t *testing.T) []*scenario.Scenario {
	f, err := os.Open("../../docs/scenarios.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out  []*scenario.Scenario
		body *strings.Builder
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case body == nil && line == "```yaml":
			body = &strings.Builder{}
		case body != nil && line == "```":
			if regexp.MustCompile(`(?m)^steps:`).MatchString(body.String()) {
				s, err := scenario.Parse([]byte(body.String()))
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
			body = nil
		case body != nil:
			body.WriteString(line + "\n")
		}
	}
	if len(out) != 3 {
		t.Fatalf("docs/scenarios.md has %d scenarios, want 3", len(out))
	}
	return out
}

// lines sends each line written to it on a channel: the scenario's output,
// one line per step done.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		l <- s
	}
	return len(p), nil
}

// play starts a scenario on the driven clock.
func (e *env) play(s *scenario.Scenario) (lines, <-chan error) {
	out, done := make(lines, 16), make(chan error, 1)
	go func() { done <- scenario.Run(e.t.Context(), s, e.admin, e.clk, out) }()
	return out, done
}

// step waits for the scenario's next line.
func (e *env) step(out lines, want string) {
	e.t.Helper()
	select {
	case l := <-out:
		if !strings.Contains(l, want) || strings.Contains(l, "failed") {
			e.t.Fatalf("scenario printed %q, want a line with %q", l, want)
		}
		e.t.Log(l)
	case <-e.t.Context().Done():
		e.t.Fatal("scenario printed nothing")
	}
}

// advance moves the clock to t0+d.
func (e *env) advance(to time.Time) {
	e.clk.Advance(to.Sub(e.clk.Now()))
}

// eventually polls cond until it holds; the bound only stops a hang.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not a correctness wait
	}
}

func (e *env) state(id string) metadata.State {
	in, err := e.srv.Registry().Instance(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return metadata.State(in.State.Name())
}

func TestNodeTerminationHandlerSeesScenarios(t *testing.T) {
	e := start(t)
	ex := examples(t)
	ctx := t.Context()
	agents := map[string]*agent{}
	agentOf := func(id string) *agent {
		if agents[id] == nil {
			agents[id] = newAgent(e.base, addrOf(id))
		}
		return agents[id]
	}
	var pool []string
	for i := range 10 {
		pool = append(pool, fmt.Sprintf("i-0a00000000000000%d", i))
	}
	for _, id := range append(pool, "i-0b000000000000001", "i-0b000000000000002") {
		if err := agentOf(id).poll(ctx); err != nil {
			t.Fatalf("%s before any event: %v", id, err)
		}
		if n := len(agentOf(id).events); n != 0 {
			t.Fatalf("%s sees %d events before any", id, n)
		}
	}

	t.Run("spot reclaim, rebalance first", func(t *testing.T) {
		e.t = t
		begin := e.clk.Now()
		out, done := e.play(ex[0])
		e.step(out, "+0s reclaim: rebalance")
		var chosen, spared []string
		for _, id := range pool {
			in, _ := e.srv.Registry().Instance(ctx, id)
			if in.Spec.Rebalance != "" {
				chosen = append(chosen, id)
			} else {
				spared = append(spared, id)
			}
		}
		if len(chosen) != 3 {
			t.Fatalf("chosen %v, want 3 of 10", chosen)
		}
		for _, id := range chosen {
			a := agentOf(id)
			e.eventually(id+" sees the rebalance recommendation", func() bool {
				return a.poll(ctx) == nil && len(a.seen("REBALANCE_RECOMMENDATION")) == 1
			})
			if got := a.seen("REBALANCE_RECOMMENDATION")[0].Start; !got.Equal(begin) {
				t.Errorf("%s: rebalance noticed at %v, want %v", id, got, begin)
			}
			if n := len(a.seen("SPOT_ITN")); n != 0 {
				t.Errorf("%s sees a Spot notice before its step", id)
			}
		}

		e.advance(begin.Add(30 * time.Second))
		e.step(out, "+30s: spot terminate in 2m")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		notice := begin.Add(30*time.Second + 2*time.Minute)
		for _, id := range chosen {
			a := agentOf(id)
			e.eventually(id+" sees the Spot notice", func() bool { return a.poll(ctx) == nil && len(a.seen("SPOT_ITN")) == 1 })
			if err := a.poll(ctx); err != nil { // seen again: still one event
				t.Fatal(err)
			}
			if s := a.seen("SPOT_ITN"); len(s) != 1 || !s[0].Start.Equal(notice) {
				t.Errorf("%s: Spot events %+v, want one at %v", id, s, notice)
			}
		}
		for _, id := range spared {
			if err := agentOf(id).poll(ctx); err != nil || len(agentOf(id).events) != 0 {
				t.Errorf("%s was not chosen but sees %v (%v)", id, agentOf(id).events, err)
			}
		}
		for _, id := range pool {
			if f, x := agentOf(id).tokenCounts(); f != 1 || x != 0 {
				t.Errorf("%s fetched %d tokens and got %d 401s; want one token reused", id, f, x)
			}
		}

		e.advance(notice.Add(-time.Second))
		for _, id := range chosen {
			if st := e.state(id); st != metadata.Running {
				t.Errorf("%s is %s a second before the Spot time", id, st)
			}
		}
		e.advance(notice)
		for _, id := range chosen {
			e.eventually(id+" shutting down at the Spot time", func() bool { return e.state(id) == metadata.ShuttingDown })
			if err := agentOf(id).poll(ctx); err != nil {
				t.Errorf("%s: metadata not served while shutting down: %v", id, err)
			}
		}
		e.advance(notice.Add(events.TransitionTime))
		for _, id := range chosen {
			e.eventually(id+" terminated", func() bool { return e.state(id) == metadata.Terminated })
			e.eventually(id+" metadata gone", func() bool {
				err := agentOf(id).poll(ctx)
				return err != nil && strings.Contains(err.Error(), "status 403")
			})
		}
		for _, id := range spared {
			if st := e.state(id); st != metadata.Running {
				t.Errorf("%s was not chosen but is %s", id, st)
			}
		}
	})

	t.Run("Auto Scaling scale-in", func(t *testing.T) {
		e.t = t
		const id = "i-0b000000000000001"
		begin := e.clk.Now()
		out, done := e.play(ex[1])
		e.step(out, "+0s scale-in: lifecycle Terminated")
		a := agentOf(id)
		e.eventually("the agent sees the ASG termination", func() bool { return a.poll(ctx) == nil && len(a.seen("ASG_LIFECYCLE")) == 1 })
		e.advance(begin.Add(time.Minute))
		e.step(out, "terminate: "+id+" running -> shutting-down")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		e.advance(begin.Add(time.Minute + events.TransitionTime))
		e.eventually(id+" terminated", func() bool { return e.state(id) == metadata.Terminated })
		e.eventually(id+" metadata gone", func() bool {
			err := a.poll(ctx)
			return err != nil && strings.Contains(err.Error(), "status 403")
		})
	})

	t.Run("rescheduled maintenance", func(t *testing.T) {
		e.t = t
		const id = "i-0b000000000000002"
		begin := e.clk.Now()
		out, done := e.play(ex[2])
		e.step(out, "+0s reboot: maintenance system-reboot in 1h")
		a := agentOf(id)
		e.eventually("the agent sees the maintenance event", func() bool { return a.poll(ctx) == nil && len(a.seen("SCHEDULED_EVENT")) == 1 })
		first := a.seen("SCHEDULED_EVENT")[0]
		if !first.Start.Equal(begin.Add(time.Hour)) || !first.End.Equal(begin.Add(3*time.Hour)) || first.Cancel {
			t.Errorf("scheduled event %+v, want an interruption from %v to %v", first, begin.Add(time.Hour), begin.Add(3*time.Hour))
		}

		e.advance(begin.Add(10 * time.Second))
		e.step(out, "reschedule: "+id)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		moved := begin.Add(10*time.Second + 3*time.Hour)
		e.eventually("the metadata shows the new start", func() bool {
			_, body, err := a.get(ctx, "/latest/meta-data/events/maintenance/scheduled")
			return err == nil && strings.Contains(string(body), `"NotBefore" : "`+moved.Format(maintenanceDate)+`"`)
		})
		if err := a.poll(ctx); err != nil {
			t.Fatal(err)
		}
		if s := a.seen("SCHEDULED_EVENT"); len(s) != 1 {
			t.Errorf("the same EventId was recorded %d times", len(s))
		}

		e.advance(moved.Add(2*time.Hour - time.Second))
		if err := a.poll(ctx); err != nil { // the token expired meanwhile: the agent gets a new one
			t.Fatal(err)
		}
		if f, x := a.tokenCounts(); f != 2 || x != 1 {
			t.Errorf("after five hours: %d tokens fetched, %d 401s; want 2 and 1 (the one-hour token expired)", f, x)
		}
		for _, ev := range a.seen("SCHEDULED_EVENT") {
			if ev.Cancel {
				t.Fatalf("completed before the window ended: %+v", ev)
			}
		}
		e.advance(moved.Add(2 * time.Hour))
		e.eventually("the agent sees the event completed in history", func() bool {
			if a.poll(ctx) != nil {
				return false
			}
			for _, ev := range a.seen("SCHEDULED_EVENT") {
				if ev.Cancel && strings.HasSuffix(ev.EventID, "/completed") {
					return true
				}
			}
			return false
		})
		_, body, _ := a.get(ctx, "/latest/meta-data/events/maintenance/scheduled")
		if strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("scheduled after completion: %s", body)
		}
		_, hist, _ := a.get(ctx, "/latest/meta-data/events/maintenance/history")
		if !strings.Contains(string(hist), `"Description" : "[Completed] scheduled system reboot"`) {
			t.Errorf("history: %s", hist)
		}
	})
}
