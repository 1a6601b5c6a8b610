package harness

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/bench/loadgen"
)

// TestServeChild runs both servers in process, as `imdsbench serve` does, and
// checks that every scenario answers 200 in both modes, so that the
// comparison never measures error pages.
func TestServeChild(t *testing.T) {
	for _, kind := range []string{KindBare, KindIMDS, KindIMDSNoRecord} {
		for _, mode := range Modes {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				inR, inW := io.Pipe()
				outR, outW := io.Pipe()
				errc := make(chan error, 1)
				go func() { errc <- ServeChild(t.Context(), kind, mode == ModeKeepAlive, inR, outW) }()
				out := bufio.NewReader(outR)
				line, err := out.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
				if !ok {
					t.Fatalf("first line %q, want addr HOST:PORT", line)
				}
				tok := "unused-by-the-bare-server"
				if kind != KindBare {
					if tok, err = fetchToken(t.Context(), addr); err != nil {
						t.Fatal(err)
					}
				}
				for _, sc := range Scenarios {
					res, err := loadgen.Run(t.Context(), loadgen.Config{
						Addr: addr, Request: sc.Request(mode, tok), KeepAlive: mode == ModeKeepAlive,
						Workers: 2, MaxRequests: 20,
					})
					if err != nil {
						t.Fatal(err)
					}
					if res.Requests != 20 {
						t.Errorf("%s: got %d of 20 with status 200 (%d other, %d errors)", sc.Name, res.Requests, res.Non200, res.Errors)
					}
				}
				io.WriteString(inW, "stats\n")
				line, err = out.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				var st Stats
				if err := json.Unmarshal([]byte(line), &st); err != nil || st.Allocs == 0 {
					t.Errorf("stats line %q: %v", line, err)
				}
				inW.Close()
				if err := <-errc; err != nil {
					t.Errorf("ServeChild: %v", err)
				}
			})
		}
	}
}

func TestRows(t *testing.T) {
	run := func(requests int, cpu time.Duration) Measurement {
		return Measurement{
			Load:   LoadReport{Result: loadgen.Result{Requests: requests, Elapsed: time.Second}},
			Server: Stats{CPU: cpu, Allocs: uint64(10 * requests)},
		}
	}
	r := &Results{
		Config: Config{Modes: []string{ModeClose}, Scenarios: Scenarios[:1]},
		Runs: map[Key][]Measurement{
			{ModeClose, "v2-get", KindBare}: {run(1000, 500*time.Millisecond), run(2000, time.Second), run(1000, time.Second)},
			{ModeClose, "v2-get", KindIMDS}: {run(800, 500*time.Millisecond), run(1000, time.Second), run(900, time.Second)},
		},
	}
	rows := r.Rows()
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	bare, imds := rows[0], rows[1]
	if bare.Server != KindBare || bare.RPS != 1000 || bare.RPSMin != 1000 || bare.RPSMax != 2000 || bare.Ratio != 0 {
		t.Errorf("bare row: got %+v", bare)
	}
	// Ratios are paired by round: 0.8, 0.5, 0.9.
	if imds.Ratio != 0.8 || imds.RatioMin != 0.5 || imds.RatioMax != 0.9 {
		t.Errorf("imds ratio: got %.2f (%.2f–%.2f), want 0.80 (0.50–0.90)", imds.Ratio, imds.RatioMin, imds.RatioMax)
	}
	// CPU per request: 625µs, 1ms, 1.11ms.
	if imds.AllocsPerReq != 10 || imds.CPUPerReq != time.Millisecond {
		t.Errorf("imds per request: got %.1f allocs, %v CPU; want 10, 1ms", imds.AllocsPerReq, imds.CPUPerReq)
	}
	var b strings.Builder
	WriteTable(&b, rows)
	// CPU ratios, bare / imds per request: 0.5/0.625, 0.5/1, 1/1.11.
	if !near(imds.CPURatio, 0.8) || !near(imds.CPURatioMin, 0.5) || !near(imds.CPURatioMax, 0.9) {
		t.Errorf("imds CPU ratio: got %.2f (%.2f–%.2f), want 0.80 (0.50–0.90)", imds.CPURatio, imds.CPURatioMin, imds.CPURatioMax)
	}
	if !strings.Contains(b.String(), "**0.80** (0.50–0.90)") {
		t.Errorf("table lacks the ratio:\n%s", b.String())
	}
}

func near(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
