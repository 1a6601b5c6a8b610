// Package adminclient is a client of the control plane's JSON admin API, as
// the imds command line uses it: requests signed with SigV4 by an operator
// key, answers decoded into the types of package adminapi.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/migration"
)

// Defaults of the client.
const (
	DefaultURL = "http://127.0.0.1:1339"
	// Region and Service are the SigV4 credential scope of admin requests.
	Region  = "us-east-1"
	Service = "imds"
	// DefaultTimeout bounds one request.
	DefaultTimeout = 30 * time.Second
)

// Options configure a Client.
type Options struct {
	// URL is the control plane's base URL; DefaultURL when empty.
	URL         string
	Credentials adminapi.Credentials
	// HTTPClient is http.Client{Timeout: DefaultTimeout} when nil.
	HTTPClient *http.Client
	// Now is the signing clock; time.Now when nil.
	Now func() time.Time
}

// Client calls the admin API.
type Client struct {
	base  *url.URL
	creds adminapi.Credentials
	hc    *http.Client
	now   func() time.Time
}

// New returns a client of the control plane at o.URL.
func New(o Options) (*Client, error) {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http://HOST:PORT or https://HOST:PORT", o.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{base: u, creds: o.Credentials, hc: o.HTTPClient, now: o.Now}, nil
}

// URL is the control plane's base URL.
func (c *Client) URL() string { return c.base.String() }

// Error is an error answer of the admin API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// UnreachableError: the control plane did not answer.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("no answer from the control plane at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Cond is the condition of a write: IfMatch a revision (the record must be
// at that revision), or Create (the record must not exist). The zero Cond
// writes whatever is there.
type Cond struct {
	IfMatch int64
	Create  bool
}

func (cd Cond) header() http.Header {
	h := http.Header{}
	if cd.IfMatch > 0 {
		h.Set("If-Match", strconv.Quote(strconv.FormatInt(cd.IfMatch, 10)))
	}
	if cd.Create {
		h.Set("If-None-Match", "*")
	}
	return h
}

// do sends a signed request and decodes a 2xx answer into out (if not nil).
// It returns the answer's status.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body []byte, out any) (int, error) {
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if err := adminapi.SignRequest(req, body, c.creds.AccessKeyID, c.creds.SecretAccessKey, Region, Service, c.now()); err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, &UnreachableError{URL: c.base.String(), Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, &UnreachableError{URL: c.base.String(), Err: err}
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode)}
		var eb adminapi.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
		} else {
			e.Message = strings.TrimSpace(string(data))
			if len(e.Message) > 200 {
				e.Message = e.Message[:200] + "..."
			}
		}
		return resp.StatusCode, e
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode the answer to %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func jsonBody(v any) (http.Header, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, nil, err
	}
	return http.Header{"Content-Type": {"application/json"}}, b, nil
}

func merge(a, b http.Header) http.Header {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func seg(s string) string { return "/" + url.PathEscape(s) }

// --- instances ---

// Instances lists the instances, sorted by id.
func (c *Client) Instances(ctx context.Context) ([]adminapi.InstanceSummary, error) {
	var out adminapi.InstanceList
	_, err := c.do(ctx, http.MethodGet, "/v1/instances", nil, nil, &out)
	return out.Instances, err
}

// Instance returns one instance.
func (c *Client) Instance(ctx context.Context, id string) (*adminapi.InstanceRecord, error) {
	var out adminapi.InstanceRecord
	if _, err := c.do(ctx, http.MethodGet, "/v1/instances"+seg(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutInstance registers an instance or replaces its spec; created tells which.
func (c *Client) PutInstance(ctx context.Context, spec config.Instance, cond Cond) (rec *adminapi.InstanceRecord, created bool, err error) {
	hdr, body, err := jsonBody(spec)
	if err != nil {
		return nil, false, err
	}
	var out adminapi.InstanceRecord
	status, err := c.do(ctx, http.MethodPut, "/v1/instances"+seg(spec.InstanceID), merge(hdr, cond.header()), body, &out)
	if err != nil {
		return nil, false, err
	}
	return &out, status == http.StatusCreated, nil
}

// PutInstances registers instances or replaces their specs, all or none: if
// one breaks a registry rule, none is written and the error names each.
func (c *Client) PutInstances(ctx context.Context, specs []config.Instance) ([]adminapi.InstanceWritten, error) {
	hdr, body, err := jsonBody(adminapi.InstanceBatch{Instances: specs})
	if err != nil {
		return nil, err
	}
	var out adminapi.InstanceBatchResult
	if _, err := c.do(ctx, http.MethodPut, "/v1/instances", hdr, body, &out); err != nil {
		return nil, err
	}
	return out.Instances, nil
}

// DeleteInstance removes an instance.
func (c *Client) DeleteInstance(ctx context.Context, id string, cond Cond) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/instances"+seg(id), cond.header(), nil, nil)
	return err
}

// AddEvent injects a Spot interruption, a rebalance recommendation or a
// maintenance event into an instance's metadata.
func (c *Client) AddEvent(ctx context.Context, id string, ev adminapi.EventRequest) (*adminapi.InstanceRecord, error) {
	hdr, body, err := jsonBody(ev)
	if err != nil {
		return nil, err
	}
	var out adminapi.InstanceRecord
	if _, err := c.do(ctx, http.MethodPost, "/v1/instances"+seg(id)+"/events", hdr, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EndEvent moves an instance's maintenance event to history: verb is
// "cancel" or "complete".
func (c *Client) EndEvent(ctx context.Context, id, eventID, verb string) (*adminapi.InstanceRecord, error) {
	var out adminapi.InstanceRecord
	if _, err := c.do(ctx, http.MethodPost, "/v1/instances"+seg(id)+"/events"+seg(eventID)+"/"+verb, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RescheduleEvent moves an instance's maintenance event to start at notBefore.
func (c *Client) RescheduleEvent(ctx context.Context, id, eventID string, notBefore time.Time) (*adminapi.InstanceRecord, error) {
	hdr, body, err := jsonBody(adminapi.RescheduleRequest{NotBefore: notBefore.UTC().Format(time.RFC3339)})
	if err != nil {
		return nil, err
	}
	var out adminapi.InstanceRecord
	if _, err := c.do(ctx, http.MethodPost, "/v1/instances"+seg(id)+"/events"+seg(eventID)+"/reschedule", hdr, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ChangeState stops, starts or terminates an instance (adminapi.StateStop, ...).
func (c *Client) ChangeState(ctx context.Context, id, action string) (*adminapi.StateChange, error) {
	hdr, body, err := jsonBody(adminapi.StateRequest{Action: action})
	if err != nil {
		return nil, err
	}
	var out adminapi.StateChange
	if _, err := c.do(ctx, http.MethodPost, "/v1/instances"+seg(id)+"/state", hdr, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddFleetEvent injects one event into every instance a request selects.
func (c *Client) AddFleetEvent(ctx context.Context, req adminapi.FleetEventRequest) (*adminapi.FleetEventResult, error) {
	hdr, body, err := jsonBody(req)
	if err != nil {
		return nil, err
	}
	var out adminapi.FleetEventResult
	if _, err := c.do(ctx, http.MethodPost, "/v1/events", hdr, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ClearEvents removes an instance's Spot interruption, rebalance
// recommendation and maintenance events.
func (c *Client) ClearEvents(ctx context.Context, id string) (*adminapi.InstanceRecord, error) {
	var out adminapi.InstanceRecord
	if _, err := c.do(ctx, http.MethodDelete, "/v1/instances"+seg(id)+"/events", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// --- roles ---

// Roles lists the roles, sorted by name, without their secret keys.
func (c *Client) Roles(ctx context.Context) ([]adminapi.RoleRecord, error) {
	var out adminapi.RoleList
	_, err := c.do(ctx, http.MethodGet, "/v1/roles", nil, nil, &out)
	return out.Roles, err
}

// Role returns one role without its secret keys.
func (c *Client) Role(ctx context.Context, name string) (*adminapi.RoleRecord, error) {
	var out adminapi.RoleRecord
	if _, err := c.do(ctx, http.MethodGet, "/v1/roles"+seg(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutRole creates or replaces a role; created tells which.
func (c *Client) PutRole(ctx context.Context, name string, role *config.Role, cond Cond) (rec *adminapi.RoleRecord, created bool, err error) {
	// A role has YAML keys only: send it as YAML.
	body, err := yaml.Marshal(role)
	if err != nil {
		return nil, false, err
	}
	hdr := http.Header{"Content-Type": {"application/yaml"}}
	var out adminapi.RoleRecord
	status, err := c.do(ctx, http.MethodPut, "/v1/roles"+seg(name), merge(hdr, cond.header()), body, &out)
	if err != nil {
		return nil, false, err
	}
	return &out, status == http.StatusCreated, nil
}

// DeleteRole removes a role.
func (c *Client) DeleteRole(ctx context.Context, name string, cond Cond) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/roles"+seg(name), cond.header(), nil, nil)
	return err
}

// --- relays ---

// Relays lists the relays, sorted by name, without their secrets.
func (c *Client) Relays(ctx context.Context) ([]adminapi.RelayRecord, error) {
	var out adminapi.RelayList
	_, err := c.do(ctx, http.MethodGet, "/v1/relays", nil, nil, &out)
	return out.Relays, err
}

// PutRelay creates or replaces a relay. With a nil secret the server makes
// one and returns it, in this answer only.
func (c *Client) PutRelay(ctx context.Context, name string, addresses []string, secret []byte) (*adminapi.RelayRecord, error) {
	hdr, body, err := jsonBody(adminapi.RelayPut{Addresses: addresses, Secret: secret})
	if err != nil {
		return nil, err
	}
	var out adminapi.RelayRecord
	if _, err := c.do(ctx, http.MethodPut, "/v1/relays"+seg(name), hdr, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteRelay removes a relay.
func (c *Client) DeleteRelay(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/relays"+seg(name), nil, nil, nil)
	return err
}

// --- keys ---

// RotateTokenKey makes a new IMDSv2 token signing key. Tokens signed with
// the previous keys stay valid until they expire.
func (c *Client) RotateTokenKey(ctx context.Context) (*adminapi.TokenKeys, error) {
	var out adminapi.TokenKeys
	if _, err := c.do(ctx, http.MethodPost, "/v1/keys/token/rotate", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// OperatorKeys lists the operator keys, without their secrets.
func (c *Client) OperatorKeys(ctx context.Context) ([]adminapi.OperatorKey, error) {
	var out adminapi.OperatorKeyList
	_, err := c.do(ctx, http.MethodGet, "/v1/keys/operator", nil, nil, &out)
	return out.Keys, err
}

// AddOperatorKey makes a new operator key. Its secret is in this answer only.
func (c *Client) AddOperatorKey(ctx context.Context) (*adminapi.OperatorKey, error) {
	var out adminapi.OperatorKey
	if _, err := c.do(ctx, http.MethodPost, "/v1/keys/operator", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeOperatorKey removes an operator key; every replica refuses it soon after.
func (c *Client) RevokeOperatorKey(ctx context.Context, accessKeyID string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/keys/operator"+seg(accessKeyID), nil, nil, nil)
	return err
}

// --- migration ---

// Migration returns the fleet's IMDSv2 migration view.
func (c *Client) Migration(ctx context.Context) (*migration.View, error) {
	var out migration.View
	if _, err := c.do(ctx, http.MethodGet, "/v1/migration", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MigrationInstance returns one instance's verdict and callers.
func (c *Client) MigrationInstance(ctx context.Context, id string) (*migration.Instance, error) {
	var out migration.Instance
	if _, err := c.do(ctx, http.MethodGet, "/v1/migration"+seg(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MigrationEnforce requires tokens on ready instances; see migration.Service.
func (c *Client) MigrationEnforce(ctx context.Context, req migration.EnforceRequest) (*migration.EnforceResult, error) {
	hdr, body, err := jsonBody(req)
	if err != nil {
		return nil, err
	}
	var out migration.EnforceResult
	if _, err := c.do(ctx, http.MethodPost, "/v1/migration/enforce", hdr, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UILogin mints a one-time login to the web page; see adminapi.UILogin.
func (c *Client) UILogin(ctx context.Context) (*adminapi.UILogin, error) {
	var out adminapi.UILogin
	if _, err := c.do(ctx, http.MethodPost, "/v1/ui/login", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
