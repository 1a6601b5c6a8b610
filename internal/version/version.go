// Package version says which build of imds is running.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time by scripts/package:
//
//	-ldflags "-X github.com/imds/imds/internal/version.version=v1.2.3"
var version string

// String is the version: the one set at link time; else the module version
// of `go install …@v1.2.3`; else "devel" and the commit the binary was built
// from, when the build recorded it.
func String() string {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, bi)
}

func resolve(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev[:min(12, len(rev))] + dirty
}

// Full is the version with the platform and the Go release it was built
// with, as `imds version` prints it.
func Full() string {
	return fmt.Sprintf("imds %s %s/%s %s", String(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}
