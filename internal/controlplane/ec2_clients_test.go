package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/testenv"
)

// The control plane driven by real EC2 clients, over HTTP, signing with the
// real clock.

func newEC2Server(t *testing.T) (*ec2Fixture, *httptest.Server) {
	t.Helper()
	f := newEC2Fixture(t, time.Now)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	return f, srv
}

// sdkClient uses a connection per request: with reused connections a known
// race in the SDK's transport (aws/aws-sdk-go-v2#2737) can close a
// connection while a response is read, which under load outlasted the SDK's
// retries. EC2's client errors are not retried either way.
func sdkClient(srv *httptest.Server, secret string) *ec2.Client {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return ec2.New(ec2.Options{
		Region:       testRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(testKeyID, secret, ""),
		BaseEndpoint: aws.String(srv.URL),
		HTTPClient:   &http.Client{Transport: tr},
	})
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestEC2GoSDK(t *testing.T) {
	_, srv := newEC2Server(t)
	c := sdkClient(srv, testSecret)
	ctx := t.Context()

	mod, err := c.ModifyInstanceMetadataOptions(ctx, &ec2.ModifyInstanceMetadataOptionsInput{
		InstanceId:              aws.String("i-0fedcba9876543210"),
		HttpTokens:              types.HttpTokensStateRequired,
		HttpPutResponseHopLimit: aws.Int32(2),
		InstanceMetadataTags:    types.InstanceMetadataTagsStateEnabled,
	})
	if err != nil {
		t.Fatalf("ModifyInstanceMetadataOptions: %v", err)
	}
	wantOpts := &types.InstanceMetadataOptionsResponse{
		State: types.InstanceMetadataOptionsStatePending, HttpTokens: types.HttpTokensStateRequired,
		HttpPutResponseHopLimit: aws.Int32(2), HttpEndpoint: types.InstanceMetadataEndpointStateEnabled,
		HttpProtocolIpv6: types.InstanceMetadataProtocolStateDisabled, InstanceMetadataTags: types.InstanceMetadataTagsStateEnabled,
	}
	if aws.ToString(mod.InstanceId) != "i-0fedcba9876543210" {
		t.Errorf("InstanceId %q", aws.ToString(mod.InstanceId))
	}
	if diff := cmp.Diff(wantOpts, mod.InstanceMetadataOptions, cmpSDK); diff != "" {
		t.Errorf("ModifyInstanceMetadataOptions options (-want +got):\n%s", diff)
	}

	desc, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("metadata-options.http-tokens"), Values: []string{"required"}},
		{Name: aws.String("tag:env"), Values: []string{"d*"}},
	}})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	if len(desc.Reservations) != 1 || len(desc.Reservations[0].Instances) != 1 {
		t.Fatalf("DescribeInstances: %d reservations, want 1 with 1 instance", len(desc.Reservations))
	}
	in := desc.Reservations[0].Instances[0]
	wantOpts.State = types.InstanceMetadataOptionsStateApplied
	if diff := cmp.Diff(wantOpts, in.MetadataOptions, cmpSDK); diff != "" {
		t.Errorf("DescribeInstances metadata options (-want +got):\n%s", diff)
	}
	if aws.ToString(in.InstanceId) != "i-0fedcba9876543210" || in.State.Name != types.InstanceStateNameRunning ||
		aws.ToInt32(in.State.Code) != 16 || in.InstanceLifecycle != types.InstanceLifecycleTypeSpot ||
		aws.ToString(in.Placement.AvailabilityZone) != "us-east-1b" || in.Architecture != types.ArchitectureValuesArm64 ||
		aws.ToString(desc.Reservations[0].OwnerId) != "111122223333" || in.LaunchTime == nil ||
		!in.LaunchTime.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("DescribeInstances instance: %+v", in)
	}

	// Paging through every instance, five at a time.
	var ids []string
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("DescribeInstances page: %v", err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				ids = append(ids, aws.ToString(in.InstanceId))
			}
		}
	}
	if want := []string{"i-00000001", "i-0123456789abcdef0", "i-0fedcba9876543210"}; !cmp.Equal(ids, want) {
		t.Errorf("paged ids %v, want %v", ids, want)
	}

	if _, err := c.ModifyInstanceMetadataDefaults(ctx, &ec2.ModifyInstanceMetadataDefaultsInput{
		HttpTokens: types.MetadataDefaultHttpTokensStateRequired, HttpPutResponseHopLimit: aws.Int32(3),
	}); err != nil {
		t.Fatalf("ModifyInstanceMetadataDefaults: %v", err)
	}
	def, err := c.GetInstanceMetadataDefaults(ctx, &ec2.GetInstanceMetadataDefaultsInput{})
	if err != nil {
		t.Fatalf("GetInstanceMetadataDefaults: %v", err)
	}
	wantDef := &types.InstanceMetadataDefaultsResponse{HttpTokens: types.HttpTokensStateRequired,
		HttpPutResponseHopLimit: aws.Int32(3), ManagedBy: types.ManagedByAccount}
	if diff := cmp.Diff(wantDef, def.AccountLevel, cmpSDK); diff != "" {
		t.Errorf("GetInstanceMetadataDefaults (-want +got):\n%s", diff)
	}

	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"i-00000001"},
		Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("platform")}, {Key: aws.String("tier"), Value: aws.String("1")}}}); err != nil {
		t.Fatalf("CreateTags: %v", err)
	}
	if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{"i-00000001"},
		Tags: []types.Tag{{Key: aws.String("tier")}}}); err != nil {
		t.Fatalf("DeleteTags: %v", err)
	}
	desc, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-00000001"}})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	if tags := desc.Reservations[0].Instances[0].Tags; len(tags) != 1 || aws.ToString(tags[0].Key) != "team" || aws.ToString(tags[0].Value) != "platform" {
		t.Errorf("tags after CreateTags and DeleteTags: %+v", tags)
	}

	reg, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("sdk-image"), ImdsSupport: types.ImdsSupportValuesV20})
	if err != nil {
		t.Fatalf("RegisterImage: %v", err)
	}
	if aws.ToString(reg.ImageId) != ImageIDForName("sdk-image") {
		t.Errorf("RegisterImage id %s, want %s", aws.ToString(reg.ImageId), ImageIDForName("sdk-image"))
	}
	if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String("ami-0123456789abcdef0"),
		ImdsSupport: &types.AttributeValue{Value: aws.String("v2.0")}}); err != nil {
		t.Fatalf("ModifyImageAttribute: %v", err)
	}
	for _, id := range []string{aws.ToString(reg.ImageId), "ami-0123456789abcdef0"} {
		attr, err := c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(id), Attribute: types.ImageAttributeNameImdsSupport})
		if err != nil {
			t.Fatalf("DescribeImageAttribute %s: %v", id, err)
		}
		if aws.ToString(attr.ImageId) != id || attr.ImdsSupport == nil || aws.ToString(attr.ImdsSupport.Value) != "v2.0" {
			t.Errorf("DescribeImageAttribute %s: %+v", id, attr)
		}
	}

	// Errors arrive as the SDK's API errors with EC2's codes.
	_, err = c.ModifyInstanceMetadataOptions(ctx, &ec2.ModifyInstanceMetadataOptionsInput{
		InstanceId: aws.String("i-0aaaaaaaaaaaaaaaa"), HttpTokens: types.HttpTokensStateRequired})
	if got := apiCode(err); got != "InvalidInstanceID.NotFound" || !strings.Contains(err.Error(), "The instance ID 'i-0aaaaaaaaaaaaaaaa' does not exist") {
		t.Errorf("unknown instance: code %q, err %v", got, err)
	}
	_, err = c.ModifyInstanceMetadataOptions(ctx, &ec2.ModifyInstanceMetadataOptionsInput{
		InstanceId: aws.String("i-00000001"), HttpEndpoint: types.InstanceMetadataEndpointStateDisabled, DryRun: aws.Bool(true)})
	if got := apiCode(err); got != "DryRunOperation" {
		t.Errorf("dry run: code %q, err %v", got, err)
	}
	_, err = c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String("ami-0aaaaaaaaaaaaaaaa"), Attribute: types.ImageAttributeNameImdsSupport})
	if got := apiCode(err); got != "InvalidAMIID.NotFound" {
		t.Errorf("unknown image: code %q, err %v", got, err)
	}
	_, err = sdkClient(srv, "wrong-secret").DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if got := apiCode(err); got != "AuthFailure" {
		t.Errorf("wrong secret: code %q, err %v", got, err)
	}
}

var cmpSDK = cmp.FilterPath(func(p cmp.Path) bool {
	sf, ok := p.Last().(cmp.StructField)
	return ok && sf.Name() == "noSmithyDocumentSerde"
}, cmp.Ignore())

// awsCLI runs the AWS CLI against srv as the test operator and decodes its
// JSON output into out (nil: expect no output). It returns stderr when the
// command fails.
func awsCLI(t *testing.T, srv *httptest.Server, out any, args ...string) (stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "aws", append(args, "--endpoint-url", srv.URL, "--region", testRegion, "--output", "json")...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"LANG=C.UTF-8",
		"AWS_ACCESS_KEY_ID=" + testKeyID,
		"AWS_SECRET_ACCESS_KEY=" + testSecret,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + home + "/config",
		"AWS_SHARED_CREDENTIALS_FILE=" + home + "/credentials",
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		return se.String(), err
	}
	if out == nil {
		if strings.TrimSpace(so.String()) != "" {
			t.Errorf("aws %s: unexpected output %s", strings.Join(args, " "), so.String())
		}
		return se.String(), nil
	}
	if err := json.Unmarshal(so.Bytes(), out); err != nil {
		t.Fatalf("aws %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, so.String())
	}
	return se.String(), nil
}

// needAWSCLI skips without the AWS CLI, except under CI=true, where it fails.
func needAWSCLI(t *testing.T) {
	t.Helper()
	testenv.Command(t, "aws")
}

// TestEC2AWSCLI runs independent chains of AWS CLI commands in parallel:
// each command starts a Python interpreter, which takes seconds.
func TestEC2AWSCLI(t *testing.T) {
	needAWSCLI(t)
	_, srv := newEC2Server(t)
	run := func(t *testing.T, out any, args ...string) {
		t.Helper()
		if stderr, err := awsCLI(t, srv, out, args...); err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
	}
	type options struct {
		State, HttpTokens, HttpEndpoint, HttpProtocolIpv6, InstanceMetadataTags string
		HttpPutResponseHopLimit                                                 int
	}
	type tag struct{ Key, Value string }
	type describeOutput struct {
		Reservations []struct {
			ReservationId, OwnerId string
			Instances              []struct {
				InstanceId, PrivateIpAddress, InstanceType string
				State                                      struct {
					Code int
					Name string
				}
				Tags            []tag
				MetadataOptions options
			}
		}
	}

	t.Run("metadata options", func(t *testing.T) {
		t.Parallel()
		var mod struct {
			InstanceId              string
			InstanceMetadataOptions options
		}
		run(t, &mod, "ec2", "modify-instance-metadata-options", "--instance-id", "i-00000001",
			"--http-tokens", "required", "--http-put-response-hop-limit", "2")
		wantOpts := options{State: "pending", HttpTokens: "required", HttpPutResponseHopLimit: 2,
			HttpEndpoint: "enabled", HttpProtocolIpv6: "disabled", InstanceMetadataTags: "disabled"}
		if mod.InstanceId != "i-00000001" || mod.InstanceMetadataOptions != wantOpts {
			t.Errorf("modify-instance-metadata-options: %+v", mod)
		}
		var desc describeOutput
		run(t, &desc, "ec2", "describe-instances", "--instance-ids", "i-00000001")
		wantOpts.State = "applied"
		if len(desc.Reservations) != 1 || len(desc.Reservations[0].Instances) != 1 ||
			desc.Reservations[0].Instances[0].MetadataOptions != wantOpts {
			t.Errorf("describe-instances after modify: %+v", desc)
		}
	})

	t.Run("describe with filters", func(t *testing.T) {
		t.Parallel()
		var desc describeOutput
		run(t, &desc, "ec2", "describe-instances", "--filters",
			"Name=metadata-options.http-tokens,Values=required", "Name=tag:Name,Values=web")
		if len(desc.Reservations) != 1 || len(desc.Reservations[0].Instances) != 1 {
			t.Fatalf("describe-instances: %+v", desc)
		}
		in := desc.Reservations[0].Instances[0]
		if in.InstanceId != "i-0123456789abcdef0" || in.PrivateIpAddress != "10.0.0.10" || in.State.Name != "running" ||
			in.State.Code != 16 || in.MetadataOptions.State != "applied" || in.MetadataOptions.HttpTokens != "required" ||
			desc.Reservations[0].OwnerId != "111122223333" || !cmp.Equal(in.Tags, []tag{{"Name", "web"}, {"env", "prod"}}) {
			t.Errorf("describe-instances: %+v", in)
		}
	})

	t.Run("account defaults", func(t *testing.T) {
		t.Parallel()
		var ret struct{ Return bool }
		run(t, &ret, "ec2", "modify-instance-metadata-defaults", "--http-tokens", "required", "--http-put-response-hop-limit", "2")
		if !ret.Return {
			t.Errorf("modify-instance-metadata-defaults: Return false")
		}
		var def struct{ AccountLevel map[string]any }
		run(t, &def, "ec2", "get-instance-metadata-defaults")
		if diff := cmp.Diff(map[string]any{"HttpTokens": "required", "HttpPutResponseHopLimit": 2.0, "ManagedBy": "account"}, def.AccountLevel); diff != "" {
			t.Errorf("get-instance-metadata-defaults (-want +got):\n%s", diff)
		}
	})

	t.Run("tags", func(t *testing.T) {
		t.Parallel()
		run(t, nil, "ec2", "create-tags", "--resources", "i-00000001", "i-0fedcba9876543210", "--tags", "Key=team,Value=platform", "Key=tier,Value=1")
		run(t, nil, "ec2", "delete-tags", "--resources", "i-0fedcba9876543210", "--tags", "Key=tier")
		var desc describeOutput
		run(t, &desc, "ec2", "describe-instances", "--filters", "Name=tag:team,Values=platform")
		got := map[string][]tag{}
		for _, r := range desc.Reservations {
			for _, in := range r.Instances {
				got[in.InstanceId] = in.Tags
			}
		}
		want := map[string][]tag{
			"i-00000001":          {{"team", "platform"}, {"tier", "1"}},
			"i-0fedcba9876543210": {{"Name", "batch"}, {"env", "dev"}, {"team", "platform"}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tags after create-tags and delete-tags (-want +got):\n%s", diff)
		}
	})

	t.Run("images", func(t *testing.T) {
		t.Parallel()
		var img struct{ ImageId string }
		run(t, &img, "ec2", "register-image", "--name", "cli-image", "--imds-support", "v2.0")
		if img.ImageId != ImageIDForName("cli-image") {
			t.Errorf("register-image: %+v", img)
		}
		run(t, nil, "ec2", "modify-image-attribute", "--image-id", "ami-0123456789abcdef0", "--imds-support", "Value=v2.0")
		var attr struct {
			ImageId     string
			ImdsSupport struct{ Value string }
		}
		run(t, &attr, "ec2", "describe-image-attribute", "--image-id", "ami-0123456789abcdef0", "--attribute", "imdsSupport")
		if attr.ImageId != "ami-0123456789abcdef0" || attr.ImdsSupport.Value != "v2.0" {
			t.Errorf("describe-image-attribute: %+v", attr)
		}
		stderr, err := awsCLI(t, srv, nil, "ec2", "register-image", "--name", "cli-image")
		if want := "(InvalidAMIName.Duplicate)"; err == nil || !strings.Contains(stderr, want) {
			t.Errorf("second register-image: err %v, stderr %q, want %q", err, stderr, want)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown instance", []string{"ec2", "modify-instance-metadata-options", "--instance-id", "i-0aaaaaaaaaaaaaaaa", "--http-tokens", "required"},
			"(InvalidInstanceID.NotFound) when calling the ModifyInstanceMetadataOptions operation: The instance ID 'i-0aaaaaaaaaaaaaaaa' does not exist"},
		{"dry run", []string{"ec2", "modify-instance-metadata-options", "--instance-id", "i-0fedcba9876543210", "--http-endpoint", "disabled", "--dry-run"},
			"(DryRunOperation) when calling the ModifyInstanceMetadataOptions operation: Request would have succeeded, but DryRun flag is set."},
		{"unknown image", []string{"ec2", "describe-image-attribute", "--image-id", "ami-0aaaaaaaaaaaaaaaa", "--attribute", "imdsSupport"},
			"(InvalidAMIID.NotFound) when calling the DescribeImageAttribute operation: The image id '[ami-0aaaaaaaaaaaaaaaa]' does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stderr, err := awsCLI(t, srv, nil, tc.args...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("aws %s: err %v, stderr %q, want %q", strings.Join(tc.args, " "), err, stderr, tc.want)
			}
		})
	}
}
