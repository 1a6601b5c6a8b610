package harness

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/imds/imds/bench/loadgen"
)

// TokenEnv is the environment variable that hands the session token to a
// load process.
const TokenEnv = "IMDSBENCH_TOKEN"

// LoadConfig is one load run as the load process receives it.
type LoadConfig struct {
	Addr     string
	Scenario string
	Mode     string
	Token    string
	Workers  int
	Duration time.Duration
	Warmup   time.Duration
}

// LoadReport is what a load process writes: the result and its own CPU use.
type LoadReport struct {
	Result loadgen.Result `json:"result"`
	Client Stats          `json:"client"`
}

// LoadChild runs one load and writes a LoadReport as JSON to out.
func LoadChild(ctx context.Context, c LoadConfig, out io.Writer) error {
	sc, err := ScenarioByName(c.Scenario)
	if err != nil {
		return err
	}
	before := readStats()
	res, err := loadgen.Run(ctx, loadgen.Config{
		Addr:      c.Addr,
		Request:   sc.Request(c.Mode, c.Token),
		KeepAlive: c.Mode == ModeKeepAlive,
		Workers:   c.Workers,
		Duration:  c.Duration,
		Warmup:    c.Warmup,
	})
	if err != nil {
		return err
	}
	after := readStats()
	return json.NewEncoder(out).Encode(LoadReport{Result: res, Client: diff(after, before)})
}

func diff(after, before Stats) Stats {
	return Stats{
		CPU:        after.CPU - before.CPU,
		Allocs:     after.Allocs - before.Allocs,
		AllocBytes: after.AllocBytes - before.AllocBytes,
		GOMAXPROCS: after.GOMAXPROCS,
	}
}
