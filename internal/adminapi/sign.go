package adminapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SignRequest signs r with SigV4 in the Authorization header, as the control
// plane verifies it: body is r's body (nil for none), service is "ec2" or
// "imds", now the signing time. It sets X-Amz-Date and Authorization.
func SignRequest(r *http.Request, body []byte, accessKeyID, secret, region, service string, now time.Time) error {
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: accessKeyID, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, r, hex.EncodeToString(sum[:]), service, region, now); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	return nil
}
