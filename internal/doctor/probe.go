package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imds/imds/internal/imdsclient"
)

// probe is what one endpoint answered to a token request and to a GET
// without a token.
type probe struct {
	url     string
	family  string // "IPv4", "IPv6", or "" for another endpoint
	primary bool   // the endpoint the SDKs use
	client  *imdsclient.Client
	err     error // the client could not be made

	putSent bool
	token   *imdsclient.Token
	putErr  error

	v1Sent bool
	v1     *imdsclient.Response // nil when no answer came
	v1Err  error
}

const metadataRoot = "/latest/meta-data/"

func newProbe(u, family string) *probe { return &probe{url: u, family: family} }

// run sends the token request (unless NoToken), then the GET without a
// token when the token did not come or when this is the primary endpoint.
func (p *probe) run(ctx context.Context, o *Options) {
	p.client, p.err = imdsclient.New(imdsclient.Options{
		Endpoint:  p.url,
		Transport: o.Transport,
		UserAgent: "imds-doctor",
		Now:       o.Now,
	})
	if p.err != nil {
		return
	}
	if !o.NoToken {
		p.putSent = true
		p.token, p.putErr = p.client.Token(ctx)
	}
	if p.token == nil || p.primary {
		p.v1Sent = true
		r, err := p.client.Do(ctx, http.MethodGet, metadataRoot, nil)
		p.v1, p.v1Err = r, err
	}
}

// answered says an HTTP answer came to either request.
func (p *probe) answered() bool {
	return p.token != nil || p.v1 != nil || statusOf(p.putErr) != 0
}

// disabled says every answer was 403 Forbidden.
func (p *probe) disabled() bool {
	if !p.answered() {
		return false
	}
	if p.putSent && statusOf(p.putErr) != http.StatusForbidden && imdsclient.Classify(p.putErr) == imdsclient.Answered {
		return false
	}
	return p.v1 == nil || p.v1.StatusCode == http.StatusForbidden
}

// failure is why no answer came, the GET's reason first (it tells more
// than a token request that may have died of its hop limit).
func (p *probe) failure() (imdsclient.Failure, error) {
	if p.err != nil {
		return imdsclient.OtherFailure, p.err
	}
	if p.v1Sent && p.v1 == nil {
		return imdsclient.Classify(p.v1Err), p.v1Err
	}
	return imdsclient.Classify(p.putErr), p.putErr
}

// hopLimited says the token answer did not come while a GET was answered.
func (p *probe) hopLimited() bool {
	return p.putSent && imdsclient.Classify(p.putErr) == imdsclient.NoAnswer && p.v1 != nil
}

func statusOf(err error) int {
	var se *imdsclient.StatusError
	if errors.As(err, &se) {
		return se.StatusCode()
	}
	return 0
}

func (p *probe) host() string {
	if u, err := url.Parse(p.url); err == nil {
		return u.Host
	}
	return p.url
}

// answers describes the answers, such as "token PUT 200, GET without a
// token 401".
func (p *probe) answers(o *Options) string {
	var parts []string
	if p.putSent {
		parts = append(parts, "token PUT "+outcome(p.token != nil, p.putErr, o))
	}
	if p.v1Sent {
		parts = append(parts, "GET without a token "+outcome(p.v1 != nil && p.v1.StatusCode == http.StatusOK, statusErr(p.v1, p.v1Err), o))
	}
	return strings.Join(parts, ", ")
}

func statusErr(r *imdsclient.Response, err error) error {
	if r != nil && r.StatusCode != http.StatusOK {
		return &imdsclient.StatusError{Method: http.MethodGet, Path: metadataRoot, Response: r}
	}
	return err
}

func outcome(ok bool, err error, o *Options) string {
	if ok {
		return "200"
	}
	if s := statusOf(err); s != 0 {
		return fmt.Sprint(s)
	}
	if errors.Is(err, imdsclient.ErrNoTTL) {
		return "200 without a TTL header"
	}
	switch f := imdsclient.Classify(err); f {
	case imdsclient.NoAnswer:
		return "no answer within " + o.AnswerTimeout.String()
	case imdsclient.OtherFailure:
		return "failed: " + err.Error()
	default:
		return f.String()
	}
}

// modifyOptions is the AWS CLI command that changes the instance's metadata
// options; AWS asks for --http-endpoint enabled alongside any other option.
func modifyOptions(instanceID string, args ...string) string {
	parts := append([]string{"aws ec2 modify-instance-metadata-options --instance-id", instanceID}, args...)
	return strings.Join(append(parts, "--http-endpoint enabled"), " ")
}

func (r *run) checkEndpoint(id string, p *probe) Check {
	c := Check{ID: id, Data: map[string]any{"url": p.url, "answers": p.answers(&r.o)}}
	c.Data["used"] = p.primary
	notUsed := ""
	if !p.primary {
		notUsed = "; SDKs here use " + r.primary.url
	}
	switch {
	case p.err != nil:
		c.Status, c.Message = Fail, fmt.Sprintf("%s: %v", p.url, p.err)
	case p.disabled():
		c.Data["failure"] = "disabled"
		c.Message = fmt.Sprintf("%s answers 403 Forbidden: instance metadata is turned off for this instance (http-endpoint disabled; on imds also: this address belongs to no instance)", p.url)
		if !p.primary {
			c.Status, c.Message = Skip, c.Message+notUsed
			break
		}
		c.Status = Fail
		c.Fix = modifyOptions(r.inst.idOrPlaceholder())
	case p.answered():
		c.Status, c.Message = Pass, fmt.Sprintf("%s answers (%s)", p.url, p.answers(&r.o))
		if !p.primary {
			c.Message += notUsed
		}
	default:
		f, err := p.failure()
		c.Data["failure"] = f.String()
		c.Message = r.unreachable(p, f, err)
		if !p.primary {
			c.Status, c.Message = Skip, c.Message+notUsed
			break
		}
		c.Status = Fail
		c.Fix = r.unreachableFix(p)
	}
	return c
}

func (r *run) unreachable(p *probe, f imdsclient.Failure, err error) string {
	switch f {
	case imdsclient.NoRoute:
		return fmt.Sprintf("%s: no route to %s: this network has no path to IMDS", p.url, p.host())
	case imdsclient.Refused:
		return fmt.Sprintf("%s: connection refused: nothing listens on %s", p.url, p.host())
	case imdsclient.ConnectTimeout:
		return fmt.Sprintf("%s: no answer to the connection within the timeout: nothing at %s on this network, or a firewall drops the packets", p.url, p.host())
	case imdsclient.NoAnswer:
		return fmt.Sprintf("%s: connected, but no answer within %v", p.url, r.o.AnswerTimeout)
	case imdsclient.Closed:
		msg := fmt.Sprintf("%s closes the connection without an answer", p.url)
		if p.family == "IPv6" {
			msg += " (as on an instance whose http-protocol-ipv6 is disabled)"
		}
		return msg
	}
	return fmt.Sprintf("%s: %v", p.url, err)
}

func (r *run) unreachableFix(p *probe) string {
	other := r.v6
	if p == r.v6 {
		other = r.v4
	}
	switch {
	case p.family == "IPv4" && other.answered() && !other.disabled():
		return "the IPv6 endpoint answers: export " + imdsclient.EnvEndpointMode + "=IPv6"
	case p.family == "IPv6" && r.v4.answered() && !r.v4.disabled():
		return "the IPv4 endpoint answers: unset " + imdsclient.EnvEndpointMode + ", or turn the IPv6 endpoint on: " +
			modifyOptions(r.inst.idOrPlaceholder(), "--http-protocol-ipv6 enabled")
	case p.family == "":
		return "check " + r.env.endpoint.Source + "=" + p.url + ": IMDS must listen there, or unset it to use " + imdsclient.IPv4Endpoint
	}
	fix := "run on an EC2 instance, or serve instance metadata with imds and point the SDKs at it: export " + imdsclient.EnvEndpoint + "=http://HOST:PORT"
	if r.container.Detected {
		fix = "give the container a route to " + p.host() + " through the host (the default bridge network has one; a custom network may not), or " + fix
	}
	return fix
}

func (r *run) checkToken() Check {
	p := r.primary
	c := Check{ID: "token"}
	switch {
	case r.o.NoToken:
		c.Status, c.Message = Skip, "--no-token: probing as an SDK without IMDSv2 support, which asks for no token"
	case p.token != nil:
		c.Status = Pass
		c.Message = fmt.Sprintf("IMDSv2 token issued (TTL %ds)", int(p.token.TTL/time.Second))
		c.Data = map[string]any{"ttl-seconds": int(p.token.TTL / time.Second)}
	case !p.answered() || p.disabled():
		c.Status, c.Message = Skip, "the endpoint does not answer (see "+r.endpointID()+")"
	case p.hopLimited():
		c.Status = Fail
		c.Message = fmt.Sprintf("PUT %s got no answer within %v, while a GET without a token was answered (see hop-limit)", imdsclient.TokenPath, r.o.AnswerTimeout)
	case errors.Is(p.putErr, imdsclient.ErrNoTTL):
		c.Status = Fail
		c.Message = "the token answer has no valid " + imdsclient.HeaderTTL + " header: the Go and Rust SDKs refuse such a token and fall back to IMDSv1"
		c.Fix = "serve the header with the granted TTL, as EC2 does (imds does)"
	default:
		c.Status = Fail
		s := statusOf(p.putErr)
		switch s {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			c.Message = fmt.Sprintf("PUT %s answered %d: this endpoint has no IMDSv2 (an old mock or a proxy?); SDKs fall back to IMDSv1", imdsclient.TokenPath, s)
			c.Fix = "serve IMDSv2 (imds does), or point " + imdsclient.EnvEndpoint + " at an endpoint that does"
		case http.StatusForbidden:
			c.Message = fmt.Sprintf("PUT %s answered 403 while reads are allowed: something on the way adds X-Forwarded-For, which IMDS refuses on token requests", imdsclient.TokenPath)
			c.Fix = "send IMDS requests directly, not through a proxy: see env-proxy"
		case 0:
			c.Message = fmt.Sprintf("PUT %s: %s", imdsclient.TokenPath, outcome(false, p.putErr, &r.o))
		default:
			c.Message = fmt.Sprintf("PUT %s answered %d %s", imdsclient.TokenPath, s, http.StatusText(s))
		}
	}
	return c
}

func (r *run) endpointID() string {
	switch r.primary {
	case r.v4:
		return "endpoint-ipv4"
	case r.v6:
		return "endpoint-ipv6"
	}
	return "endpoint"
}

// checkHopLimit tells a token answer that dies on its way (its packets
// leave IMDS with the IP TTL set to http-put-response-hop-limit) from other
// failures: only then does the token request go unanswered while a GET,
// whose answer is not hop-limited, gets through.
func (r *run) checkHopLimit() Check {
	p := r.primary
	c := Check{ID: "hop-limit", Data: map[string]any{"container": r.container.Detected}}
	where := "here"
	if r.container.Detected {
		where = "here, in a container (" + r.container.Evidence + ")"
	}
	switch {
	case r.o.NoToken:
		c.Status, c.Message = Skip, "--no-token: no token request to judge by"
	case p.token != nil:
		c.Status = Pass
		c.Message = "the token answer reached " + where + ": http-put-response-hop-limit is high enough"
	case p.hopLimited():
		c.Status = Fail
		c.Message = fmt.Sprintf("hop limit too low: no answer to the token request within %v while a GET without a token got %d: the token answer leaves IMDS with IP TTL = http-put-response-hop-limit and dies a router or bridge hop short of %s; %s",
			r.o.AnswerTimeout, p.v1.StatusCode, where, r.afterHopLimit())
		c.Fix = modifyOptions(r.inst.idOrPlaceholder(), "--http-put-response-hop-limit 2") +
			" (one more than the hops between IMDS and here: 2 for a container on a bridge), or run the container with host networking"
	default:
		c.Status, c.Message = Skip, "no token answer to judge by"
	}
	return c
}

// afterHopLimit says what the SDKs do when the token never comes.
func (r *run) afterHopLimit() string {
	v1 := r.primary.v1
	switch {
	case r.env.v1Disabled:
		return imdsEnvV1Disabled + " is true, so SDKs get nothing"
	case v1 != nil && v1.StatusCode == http.StatusOK:
		return "SDKs wait out their timeout on each token request, then fall back to IMDSv1 (only while http-tokens is optional)"
	}
	return "IMDSv1 is off (http-tokens required), so SDKs get no metadata and no credentials"
}

// SDK releases that first support IMDSv2, from the EC2 User Guide.
const minimumSDKs = "AWS CLI 1.16.289, boto3 1.12.6 (botocore 1.13.25), Go 1.25.38, Go v2 0.19.0, Java 1.11.678, Java 2.x 2.10.21, JavaScript 2.722.0, .NET 3.3.634.1, PHP 3.147.7, Ruby 3.79.0, PowerShell 4.0.1.0, C++ 1.7.229"

func (r *run) checkIMDSv1() Check {
	p := r.primary
	c := Check{ID: "imdsv1"}
	if r.env.v1DisabledErr != "" {
		c.Status, c.Message = Fail, r.env.v1DisabledErr
		c.Fix = "export " + imdsEnvV1Disabled + "=true, or unset it"
		return c
	}
	if p.v1 == nil || p.v1.StatusCode == http.StatusForbidden {
		c.Status, c.Message = Skip, "the endpoint does not answer (see "+r.endpointID()+")"
		return c
	}
	tokenOK := p.token != nil
	id := r.inst.idOrPlaceholder()
	switch p.v1.StatusCode {
	case http.StatusOK:
		c.Data = map[string]any{"http-tokens": "optional"}
		switch {
		case r.o.NoToken:
			c.Status, c.Message = Pass, "IMDSv1 is allowed (http-tokens optional): an SDK without IMDSv2 support reads metadata"
		case r.env.v1Disabled && !tokenOK:
			c.Status = Fail
			c.Message = imdsEnvV1Disabled + "=true: SDKs never fall back to IMDSv1, and the token request fails here, so they get no metadata"
			c.Fix = "make the token request work (see token and hop-limit), or unset " + imdsEnvV1Disabled
		default:
			c.Status = Warn
			c.Message = "IMDSv1 is allowed (http-tokens optional): SDKs without IMDSv2 support work, and so does a forged request (SSRF) that reaches the endpoint"
			if !tokenOK {
				c.Message += "; SDKs here fall back to it because the token request fails"
			}
			c.Fix = "once nothing needs IMDSv1 (the CloudWatch metric MetadataNoToken stays 0): " + modifyOptions(id, "--http-tokens required")
		}
	case http.StatusUnauthorized:
		c.Data = map[string]any{"http-tokens": "required"}
		switch {
		case r.o.NoToken:
			c.Status = Fail
			c.Message = "IMDSv1 is off (http-tokens required): this request without a token, like one from an SDK without IMDSv2 support, got 401 Unauthorized and no metadata"
			c.Fix = "upgrade the SDK to a release with IMDSv2 (" + minimumSDKs + "); or, until then, " + modifyOptions(id, "--http-tokens optional")
		case !tokenOK:
			c.Status = Fail
			c.Message = "IMDSv1 is off (http-tokens required) and the token request fails here: SDKs get no metadata and no credentials"
			c.Fix = "make the token request work (see token and hop-limit)"
		default:
			c.Status = Pass
			c.Message = "IMDSv2 is required (http-tokens required): SDK releases without IMDSv2 get 401 (first with it: AWS CLI 1.16.289, boto3 1.12.6, Go 1.25.38, Java 1.11.678, JavaScript 2.722.0)"
		}
	default:
		c.Status = Warn
		c.Message = fmt.Sprintf("GET %s without a token answered %d %s, neither 200 (IMDSv1 allowed) nor 401 (IMDSv2 required)", metadataRoot, p.v1.StatusCode, http.StatusText(p.v1.StatusCode))
	}
	if c.Status != Fail && r.env.v1Disabled {
		c.Message += "; " + imdsEnvV1Disabled + "=true: SDKs here never fall back to IMDSv1"
	}
	return c
}
