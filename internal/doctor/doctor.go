// Package doctor diagnoses instance metadata from where an application runs:
// can the AWS SDKs here reach IMDS, get a token, find a role, fresh
// credentials and a region, and does the environment change what they do.
// Each check ends in a verdict and, for a problem, the exact fix.
//
// It talks to EC2 and to imds alike, and sends what an SDK sends: a token
// request and IMDSv2 reads. To learn whether IMDSv1 is allowed it sends one
// request without a token to /latest/meta-data/; on EC2 that request counts in
// the MetadataNoToken (or MetadataNoTokenRejected) metric.
package doctor

import (
	"context"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/imds/imds/internal/imdsclient"
)

// Status is a check's verdict.
type Status string

// Verdicts. Only Fail makes a report fail: a warning is a risk or a choice
// worth a second look, a skip a check that had nothing to examine.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Check is the outcome of one check.
type Check struct {
	ID      string `json:"id"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Fix is the setting, command or environment change that solves a
	// problem; empty when there is none.
	Fix string `json:"fix,omitempty"`
	// Data holds the facts the verdict rests on, for scripts.
	Data map[string]any `json:"data,omitempty"`
}

// Report is every check, in the order they are shown.
type Report struct {
	// OK says no check failed.
	OK bool `json:"ok"`
	// Endpoint is the IMDS base URL the SDKs here use, and the one probed
	// for tokens, role and credentials.
	Endpoint  string    `json:"endpoint"`
	Container Container `json:"container"`
	Checks    []Check   `json:"checks"`
}

// Container says whether doctor runs in a container, and what showed it.
type Container struct {
	Detected bool   `json:"detected"`
	Evidence string `json:"evidence,omitempty"`
}

// Options configure Run. The zero value diagnoses the real environment.
type Options struct {
	// Endpoint, when set, is probed instead of the endpoint the
	// environment selects (the --endpoint flag).
	Endpoint string
	// IPv6 selects the IPv6 endpoint, as the --ipv6 flag does.
	IPv6 bool
	// NoToken probes as an SDK without IMDSv2 support does: no token.
	NoToken bool
	// ConnectTimeout and AnswerTimeout bound each request; zero means the
	// imdsclient defaults. A token answer that does not come within
	// AnswerTimeout while a request without a token is answered is the
	// hop-limit problem.
	ConnectTimeout, AnswerTimeout time.Duration

	// The rest is the world as doctor sees it; tests replace it.

	// IPv4Endpoint and IPv6Endpoint are EC2's endpoints; empty means
	// imdsclient.IPv4Endpoint and imdsclient.IPv6Endpoint.
	IPv4Endpoint, IPv6Endpoint string
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Now is the local clock; nil means time.Now.
	Now func() time.Time
	// Transport carries requests; nil means imdsclient.NewTransport.
	Transport http.RoundTripper
	// ReadFile and Readlink read the file system (container detection,
	// shared AWS config files); nil means the os functions.
	ReadFile func(string) ([]byte, error)
	Readlink func(string) (string, error)
}

func (o *Options) setDefaults() {
	if o.IPv4Endpoint == "" {
		o.IPv4Endpoint = imdsclient.IPv4Endpoint
	}
	if o.IPv6Endpoint == "" {
		o.IPv6Endpoint = imdsclient.IPv6Endpoint
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transport == nil {
		o.Transport = imdsclient.NewTransport(o.ConnectTimeout, o.AnswerTimeout)
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Readlink == nil {
		o.Readlink = os.Readlink
	}
	if o.AnswerTimeout == 0 {
		o.AnswerTimeout = imdsclient.DefaultAnswerTimeout
	}
}

func (o *Options) getenv(k string) string {
	v, _ := o.LookupEnv(k)
	return v
}

// run is the state of one diagnosis.
type run struct {
	o         Options
	env       envFacts
	primary   *probe // the endpoint the SDKs use
	v4, v6    *probe // EC2's endpoints; one of them may be primary
	container Container
	inst      instanceFacts
}

// Run diagnoses IMDS and returns the report. It does not fail: what goes
// wrong is a check's verdict.
func Run(ctx context.Context, o Options) *Report {
	o.setDefaults()
	r := &run{o: o}
	r.env = readEnv(&r.o)
	r.container = detectContainer(&r.o)

	r.v4 = newProbe(o.IPv4Endpoint, "IPv4")
	r.v6 = newProbe(o.IPv6Endpoint, "IPv6")
	probes := []*probe{r.v4, r.v6}
	switch r.env.endpoint.URL {
	case imdsclient.IPv4Endpoint, o.IPv4Endpoint:
		r.primary = r.v4
	case imdsclient.IPv6Endpoint, o.IPv6Endpoint:
		r.primary = r.v6
	default:
		r.primary = newProbe(r.env.endpoint.URL, "")
		probes = append(probes, r.primary)
	}
	r.primary.primary = true

	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() { p.run(ctx, &r.o) })
	}
	wg.Wait()

	r.inst = readInstance(ctx, r)

	checks := []Check{
		r.checkDisabled(),
		r.checkEndpointEnv(),
		r.checkProxy(),
	}
	if r.primary != r.v4 && r.primary != r.v6 {
		checks = append(checks, r.checkEndpoint("endpoint", r.primary))
	}
	checks = append(checks,
		r.checkEndpoint("endpoint-ipv4", r.v4),
		r.checkEndpoint("endpoint-ipv6", r.v6),
		r.checkToken(),
		r.checkHopLimit(),
		r.checkIMDSv1(),
		r.checkRole(),
		r.checkCredentials(),
		r.checkClock(),
		r.checkRegion(),
		r.checkRegionEnv(),
		r.checkCredentialChain(),
	)
	rep := &Report{OK: true, Endpoint: r.primary.url, Container: r.container, Checks: checks}
	for _, c := range checks {
		if c.Status == Fail {
			rep.OK = false
		}
	}
	return rep
}
