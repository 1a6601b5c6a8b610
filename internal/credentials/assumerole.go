package credentials

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/imds/imds/internal/config"
)

// assumeRoleSource mints credentials with STS AssumeRole.
type assumeRoleSource struct {
	client      *sts.Client
	roleARN     string
	externalID  string
	seconds     int32
	sessionName string // template, see params.expand
	accountID   string
}

// newAssumeRole builds the STS client. The server's own credentials come from
// the SDK's default chain, or from a named profile, but never from IMDS: on a
// host that runs imds the SDK would ask the server itself, or a metadata
// service that does not belong to it. The one exception is upstream: imds
// guard's explicit reading of the host's role from the IMDS it guards.
func newAssumeRole(a *config.AssumeRoleSource, upstream aws.CredentialsProvider) (*assumeRoleSource, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled),
		// Retries are this package's business: one quick retry here, then
		// the refresh schedule's backoff.
		awsconfig.WithRetryMaxAttempts(2),
	}
	if a.SourceProfile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(a.SourceProfile))
	}
	if a.SourceCredentials == config.SourceUpstream {
		if upstream == nil {
			return nil, fmt.Errorf("source-credentials %s: only imds guard has an upstream IMDS", a.SourceCredentials)
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(upstream))
	}
	if a.Region != "" {
		opts = append(opts, awsconfig.WithRegion(a.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("load the server's AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // STS is global there
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		if a.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(a.STSEndpoint)
		}
	})
	return &assumeRoleSource{
		client:      client,
		roleARN:     a.RoleARN,
		externalID:  a.ExternalID,
		seconds:     int32(a.SessionDuration().Seconds()),
		sessionName: a.SessionNameTemplate(),
		accountID:   a.AccountID(),
	}, nil
}

func (s *assumeRoleSource) fetch(ctx context.Context, p params) (*creds, error) {
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(s.roleARN),
		RoleSessionName: aws.String(p.expand(s.sessionName)),
		DurationSeconds: aws.Int32(s.seconds),
	}
	if s.externalID != "" {
		in.ExternalId = aws.String(s.externalID)
	}
	out, err := s.client.AssumeRole(ctx, in)
	if err != nil {
		return nil, stsError(err)
	}
	c := out.Credentials
	if c == nil {
		return nil, &fetchError{kind: kindInvalid, detail: "sts AssumeRole: no credentials in the answer"}
	}
	return &creds{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expires:         aws.ToTime(c.Expiration),
		AccountID:       s.accountID,
	}, nil
}

// stsError keeps what is safe to log of an AssumeRole failure: STS's error
// code and message (they name the caller and the role, never a secret), or
// the transport error.
func stsError(err error) *fetchError {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		kind := kindUnavailable
		if ae.ErrorCode() == "AccessDenied" {
			kind = kindDenied
		}
		return &fetchError{kind: kind, detail: fmt.Sprintf("sts AssumeRole: %s: %s", ae.ErrorCode(), ae.ErrorMessage())}
	}
	return &fetchError{kind: kindUnavailable, detail: "sts AssumeRole: " + err.Error()}
}
