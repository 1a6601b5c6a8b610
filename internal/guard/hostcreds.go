package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// hostCredentials reads the host's own role credentials from the upstream
// IMDS, for the assume-role sources whose source-credentials is upstream.
// Wrapped in an aws.CredentialsCache, it is read again before they expire.
type hostCredentials struct{ up *upstream }

const credentialsPath = "/latest/meta-data/iam/security-credentials/"

func (h hostCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	ls, err := h.up.get(ctx, http.MethodGet, credentialsPath, true)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("host role: %w", err)
	}
	role, _, _ := strings.Cut(strings.TrimSpace(string(ls.body)), "\n")
	if ls.code != http.StatusOK || role == "" {
		return aws.Credentials{}, fmt.Errorf("host role: the upstream serves none (status %d)", ls.code)
	}
	a, err := h.up.get(ctx, http.MethodGet, credentialsPath+role, true)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("host role %s: %w", role, err)
	}
	var doc struct {
		Code, AccessKeyId, SecretAccessKey, Token string
		Expiration                                time.Time
	}
	if a.code != http.StatusOK || json.Unmarshal(a.body, &doc) != nil || doc.Code != "Success" || doc.AccessKeyId == "" {
		// Never the body: it may hold a secret.
		return aws.Credentials{}, fmt.Errorf("host role %s: no usable credentials from the upstream (status %d)", role, a.code)
	}
	return aws.Credentials{
		AccessKeyID: doc.AccessKeyId, SecretAccessKey: doc.SecretAccessKey, SessionToken: doc.Token,
		Source: "imds guard upstream", CanExpire: !doc.Expiration.IsZero(), Expires: doc.Expiration,
	}, nil
}

// upstreamProvider is the host's credentials, cached until five minutes
// before they expire.
func upstreamProvider(up *upstream) aws.CredentialsProvider {
	return aws.NewCredentialsCache(hostCredentials{up}, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = 5 * time.Minute
	})
}
