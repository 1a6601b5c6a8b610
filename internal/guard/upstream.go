package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream token settings: the longest TTL EC2 grants, renewed well ahead of
// its expiry so that a request never carries a token about to expire.
const (
	upstreamTTL   = 21600 * time.Second
	renewAhead    = 30 * time.Minute
	upstreamLimit = 1 << 20 // the largest answer read from upstream
	// backoff: after the upstream failed, requests are answered from the
	// cache for this long without trying it, so that an upstream that
	// does not answer at all does not hold every caller for a timeout.
	backoff = 5 * time.Second
)

// errUpstream: the upstream could not be reached or answered nonsense.
var errUpstream = errors.New("upstream unreachable")

// upstream speaks IMDSv2 to EC2's IMDS: it holds one token, renews it ahead
// of its expiry and once more when the upstream refuses it.
type upstream struct {
	base   string // http://host[:port], no trailing slash
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time

	downUntil atomic.Int64 // unix nanoseconds; 0 when up
}

// answer is what the upstream said to a GET.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

func (u *upstream) currentToken(ctx context.Context, fresh bool) (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !fresh && u.token != "" && u.now().Before(u.expires.Add(-renewAhead)) {
		return u.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.base+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", fmt.Sprint(int(upstreamTTL/time.Second)))
	start := u.now()
	resp, err := u.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: token: %w", errUpstream, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("%w: token: %w", errUpstream, err)
	}
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		return "", fmt.Errorf("%w: token: %s", errUpstream, resp.Status)
	}
	u.token, u.expires = string(b), start.Add(upstreamTTL)
	return u.token, nil
}

// get fetches path, with the guard's token when v2, and once more with a
// fresh token when the upstream answers 401 to it. After a failure it fails
// at once for the backoff.
func (u *upstream) get(ctx context.Context, method, path string, v2 bool) (*answer, error) {
	if until := u.downUntil.Load(); until != 0 && u.now().UnixNano() < until {
		return nil, fmt.Errorf("%w: backing off after a failure", errUpstream)
	}
	return u.fetch(ctx, method, path, v2)
}

// fetch is get without the backoff.
func (u *upstream) fetch(ctx context.Context, method, path string, v2 bool) (*answer, error) {
	a, err := u.do(ctx, method, path, v2, false)
	if err == nil && v2 && a.code == http.StatusUnauthorized {
		a, err = u.do(ctx, method, path, v2, true)
	}
	if errors.Is(err, errUpstream) {
		u.downUntil.Store(u.now().Add(backoff).UnixNano())
	} else if err == nil {
		u.downUntil.Store(0)
	}
	return a, err
}

func (u *upstream) do(ctx context.Context, method, path string, v2, fresh bool) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.base+path, nil)
	if err != nil {
		return nil, err
	}
	if v2 {
		tok, err := u.currentToken(ctx, fresh)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-aws-ec2-metadata-token", tok)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUpstream, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, upstreamLimit)); err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", errUpstream, path, err)
	}
	return &answer{code: resp.StatusCode, header: resp.Header, body: buf.Bytes()}, nil
}

// instanceID reads the upstream instance's id; probe tries even during the
// backoff.
func (u *upstream) instanceID(ctx context.Context, probe bool) (string, error) {
	get := u.get
	if probe {
		get = u.fetch
	}
	a, err := get(ctx, http.MethodGet, "/latest/meta-data/instance-id", true)
	if err != nil {
		return "", err
	}
	if a.code != http.StatusOK {
		return "", fmt.Errorf("%w: instance-id: status %d", errUpstream, a.code)
	}
	return strings.TrimSpace(string(a.body)), nil
}

func newClient() *http.Client {
	return &http.Client{
		// Never through a proxy: the upstream is link-local.
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
