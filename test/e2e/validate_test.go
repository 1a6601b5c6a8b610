package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runValidate runs `imds validate --config FILE` and returns its combined
// output and exit code.
func runValidate(t *testing.T, cfg string) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imds.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), imdsBin, "validate", "--config", path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee) && ee.Exited():
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("imds validate: %v\n%s", err, out)
		return "", 0
	}
}

func TestValidateGood(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]string{
		"web":           webConfigYAML,
		"two instances": twoInstanceConfig,
	} {
		t.Run(name, func(t *testing.T) {
			out, code := runValidate(t, cfg)
			if code != 0 {
				t.Errorf("imds validate exit code %d, want 0; output:\n%s", code, out)
			}
		})
	}
}

func TestValidateBad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  string
		// The message must name the line of the n-th (1-based) line
		// containing at, and match every regexp in want (one line of
		// output naming the key and its value).
		at   string
		n    int
		want []string
	}{
		{
			name: "hop limit 0",
			cfg:  replaceOnce(t, webConfigYAML, "http-put-response-hop-limit: 2", "http-put-response-hop-limit: 0"),
			at:   "http-put-response-hop-limit: 0", n: 1,
			want: []string{`http-put-response-hop-limit.*\b0\b`},
		},
		{
			name: "hop limit 65",
			cfg:  replaceOnce(t, webConfigYAML, "http-put-response-hop-limit: 2", "http-put-response-hop-limit: 65"),
			at:   "http-put-response-hop-limit: 65", n: 1,
			want: []string{`http-put-response-hop-limit.*\b65\b`},
		},
		{
			name: "unknown key",
			cfg:  replaceOnce(t, webConfigYAML, "    instance-type: t3.micro\n", "    instance-type: t3.micro\n    instance-colour: blue\n"),
			at:   "instance-colour: blue", n: 1,
			want: []string{`instance-colour`},
		},
		{
			name: "unknown metadata option",
			cfg:  replaceOnce(t, webConfigYAML, "      http-tokens: required\n", "      http-tokens: required\n      http-token: required\n"),
			at:   "http-token: required", n: 1,
			want: []string{`http-token\b`},
		},
		{
			name: "duplicate address",
			cfg:  replaceOnce(t, twoInstanceConfig, "addresses: [127.0.0.2]", "addresses: [127.0.0.1]"),
			at:   "addresses: [127.0.0.1]", n: 2,
			want: []string{`addresses.*127\.0\.0\.1`},
		},
		{
			name: "tag key with a space",
			cfg:  replaceOnce(t, webConfigYAML, "tags: {Name: web-1, Env: prod}", `tags: {Name: web-1, "cost centre": prod}`),
			at:   "cost centre", n: 1,
			want: []string{`tags.*cost centre`},
		},
		{
			name: "tag key with a slash",
			cfg:  replaceOnce(t, webConfigYAML, "tags: {Name: web-1, Env: prod}", "tags: {Name: web-1, team/owner: prod}"),
			at:   "team/owner", n: 1,
			want: []string{`tags.*team/owner`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runValidate(t, tc.cfg)
			if code == 0 {
				t.Fatalf("imds validate exit code 0, want non-zero; output:\n%s", out)
			}
			line := lineOf(t, tc.cfg, tc.at, tc.n)
			if !strings.Contains(out, fmt.Sprintf("line %d", line)) && !strings.Contains(out, fmt.Sprintf(":%d:", line)) {
				t.Errorf("output does not name line %d (%q):\n%s", line, tc.at, out)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output does not match %s:\n%s", w, out)
				}
			}
		})
	}
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("want exactly one %q in the config", old)
	}
	return strings.Replace(s, old, new, 1)
}

// lineOf is the 1-based number of the n-th line of s containing sub.
func lineOf(t *testing.T, s, sub string, n int) int {
	t.Helper()
	for i, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			if n--; n == 0 {
				return i + 1
			}
		}
	}
	t.Fatalf("config has no line %d containing %q", n, sub)
	return 0
}
