package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	withVCS := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, tc := range []struct {
		name, linked string
		bi           *debug.BuildInfo
		want         string
	}{
		{"linked", "v1.2.3-4-gabcdef0", withVCS("0123456789abcdef0123", "false"), "v1.2.3-4-gabcdef0"},
		{"go install at a version", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"vcs", "", withVCS("0123456789abcdef0123", "false"), "devel-0123456789ab"},
		{"vcs modified", "", withVCS("0123456789abcdef0123", "true"), "devel-0123456789ab-dirty"},
		{"nothing recorded", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"no build info", "", nil, "devel"},
	} {
		if got := resolve(tc.linked, tc.bi); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
