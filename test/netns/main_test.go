package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// imdsBin is the imds binary built from this module by TestMain.
var imdsBin string

func TestMain(m *testing.M) {
	Main(map[string]Func{"ttl-server": ttlServer})
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "imds-netns-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	imdsBin = filepath.Join(dir, "imds")
	if err := build(imdsBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// build builds ./cmd/imds of the module holding this package into bin.
func build(bin string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/imds")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/imds: %w\n%s", err, out)
	}
	return nil
}
