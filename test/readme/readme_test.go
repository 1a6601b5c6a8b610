// Package readme tests the examples of README.md and docs/: every YAML
// configuration loads, and the quick start's commands work against the
// built binary.
package readme

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/events/scenario"
	"github.com/imds/imds/internal/testenv"
)

// block is one fenced code block of a Markdown file.
type block struct {
	file, lang, body string
	line             int
	after            string // the paragraph line just before the fence
}

func blocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out  []block
		cur  *block
		prev string
		n    int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{file: path, lang: strings.TrimPrefix(line, "```"), line: n, after: prev}
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		default:
			if strings.TrimSpace(line) != "" {
				prev = line
			}
		}
	}
	return out
}

func docs(t *testing.T) []string {
	files, _ := filepath.Glob("../../docs/*.md")
	return append([]string{"../../README.md"}, files...)
}

// TestConfigExamplesLoad parses every YAML block that is a configuration
// file (it has instances: or guard:) with the real loader.
func TestConfigExamplesLoad(t *testing.T) {
	seen := 0
	for _, path := range docs(t) {
		for _, b := range blocks(t, path) {
			if b.lang != "yaml" || !regexp.MustCompile(`(?m)^(instances|guard):`).MatchString(b.body) {
				continue
			}
			seen++
			if _, err := config.Parse([]byte(b.body)); err != nil {
				t.Errorf("%s:%d: example does not load:\n%v", b.file, b.line, err)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no configuration example found in README.md")
	}
}

// TestScenarioExamplesParse checks every YAML block that is a scenario (it
// has steps:) with the real parser; test/nth plays them.
func TestScenarioExamplesParse(t *testing.T) {
	seen := 0
	for _, path := range docs(t) {
		for _, b := range blocks(t, path) {
			if b.lang != "yaml" || !regexp.MustCompile(`(?m)^steps:`).MatchString(b.body) {
				continue
			}
			seen++
			if _, err := scenario.Parse([]byte(b.body)); err != nil {
				t.Errorf("%s:%d: scenario example does not parse:\n%v", b.file, b.line, err)
			}
		}
	}
	if seen < 3 {
		t.Fatalf("%d scenario examples found in docs/, want at least 3", seen)
	}
}

// TestQuickStart runs the README's quick start: the server, then the shell
// block that points an SDK and curl at it.
// readmeBlock is the first sh block of the README that contains s.
func readmeBlock(t *testing.T, s string) string {
	t.Helper()
	for _, b := range blocks(t, "../../README.md") {
		if b.lang == "sh" && strings.Contains(b.body, s) {
			return b.body
		}
	}
	t.Fatalf("README has no sh block with %q", s)
	return ""
}

func TestQuickStart(t *testing.T) {
	testenv.Command(t, "aws")
	script := readmeBlock(t, "AWS_EC2_METADATA_SERVICE_ENDPOINT")
	dir := t.TempDir()
	bin, err := testenv.BuildImds(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "", "--data-dir", filepath.Join(dir, "data"))
	stderr, _ := srv.StderrPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	addr := ""
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if l, ok := testenv.ParseListening(sc.Text()); ok && !l.Admin {
			addr = l.Addr
			break
		}
	}
	if addr == "" {
		t.Fatal("server did not report its address")
	}
	go func() { // keep the pipe drained
		for sc.Scan() {
		}
	}()
	script = strings.ReplaceAll(script, "127.0.0.1:1338", addr)
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quick start failed: %v\n%s", err, out)
	}
	for _, want := range []string{"iam-role", "i-0123456789abcdef0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quick start output lacks %q:\n%s", want, out)
		}
	}
}

// TestMigrationExample runs the README's migration block against the built
// binary: the IMDSv1 request it makes shows up, and the gate fails on it.
func TestMigrationExample(t *testing.T) {
	testenv.Command(t, "curl")
	script := readmeBlock(t, "imds migration check")
	dir := t.TempDir()
	bin, err := testenv.BuildImds(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	var addr, admin string
	p, err := testenv.Start(exec.Command(bin, testenv.ServeArgs(data)...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for (addr == "" || admin == "") && time.Now().Before(deadline) {
		for _, line := range strings.Split(p.Log(), "\n") {
			if l, ok := testenv.ParseListening(line); ok && l.Addr != "" {
				if l.Admin {
					admin = l.Addr
				} else {
					addr = l.Addr
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr == "" || admin == "" {
		t.Fatalf("server did not report its addresses:\n%s", p.Log())
	}
	script = strings.ReplaceAll(script, "127.0.0.1:1338", addr)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = []string{"PATH=" + filepath.Dir(bin) + ":" + os.Getenv("PATH"), "HOME=" + dir,
		"IMDS_ADMIN_URL=http://" + admin}
	cmd.Dir = dir
	// The admin commands find the operator key in the server's data dir.
	script = strings.ReplaceAll(script, "imds migration", "imds migration --data-dir "+data)
	cmd.Args[len(cmd.Args)-1] = script
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README migration block failed: %v\n%s", err, out)
	}
	for _, want := range []string{"not ready", "curl", "legacy code", "something still uses IMDSv1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README migration block output lacks %q:\n%s", want, out)
		}
	}
}

// TestImdstestExample runs the README's Go example as the test of a module
// of its own, as a user would.
func TestImdstestExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module")
	}
	var src string
	for _, b := range blocks(t, "../../README.md") {
		if b.lang == "go" && strings.Contains(b.body, "imdstest.New(t)") {
			src = b.body
			break
		}
	}
	if src == "" {
		t.Fatal("README has no Go example calling imdstest.New(t)")
	}
	out, err := testenv.GoTestExternal(t, map[string]string{"app_test.go": src}, "test", "-count=1", "-v", "./...")
	if err != nil || !strings.Contains(out, "--- PASS: TestWithMetadata") {
		t.Fatalf("README example: %v\n%s", err, out)
	}
}

// TestPackagedUnitDocumented: docs/deploy.md shows the unit the package
// installs, verbatim.
func TestPackagedUnitDocumented(t *testing.T) {
	unit, err := os.ReadFile("../../packaging/imds.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks(t, "../../docs/deploy.md") {
		if b.lang == "ini" && strings.Contains(b.body, "ExecStart=/usr/bin/imds serve") {
			if b.body != string(unit) {
				t.Errorf("docs/deploy.md:%d differs from packaging/imds.service", b.line)
			}
			return
		}
	}
	t.Error("docs/deploy.md does not show packaging/imds.service")
}
