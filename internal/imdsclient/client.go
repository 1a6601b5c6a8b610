// Package imdsclient reads instance metadata the way the AWS SDKs do: an
// IMDSv2 token first, IMDSv1 only where the SDKs fall back to it. It talks to
// EC2 and to imds alike and needs nothing imds-specific.
//
// Unlike the SDKs, it never sends IMDS requests through an HTTP proxy: the Go
// SDK and botocore do when HTTP_PROXY is set and NO_PROXY does not name the
// endpoint, which is a misconfiguration that `imds doctor` reports.
package imdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names, as the SDKs send them.
const (
	HeaderToken = "X-Aws-Ec2-Metadata-Token"
	HeaderTTL   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	TokenPath   = "/latest/api/token"
)

// Defaults, those of the AWS SDKs' IMDS clients where they agree. The SDKs'
// own timeouts are shorter (the Go SDK waits 250 ms for a connection and
// 500 ms for an answer); a diagnosis waits a little longer before it calls an
// endpoint silent.
const (
	DefaultTokenTTL       = 21600 * time.Second
	DefaultConnectTimeout = time.Second
	DefaultAnswerTimeout  = time.Second
	// MaxBody bounds an answer; user data is at most 16 KiB on EC2.
	MaxBody = 1 << 20
)

// Options configure a Client. The zero value reads from IPv4Endpoint.
type Options struct {
	// Endpoint is the base URL, such as IPv4Endpoint; see ResolveEndpoint.
	Endpoint string
	// TokenTTL is the lifetime requested for IMDSv2 tokens, 1s to 6h.
	TokenTTL time.Duration
	// NoFallback never sends a request without a token, as SDKs do with
	// AWS_EC2_METADATA_V1_DISABLED=true.
	NoFallback bool
	// NoToken sends every request without a token (IMDSv1), as an SDK
	// without IMDSv2 support does.
	NoToken bool
	// ConnectTimeout and AnswerTimeout bound the connection and the wait
	// for the answer's headers of each request. Zero means the default.
	ConnectTimeout, AnswerTimeout time.Duration
	// Transport, when set, carries the requests instead of a transport
	// built from the timeouts. Tests use it.
	Transport http.RoundTripper
	// UserAgent is sent on every request when set.
	UserAgent string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Client reads instance metadata. It caches its token until it expires and,
// like the Go SDK, stops asking for tokens once the endpoint refused one
// with 403, 404 or 405 or did not answer. Safe for concurrent use.
type Client struct {
	base      string
	ttl       time.Duration
	opts      Options
	http      *http.Client
	now       func() time.Time
	mu        sync.Mutex
	token     string
	expires   time.Time
	tokensOff bool  // no more token requests: fall back to IMDSv1
	offReason error // why tokensOff was set
	fellBack  error // the first token failure a read fell back on
}

// New returns a client for o.Endpoint.
func New(o Options) (*Client, error) {
	if o.Endpoint == "" {
		o.Endpoint = IPv4Endpoint
	}
	if err := checkURL(o.Endpoint); err != nil {
		return nil, err
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.TokenTTL < time.Second || o.TokenTTL > DefaultTokenTTL || o.TokenTTL%time.Second != 0 {
		return nil, fmt.Errorf("token TTL %v: want whole seconds from 1s to 6h", o.TokenTTL)
	}
	if o.NoToken && o.NoFallback {
		return nil, errors.New("no token and no fallback to IMDSv1 leaves no way to read metadata")
	}
	rt := o.Transport
	if rt == nil {
		rt = NewTransport(o.ConnectTimeout, o.AnswerTimeout)
	}
	c := &Client{
		base: strings.TrimRight(o.Endpoint, "/"),
		ttl:  o.TokenTTL,
		opts: o,
		http: &http.Client{
			Transport: rt,
			// IMDS redirects only iam/security-credentials to itself with
			// a slash; follow that, nothing else.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) > 1 {
					return errors.New("more than one redirect")
				}
				return nil
			},
		},
		now: o.Now,
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// NewTransport returns the transport of a Client: no proxy, no connection
// reuse (EC2 closes every connection), and the given timeouts, zero meaning
// the defaults.
func NewTransport(connect, answer time.Duration) *http.Transport {
	if connect == 0 {
		connect = DefaultConnectTimeout
	}
	if answer == 0 {
		answer = DefaultAnswerTimeout
	}
	d := &net.Dialer{Timeout: connect}
	return &http.Transport{
		Proxy:                 nil, // IMDS is link-local: never through a proxy
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: answer,
		DisableKeepAlives:     true,
		DisableCompression:    true,
	}
}

// Endpoint is the client's base URL.
func (c *Client) Endpoint() string { return c.base }

// Response is one HTTP answer.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// Received is the client's clock when the headers arrived; compare it
	// with Date for clock skew.
	Received time.Time
	// Token says the request carried an IMDSv2 token.
	Token bool
	// Fallback, on a response to a request without a token that Get sent
	// because the token request failed, is that failure.
	Fallback error
}

// Date is the server's Date header, or the zero time.
func (r *Response) Date() time.Time {
	t, err := http.ParseTime(r.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// Do sends one request to path (which starts with "/") with the given
// headers and returns the answer, whatever its status. An error means no
// answer came; Classify tells why.
func (c *Client) Do(ctx context.Context, method, path string, header http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.opts.UserAgent != "" {
		req.Header.Set("User-Agent", c.opts.UserAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := &Response{StatusCode: resp.StatusCode, Header: resp.Header, Received: c.now(), Token: header.Get(HeaderToken) != ""}
	r.Body, err = io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(r.Body) > MaxBody {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, MaxBody)
	}
	return r, nil
}

// Token is an IMDSv2 session token.
type Token struct {
	Value string
	// TTL is the lifetime the endpoint granted, from its TTL header.
	TTL      time.Duration
	Response *Response
}

// Token requests a new token with PUT /latest/api/token and caches it for
// Get. A status other than 200 is a *StatusError; a 200 without a valid TTL
// header is ErrNoTTL.
func (c *Client) Token(ctx context.Context) (*Token, error) {
	tok, err := c.putToken(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.noteTokenFailure(err)
		return nil, err
	}
	c.token, c.expires, c.tokensOff = tok.Value, tok.Response.Received.Add(tok.TTL), false
	return tok, nil
}

func (c *Client) putToken(ctx context.Context) (*Token, error) {
	h := http.Header{HeaderTTL: {strconv.Itoa(int(c.ttl / time.Second))}}
	r, err := c.Do(ctx, http.MethodPut, TokenPath, h)
	if err != nil {
		return nil, err
	}
	if r.StatusCode != http.StatusOK {
		return nil, &StatusError{http.MethodPut, TokenPath, r}
	}
	secs, err := strconv.Atoi(r.Header.Get(HeaderTTL))
	if err != nil || secs <= 0 {
		return nil, fmt.Errorf("PUT %s: %w", TokenPath, ErrNoTTL)
	}
	return &Token{Value: string(r.Body), TTL: time.Duration(secs) * time.Second, Response: r}, nil
}

// noteTokenFailure turns tokens off for the client's life where the Go SDK
// does: 403, 404 and 405 (the endpoint has no IMDSv2) and no answer at all.
// Other failures fall back for one request only. Call with c.mu held.
func (c *Client) noteTokenFailure(err error) {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.StatusCode() {
		case http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
			c.tokensOff, c.offReason = true, err
		}
		return
	}
	if f := Classify(err); f != Answered && f != OtherFailure {
		c.tokensOff, c.offReason = true, err
	}
}

// canFallBack reports whether a failed token request lets Get go on without
// a token: always, as in the Go SDK and botocore, except on 400 (a bad
// request is the caller's bug) or with NoFallback.
func (c *Client) canFallBack(err error) bool {
	if c.opts.NoFallback {
		return false
	}
	var se *StatusError
	return !errors.As(err, &se) || se.StatusCode() != http.StatusBadRequest
}

// cachedToken returns the token to use, or "" and why there is none
// (tokensOff), or "" and nil when a new one must be requested.
func (c *Client) cachedToken() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokensOff && !c.opts.NoFallback {
		return "", c.offReason
	}
	if c.token != "" && c.now().Before(c.expires) {
		return c.token, nil
	}
	return "", nil
}

func (c *Client) dropToken() {
	c.mu.Lock()
	c.token, c.tokensOff, c.offReason = "", false, nil
	c.mu.Unlock()
}

// FellBack returns the first token failure that made a read go without a
// token, or nil when every read carried one (or NoToken is set).
func (c *Client) FellBack() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fellBack
}

// Get reads path (which starts with "/") as an SDK does: with a token when
// one can be had, else without one unless NoFallback. A 401 drops the token
// and tries once more with a new one. A status other than 200 is a
// *StatusError that carries the response.
func (c *Client) Get(ctx context.Context, path string) (*Response, error) {
	if c.opts.NoToken {
		return c.get(ctx, path, "", nil)
	}
	r, err := c.getWithToken(ctx, path)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode() == http.StatusUnauthorized {
		c.dropToken()
		r, err = c.getWithToken(ctx, path)
	}
	return r, err
}

func (c *Client) getWithToken(ctx context.Context, path string) (*Response, error) {
	tok, why := c.cachedToken()
	if tok == "" && why == nil {
		t, err := c.Token(ctx)
		if err != nil {
			if !c.canFallBack(err) {
				return nil, fmt.Errorf("IMDSv2 token: %w", err)
			}
			why = err
		} else {
			tok = t.Value
		}
	}
	return c.get(ctx, path, tok, why)
}

func (c *Client) get(ctx context.Context, path, token string, fallback error) (*Response, error) {
	var h http.Header
	if token != "" {
		h = http.Header{HeaderToken: {token}}
	}
	r, err := c.Do(ctx, http.MethodGet, path, h)
	if err != nil {
		return nil, err
	}
	r.Fallback = fallback
	if fallback != nil {
		c.mu.Lock()
		if c.fellBack == nil {
			c.fellBack = fallback
		}
		c.mu.Unlock()
	}
	if r.StatusCode != http.StatusOK {
		return r, &StatusError{http.MethodGet, path, r}
	}
	return r, nil
}
