package cli

import (
	"bytes"
	"testing"

	"github.com/imds/imds/internal/version"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errOut bytes.Buffer
		if code := Run(t.Context(), args, &out, &errOut); code != ExitOK {
			t.Fatalf("imds %v: exit %d: %s", args, code, errOut.String())
		}
		if got, want := out.String(), version.Full()+"\n"; got != want {
			t.Errorf("imds %v: got %q, want %q", args, got, want)
		}
	}
}
