//go:build linux

package harness

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// machineBusy is the CPU time all processors have spent outside idle and
// iowait since boot, from /proc/stat, or 0 when it cannot be read. Runs use
// it to show how much of the machine something other than the benchmark took.
func machineBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	const userHZ = 100 // USER_HZ, fixed by the kernel ABI on Linux
	return time.Duration(ticks) * time.Second / userHZ
}
