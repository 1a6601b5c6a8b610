package controlplane

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// MaxBodyBytes bounds the body of a control-plane request.
const MaxBodyBytes = 1 << 20

// MaxClockSkew is how far X-Amz-Date may be from the server's clock, as on AWS.
const MaxClockSkew = 15 * time.Minute

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateFmt   = "20060102T150405Z"
	// Services a request may be signed for: the AWS CLI and SDKs sign EC2
	// Query calls for "ec2"; imds' own client signs for "imds".
	serviceEC2  = "ec2"
	serviceIMDS = "imds"
)

// Caller is the verified signer of a request.
type Caller struct {
	AccessKeyID string
	// Region and Service are the credential scope the request was signed for.
	Region, Service string
}

type callerKey struct{}

// CallerFrom returns the verified signer of the request that ctx belongs to.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// OperatorFrom returns the access key id that signed the request ctx belongs
// to, or "" outside an authenticated request.
func OperatorFrom(ctx context.Context) string {
	c, _ := CallerFrom(ctx)
	return c.AccessKeyID
}

// authError is a refused request: code and status as EC2 answers them.
type authError struct {
	status int
	code   string
	msg    string
	// reason is for the log only: what exactly was wrong (never a secret or
	// a signature).
	reason string
}

func (e *authError) Error() string { return e.code + ": " + e.reason }

// EC2 answers an unverifiable signature, an unknown key and a malformed
// Authorization header alike, with 401 AuthFailure.
func authFailure(reason string) *authError {
	return &authError{http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials", reason}
}

// authenticate admits only requests signed with SigV4 (Authorization header)
// by an operator key. It puts the Caller in the request context and restores
// the body it read for the next handler.
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				h.refuse(w, r, &authError{http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
					fmt.Sprintf("The request body exceeds %d bytes.", MaxBodyBytes), "body too large"})
				return
			}
			h.refuse(w, r, &authError{http.StatusBadRequest, "MalformedHttpRequest", "The request body could not be read.", err.Error()})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		c, aerr := h.verify(r, body)
		if aerr != nil {
			h.refuse(w, r, aerr)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// refuse logs why a request was refused and answers in the plane's format:
// EC2 XML for the Query API, JSON under /v1/.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, e *authError) {
	h.log.Warn("request refused", "component", "controlplane", "remote", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path, "code", e.code, "reason", e.reason)
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		writeAuthJSON(w, e.status, e.code, e.msg)
		return
	}
	writeEC2Error(w, e.status, e.code, e.msg)
}

// sigV4Auth is a parsed Authorization header.
type sigV4Auth struct {
	accessKeyID, date, region, service string
	signedHeaders                      []string
	signature                          string
}

// parseAuthorization reads
// "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(v string) (sigV4Auth, error) {
	var a sigV4Auth
	alg, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || alg != sigAlgorithm {
		return a, fmt.Errorf("authorization is not %s", sigAlgorithm)
	}
	var cred, signed string
	seen := map[string]bool{}
	for part := range strings.SplitSeq(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || seen[k] {
			return a, fmt.Errorf("malformed authorization component %q", k)
		}
		seen[k] = true
		switch k {
		case "Credential":
			cred = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			a.signature = val
		default:
			return a, fmt.Errorf("unknown authorization component %q", k)
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || slices.Contains(scope, "") {
		return a, errors.New("malformed credential scope")
	}
	a.accessKeyID, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	if signed == "" || a.signature == "" {
		return a, errors.New("missing SignedHeaders or Signature")
	}
	a.signedHeaders = strings.Split(signed, ";")
	if !slices.IsSorted(a.signedHeaders) || !slices.Contains(a.signedHeaders, "host") {
		return a, errors.New("SignedHeaders must be sorted and include host")
	}
	if len(a.signature) != 64 {
		return a, errors.New("signature is not 64 hex digits")
	}
	if _, err := hex.DecodeString(a.signature); err != nil {
		return a, errors.New("signature is not 64 hex digits")
	}
	return a, nil
}

// verify checks the request's signature by signing a copy of it, carrying
// only the headers the client signed, with the SDK's signer.
func (h *Handler) verify(r *http.Request, body []byte) (Caller, *authError) {
	hdr := r.Header.Get("Authorization")
	if hdr == "" {
		if r.URL.Query().Has("X-Amz-Signature") {
			return Caller{}, authFailure("presigned URLs are not accepted; sign the Authorization header")
		}
		return Caller{}, &authError{http.StatusUnauthorized, "MissingAuthenticationToken",
			"Request must contain either a valid (registered) AWS access key ID or X.509 certificate.", "no Authorization header"}
	}
	a, err := parseAuthorization(hdr)
	if err != nil {
		return Caller{}, authFailure(err.Error())
	}
	if a.service != serviceEC2 && a.service != serviceIMDS {
		return Caller{}, authFailure(fmt.Sprintf("credential scope service %q, want ec2 or imds", a.service))
	}
	if h.o.Operators == nil {
		return Caller{}, authFailure("no operator keys are configured")
	}
	secret, ok := h.o.Operators.Secret(r.Context(), a.accessKeyID)
	if !ok {
		return Caller{}, authFailure("unknown access key " + a.accessKeyID)
	}
	if r.Header.Get("X-Amz-Security-Token") != "" {
		return Caller{}, authFailure("session token given; operators sign with long-term keys")
	}

	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateFmt, amzDate)
	if err != nil {
		return Caller{}, authFailure("missing or malformed X-Amz-Date")
	}
	if t.Format("20060102") != a.date {
		return Caller{}, authFailure("credential scope date differs from X-Amz-Date")
	}
	if skew := h.o.Now().Sub(t); skew > MaxClockSkew || skew < -MaxClockSkew {
		return Caller{}, &authError{http.StatusBadRequest, "RequestExpired", "Request has expired.",
			fmt.Sprintf("X-Amz-Date %s is %s from the server's clock", amzDate, skew.Round(time.Second))}
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if v := r.Header.Get("X-Amz-Content-Sha256"); v != "" && v != payloadHash {
		return Caller{}, authFailure("X-Amz-Content-Sha256 is not the hash of the body")
	}

	// A copy with the signed headers only, so that the signer signs exactly
	// those. Host and Content-Length live outside the header map.
	c := r.Clone(r.Context())
	c.Header = http.Header{}
	c.ContentLength = 0
	c.Body = http.NoBody
	for _, name := range a.signedHeaders {
		switch name {
		case "host":
		case "content-length":
			c.ContentLength = int64(len(body))
		default:
			vals := r.Header.Values(name)
			if len(vals) == 0 {
				return Caller{}, authFailure("signed header " + name + " is not in the request")
			}
			c.Header[http.CanonicalHeaderKey(name)] = vals
		}
	}
	creds := aws.Credentials{AccessKeyID: a.accessKeyID, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, c, payloadHash, a.service, a.region, t); err != nil {
		return Caller{}, authFailure("sign: " + err.Error())
	}
	want, err := parseAuthorization(c.Header.Get("Authorization"))
	if err != nil {
		return Caller{}, authFailure("sign: " + err.Error())
	}
	if !slices.Equal(want.signedHeaders, a.signedHeaders) {
		// The client signed a header the SDK's signer never signs
		// (User-Agent, Expect, ...), so the signature cannot be checked.
		return Caller{}, authFailure("signed headers " + strings.Join(a.signedHeaders, ";") + " cannot be verified")
	}
	if !hmac.Equal([]byte(want.signature), []byte(strings.ToLower(a.signature))) {
		return Caller{}, authFailure("signature does not match")
	}
	return Caller{AccessKeyID: a.accessKeyID, Region: a.region, Service: a.service}, nil
}
