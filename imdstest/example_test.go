package imdstest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imds/imds/imdstest"
)

// In a test, pass its *testing.T: imdstest.New(t). An Example function has
// none, so these examples run their body through runTest.
func ExampleNew() {
	runTest(func(t testing.TB) {
		srv := imdstest.New(t)
		client := imds.New(imds.Options{Endpoint: srv.URL()})

		out, err := client.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: "instance-id"})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := io.ReadAll(out.Content)
		fmt.Println(string(id))

		creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(creds.AccessKeyID, creds.Source)
	})
	// Output:
	// i-0123456789abcdef0
	// AKIAIOSFODNN7EXAMPLE EC2RoleProvider
}

func ExampleWithConfig() {
	runTest(func(t testing.TB) {
		srv := imdstest.New(t, imdstest.WithConfig(`
instances:
  - instance-id: i-0a1b2c3d4e5f60718
    availability-zone: eu-west-1b
    iam-role: app
roles:
  app:
    static: {access-key-id: AKIAEXAMPLEAPP, secret-access-key: secret}
`))
		client := imds.New(imds.Options{Endpoint: srv.URL()})
		region, err := client.GetRegion(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(srv.ID(), region.Region)
	})
	// Output: i-0a1b2c3d4e5f60718 eu-west-1
}

func ExampleInstance_SetMetadataOptions() {
	runTest(func(t testing.TB) {
		srv := imdstest.New(t)
		srv.SetMetadataOptions(imdstest.MetadataOptions{HTTPTokens: "required"})

		// IMDSv1 (no token) is refused; the SDK, which asks for a token
		// first, is served.
		res, err := http.Get(srv.URL() + "/latest/meta-data/instance-id")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		fmt.Println("IMDSv1:", res.StatusCode)

		client := imds.New(imds.Options{Endpoint: srv.URL()})
		if _, err := client.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: "instance-id"}); err != nil {
			t.Fatal(err)
		}
		for _, r := range srv.Requests() {
			fmt.Println(r.Method, r.Path, "token:", r.Token, r.Status)
		}
	})
	// Output:
	// IMDSv1: 401
	// GET /latest/meta-data/instance-id token: false 401
	// PUT /latest/api/token token: false 200
	// GET /latest/meta-data/instance-id token: true 200
}

func ExampleInstance_SetSpotInterruption() {
	runTest(func(t testing.TB) {
		srv := imdstest.New(t)
		srv.SetSpotInterruption(imdstest.SpotTerminate, time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC))

		client := imds.New(imds.Options{Endpoint: srv.URL()})
		out, err := client.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: "spot/instance-action"})
		if err != nil {
			t.Fatal(err)
		}
		notice, _ := io.ReadAll(out.Content)
		fmt.Println(string(notice))
	})
	// Output: {"action": "terminate", "time": "2030-03-04T05:06:07Z"}
}

// runTest runs body with a stand-in for *testing.T: an Example function has
// no T. Failing stops the example and prints why; cleanups run at the end.
func runTest(body func(t testing.TB)) {
	ctx, cancel := context.WithCancel(context.Background())
	t := &exampleT{ctx: ctx}
	defer func() {
		cancel()
		for i := len(t.cleanups) - 1; i >= 0; i-- {
			t.cleanups[i]()
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(t)
	}()
	<-done
}

type exampleT struct {
	testing.TB // methods not defined here are not used by the examples
	ctx        context.Context
	cleanups   []func()
}

func (t *exampleT) Helper()                      {}
func (t *exampleT) Context() context.Context     { return t.ctx }
func (t *exampleT) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(f string, args ...any) { fmt.Printf("error: "+f+"\n", args...) }
func (t *exampleT) Fatal(args ...any) {
	fmt.Println(append([]any{"fatal:"}, args...)...)
	runtime.Goexit()
}
func (t *exampleT) Fatalf(f string, args ...any) {
	fmt.Printf("fatal: "+f+"\n", args...)
	runtime.Goexit()
}

func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "imdstest-example-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
