package imdstest_test

import (
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

	srv.SetSpotInterruption(imdstest.SpotTerminate, time.Date(2030, 7, 8, 9, 10, 11, 0, time.UTC))
	if got, want := get("spot/instance-action"), ` + "`" + `{"action": "terminate", "time": "2030-07-08T09:10:11Z"}` + "`" + `; got != want {
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
	internalUse := "package x\n\nimport _ \"github.com/imds/imds/internal/server\"\n"
	out, err := testenv.GoTestExternal(t, map[string]string{"internal/x/x.go": internalUse}, "build", "./internal/x")
	if err == nil || !strings.Contains(out, "use of internal package") {
		t.Errorf("importing an internal package from another module: got %v\n%s\nwant a build error", err, out)
	}
	out, err = testenv.GoTestExternal(t, map[string]string{"consumer_test.go": consumerTest}, "test", "-count=1", "-v", "./...")
	if err != nil || !strings.Contains(out, "--- PASS: TestWithImds") {
		t.Fatalf("go test in the external module: %v\n%s", err, out)
	}
}
