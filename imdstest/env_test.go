package imdstest_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/imds/imds/imdstest"
	"github.com/imds/imds/internal/testenv"
)

// TestSDKDefaultChain: with AWS_EC2_METADATA_SERVICE_ENDPOINT set to URL, the
// SDK's default credential chain reaches the server, as it would reach EC2.
// (t.Setenv: not parallel.)
func TestSDKDefaultChain(t *testing.T) {
	testenv.IsolateAWS(t)
	srv := imdstest.New(t, imdstest.WithRole("app", imdstest.Credentials{AccessKeyID: "AKIADEFAULTCHAIN", SecretAccessKey: "s"}))
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL())
	t.Setenv("AWS_REGION", "us-east-1")
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "AKIADEFAULTCHAIN" || creds.Source != "EC2RoleProvider" {
		t.Errorf("default chain: got %s from %s, want AKIADEFAULTCHAIN from EC2RoleProvider", creds.AccessKeyID, creds.Source)
	}
	if len(srv.Requests()) == 0 {
		t.Error("no request recorded")
	}
}
