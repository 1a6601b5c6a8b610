package main

import (
	"io"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"bench"},
		{"run", "-runs", "0"},
		{"run", "-modes", "pipelined"},
		{"run", "-scenarios", "v3-get"},
		{"run", "extra"},
		{"load"},
		{"serve", "-bogus"},
	} {
		var stderr strings.Builder
		if got := run(t.Context(), args, strings.NewReader(""), io.Discard, &stderr); got != exitUsage {
			t.Errorf("imdsbench %q: exit %d, want %d (stderr %q)", args, got, exitUsage, stderr.String())
		}
	}
}
