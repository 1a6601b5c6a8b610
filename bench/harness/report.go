package harness

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Row is the summary of one server's runs of one scenario in one mode.
type Row struct {
	Key
	Label               string // server as the table names it
	RPS, RPSMin, RPSMax float64
	P50, P99            time.Duration // medians over the runs
	CPUPerReq           time.Duration // server CPU per request, median
	AllocsPerReq        float64       // server heap objects per request, median
	BytesPerReq         float64       // server heap bytes per request, median
	ServerBusy          float64       // server CPU per request x rate: 1 is one core
	ClientBusy          float64       // load process CPU / elapsed: 1 is one core
	OtherBusy           float64       // CPU time of other work / elapsed
	Ratio, RatioMin     float64       // imds / bare req/s, paired by round; 0 on bare rows
	RatioMax            float64
	// CPURatio is bare / imds server CPU per request, paired by round: the
	// throughput ratio to expect where the server's processor is the limit.
	CPURatio, CPURatioMin, CPURatioMax float64
	Non200, Errors                     int // over all runs
}

// Rows summarises the results in table order: per mode, per scenario, the
// bare server then imds.
func (r *Results) Rows() []Row {
	var rows []Row
	for _, mode := range r.Config.Modes {
		for _, sc := range r.Config.Scenarios {
			bare := r.Runs[Key{mode, sc.Name, KindBare}]
			for _, kind := range []string{KindBare, KindIMDS} {
				ms := r.Runs[Key{mode, sc.Name, kind}]
				if len(ms) == 0 {
					continue
				}
				row := summarise(ms)
				row.Key = Key{mode, sc.Name, kind}
				row.Label = kind
				if kind == KindIMDS && r.Config.Control {
					row.Label = "bare (A/A)"
				}
				if kind == KindBare {
					switch r.Config.Baseline {
					case KindIMDSNoRecord:
						row.Label = "imds, no recording"
					case KindIMDSNetHTTP:
						row.Label = "imds, net/http only"
					}
				}
				if kind == KindIMDS && len(bare) == len(ms) {
					var ratios, cpu []float64
					for i := range ms {
						if b := bare[i].Load.Result.RPS(); b > 0 {
							ratios = append(ratios, ms[i].Load.Result.RPS()/b)
						}
						if b, m := cpuPerReq(bare[i]), cpuPerReq(ms[i]); b > 0 && m > 0 {
							cpu = append(cpu, b/m)
						}
					}
					row.Ratio, row.RatioMin, row.RatioMax = spread(ratios)
					row.CPURatio, row.CPURatioMin, row.CPURatioMax = spread(cpu)
				}
				rows = append(rows, row)
			}
		}
	}
	return rows
}

func cpuPerReq(m Measurement) float64 {
	n := m.Load.Result.Requests + m.Load.Result.Non200
	if n == 0 {
		return 0
	}
	return float64(m.Server.CPU) / float64(n)
}

func summarise(ms []Measurement) Row {
	var rps, p50, p99, cpu, allocs, bytes, srv, cli, mach []float64
	var row Row
	for _, m := range ms {
		res := m.Load.Result
		n := float64(res.Requests + res.Non200)
		rps = append(rps, res.RPS())
		p50 = append(p50, float64(res.P50))
		p99 = append(p99, float64(res.P99))
		if n > 0 {
			cpu = append(cpu, cpuPerReq(m))
			allocs = append(allocs, float64(m.Server.Allocs)/n)
			bytes = append(bytes, float64(m.Server.AllocBytes)/n)
			srv = append(srv, float64(m.Server.CPU)/float64(res.Elapsed))
		}
		if res.Elapsed > 0 {
			cli = append(cli, float64(m.Load.Client.CPU)/float64(res.Elapsed))
			mach = append(mach, float64(m.Other())/float64(res.Elapsed))
		}
		row.Non200 += res.Non200
		row.Errors += res.Errors
	}
	row.RPS, row.RPSMin, row.RPSMax = spread(rps)
	row.P50 = time.Duration(median(p50))
	row.P99 = time.Duration(median(p99))
	row.CPUPerReq = time.Duration(median(cpu))
	row.AllocsPerReq = median(allocs)
	row.BytesPerReq = median(bytes)
	row.ServerBusy = median(srv)
	row.ClientBusy = median(cli)
	row.OtherBusy = median(mach)
	return row
}

func median(xs []float64) float64 {
	m, _, _ := spread(xs)
	return m
}

// spread returns the median, minimum and maximum of xs.
func spread(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

// WriteTable writes the rows as a Markdown table.
func WriteTable(w io.Writer, rows []Row) {
	titles := map[string]string{}
	for _, sc := range Scenarios {
		titles[sc.Name] = sc.Title
	}
	fmt.Fprintln(w, "| mode | request | server | req/s (median) | req/s min–max | p50 | p99 | req/s ratio to bare (min–max) | server CPU/req | CPU ratio (min–max) | server allocs/req | server B/req | server CPU | load CPU | other CPU |")
	fmt.Fprintln(w, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		ratio, cpuRatio := "—", "—"
		if r.Server == KindIMDS {
			ratio = fmt.Sprintf("**%.2f** (%.2f–%.2f)", r.Ratio, r.RatioMin, r.RatioMax)
			cpuRatio = fmt.Sprintf("%.2f (%.2f–%.2f)", r.CPURatio, r.CPURatioMin, r.CPURatioMax)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.0f–%.0f | %s | %s | %s | %s | %s | %.1f | %.0f | %.0f%% | %.0f%% | %.0f%% |\n",
			r.Mode, titles[r.Scenario], r.Label, r.RPS, r.RPSMin, r.RPSMax,
			micros(r.P50), micros(r.P99), ratio, micros(r.CPUPerReq), cpuRatio,
			r.AllocsPerReq, r.BytesPerReq, 100*r.ServerBusy, 100*r.ClientBusy, 100*r.OtherBusy)
	}
	for _, r := range rows {
		if r.Non200 > 0 || r.Errors > 0 {
			fmt.Fprintf(w, "\nWARNING: %s %s %s: %d non-200 responses and %d errors over all runs; its figures are not comparable.\n",
				r.Mode, r.Scenario, r.Server, r.Non200, r.Errors)
		}
	}
}

func percent(part, whole time.Duration) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
