package imdstest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imds/imds/internal/testenv"
)

// consumerTest is the test of a module outside this repository that uses
// imdstest the way a user's module would.
const consumerTest = `package consumer

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imds/imds/imdstest"
)

func TestWithImds(t *testing.T) {
	srv := imdstest.New(t)
	client := imds.New(imds.Options{Endpoint: srv.URL()})
	get := func(path string) string {
		t.Helper()
		out, err := client.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: path})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(out.Content)
		return string(b)
	}
	if got := get("instance-id"); got != "i-0123456789abcdef0" {
		t.Errorf("instance-id: got %q", got)
	}
	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(t.Context())
	if err != nil || creds.AccessKeyID != "AKIAIOSFODNN7EXAMPLE" {
		t.Errorf("ec2rolecreds: got %q, %v", creds.AccessKeyID, err)
	}

	srv.SetMetadataOptions(imdstest.MetadataOptions{HTTPTokens: "required"})
	res, err := http.Get(srv.URL() + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("IMDSv1 after tokens required: got %d, want 401", res.StatusCode)
	}

	srv.SetSpotInterruption(imdstest.SpotTerminate, time.Date(2026, 7, 8, 9, 10, 11, 0, time.UTC))
	if got, want := get("spot/instance-action"), ` + "`" + `{"action": "terminate", "time": "2026-07-08T09:10:11Z"}` + "`" + `; got != want {
		t.Errorf("spot notice: got %s, want %s", got, want)
	}
}
`

// TestExternalModule: a module outside this repository imports imdstest and
// passes a test with the Go SDK. Internal packages stay out of its reach.
func TestExternalModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module")
	}
	goBin := testenv.Command(t, "go")
	root, err := testenv.ModuleRoot()
	testenv.Need(t, "module root", err)
	dir := t.TempDir()
	gomod := "module example.com/consumer\n\ngo 1.26\n\nrequire github.com/imds/imds v0.0.0\n\nreplace github.com/imds/imds => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	internalUse := "package consumer\n\nimport _ \"github.com/imds/imds/internal/server\"\n"
	for name, data := range map[string]string{
		"go.mod":           gomod,
		"go.sum":           string(sum),
		"consumer_test.go": consumerTest,
		"internal/x/x.go":  internalUse, // moved aside below
		"consumer.go":      "// Package consumer is a user's module.\npackage consumer\n",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The internal packages are out of reach of another module.
	if out, err := run("build", "./internal/x"); err == nil || !strings.Contains(out, "use of internal package") {
		t.Errorf("importing an internal package from another module: got %v\n%s\nwant a build error", err, out)
	}
	os.RemoveAll(filepath.Join(dir, "internal"))
	out, err := run("test", "-count=1", "-v", "./...")
	if err != nil || !strings.Contains(out, "--- PASS: TestWithImds") {
		t.Fatalf("go test in the external module: %v\n%s", err, out)
	}
}
