//go:build !linux

package harness

import "time"

// machineBusy is not measured on this platform.
func machineBusy() time.Duration { return 0 }
