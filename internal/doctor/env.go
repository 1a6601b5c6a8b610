package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/imds/imds/internal/imdsclient"
)

// Environment variables that change what the SDKs do with IMDS.
const (
	imdsEnvDisabled   = "AWS_EC2_METADATA_DISABLED"
	imdsEnvV1Disabled = "AWS_EC2_METADATA_V1_DISABLED"
)

// envFacts is what the environment tells the SDKs about IMDS.
type envFacts struct {
	endpoint    imdsclient.Endpoint // what doctor probes
	sdkEndpoint imdsclient.Endpoint // what the SDKs use
	endpointErr error               // the variables are invalid

	disabled      bool
	v1Disabled    bool
	v1DisabledErr string
}

func readEnv(o *Options) envFacts {
	var e envFacts
	e.sdkEndpoint, e.endpointErr = imdsclient.ResolveEndpoint("", false, o.getenv)
	if e.endpointErr != nil {
		// The SDKs fail; probe the default endpoint to diagnose the rest.
		e.sdkEndpoint = imdsclient.Endpoint{URL: imdsclient.IPv4Endpoint, Source: "default"}
	}
	e.endpoint = e.sdkEndpoint
	if o.Endpoint != "" || o.IPv6 {
		if ep, err := imdsclient.ResolveEndpoint(o.Endpoint, o.IPv6, o.getenv); err == nil {
			e.endpoint = ep
		}
	}
	// The Go SDK and botocore both compare with "true" ignoring case.
	e.disabled = strings.EqualFold(o.getenv(imdsEnvDisabled), "true")
	switch v := o.getenv(imdsEnvV1Disabled); {
	case strings.EqualFold(v, "true"):
		e.v1Disabled = true
	case v == "", strings.EqualFold(v, "false"):
	default:
		e.v1DisabledErr = fmt.Sprintf("%s=%q: the Go SDK refuses to load its configuration unless it is true or false (botocore reads it as false)", imdsEnvV1Disabled, v)
	}
	return e
}

func (r *run) checkDisabled() Check {
	c := Check{ID: "env-disabled"}
	v, set := r.o.LookupEnv(imdsEnvDisabled)
	switch {
	case r.env.disabled:
		c.Status = Fail
		c.Message = imdsEnvDisabled + "=" + v + ": SDKs send no IMDS request at all, so no instance role credentials and no region from IMDS"
		c.Fix = "unset " + imdsEnvDisabled
	case set:
		c.Status, c.Message = Pass, imdsEnvDisabled+"="+v+": SDKs use IMDS"
	default:
		c.Status, c.Message = Pass, imdsEnvDisabled+" is not set: SDKs use IMDS"
	}
	return c
}

func (r *run) checkEndpointEnv() Check {
	c := Check{ID: "env-endpoint", Data: map[string]any{"sdk-endpoint": r.env.sdkEndpoint.URL}}
	ep := r.env.sdkEndpoint
	switch {
	case r.env.endpointErr != nil:
		c.Status = Fail
		c.Message = r.env.endpointErr.Error() + ": the Go SDK and botocore refuse it and read no metadata"
		if strings.HasPrefix(r.env.endpointErr.Error(), imdsclient.EnvEndpointMode) {
			c.Fix = "export " + imdsclient.EnvEndpointMode + "=IPv4 (or IPv6), or unset it"
		} else {
			c.Fix = "export " + imdsclient.EnvEndpoint + "=http://HOST[:PORT] (a base URL), or unset it"
		}
	case ep.Source == imdsclient.EnvEndpoint && r.o.getenv(imdsclient.EnvEndpointMode) != "":
		c.Status = Warn
		c.Message = fmt.Sprintf("SDKs use %s from %s, which overrides %s=%s", ep.URL, imdsclient.EnvEndpoint, imdsclient.EnvEndpointMode, r.o.getenv(imdsclient.EnvEndpointMode))
		c.Fix = "unset one of " + imdsclient.EnvEndpoint + " and " + imdsclient.EnvEndpointMode
	case ep.Source == "default":
		c.Status, c.Message = Pass, "SDKs use "+ep.URL+" (the default)"
	default:
		c.Status, c.Message = Pass, "SDKs use "+ep.URL+" ("+ep.Source+")"
	}
	if r.env.endpoint.URL != ep.URL {
		c.Message += "; probing " + r.env.endpoint.URL + " (" + r.env.endpoint.Source + ") instead"
	}
	return c
}

// getenvAny returns the first non-empty variable of names, as the Go SDK's
// proxy resolution does (upper case first).
func (o *Options) getenvAny(names ...string) (string, string) {
	for _, n := range names {
		if v := o.getenv(n); v != "" {
			return n, v
		}
	}
	return "", ""
}

// checkProxy tells whether the SDKs send IMDS requests through an HTTP
// proxy. The Go SDK's IMDS client uses http.ProxyFromEnvironment; botocore
// passes urllib's proxies to its IMDS session unless urllib's no_proxy check
// bypasses the endpoint. A proxy forwards the request from its own host:
// the answer is that host's metadata, or none.
func (r *run) checkProxy() Check {
	c := Check{ID: "env-proxy"}
	u, err := url.Parse(r.env.sdkEndpoint.URL)
	if err != nil {
		c.Status, c.Message = Skip, "no valid endpoint"
		return c
	}
	goProxy := goProxies(&r.o, u)
	pyProxy := pythonProxies(&r.o, u)
	var who []string
	proxy := ""
	if goProxy != "" {
		who, proxy = append(who, "the Go SDK"), goProxy
	}
	if pyProxy != "" {
		who, proxy = append(who, "botocore (boto3, the AWS CLI)"), pyProxy
	}
	c.Data = map[string]any{"go-sdk-proxy": goProxy, "botocore-proxy": pyProxy}
	proxyVars := []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"}
	var set []string
	for _, k := range proxyVars {
		if r.o.getenv(k) != "" {
			set = append(set, k)
		}
	}
	if len(who) == 0 {
		c.Status = Pass
		if len(set) == 0 {
			c.Message = "no HTTP proxy variables"
		} else {
			c.Message = strings.Join(set, ", ") + " set, and no proxy applies to " + u.Host
		}
		return c
	}
	c.Status = Fail
	c.Message = fmt.Sprintf("%s send IMDS requests to the proxy %s (from %s), because NO_PROXY does not name %s: the proxy answers with its own host's metadata and credentials, or not at all",
		strings.Join(who, " and "), proxy, strings.Join(set, ", "), u.Hostname())
	_, noProxy := r.o.getenvAny("NO_PROXY", "no_proxy")
	entries := []string{}
	if noProxy != "" {
		entries = append(entries, noProxy)
	}
	for _, h := range bypassEntries(u) {
		if !strings.Contains(","+noProxy+",", ","+h+",") {
			entries = append(entries, h)
		}
	}
	list := strings.Join(entries, ",")
	c.Fix = fmt.Sprintf("export NO_PROXY=%s no_proxy=%s (botocore matches names, not CIDR blocks, and wants IPv6 addresses in brackets; the Go SDK wants them bare)", list, list)
	return c
}

// bypassEntries are the NO_PROXY entries that make both the Go SDK and
// botocore bypass the proxy for u, and for EC2's other IMDS address.
func bypassEntries(u *url.URL) []string {
	hosts := []string{u.Hostname()}
	switch u.Hostname() {
	case "169.254.169.254":
		hosts = append(hosts, "fd00:ec2::254")
	case "fd00:ec2::254":
		hosts = append([]string{"169.254.169.254"}, hosts...)
	}
	var out []string
	for _, h := range hosts {
		out = append(out, h)
		if strings.Contains(h, ":") {
			out = append(out, "["+h+"]")
		}
	}
	return out
}

// goProxies is the proxy the Go SDK's IMDS client uses for u, or "": the
// rules of http.ProxyFromEnvironment (golang.org/x/net/http/httpproxy),
// upper-case variables first.
func goProxies(o *Options, u *url.URL) string {
	var proxy string
	switch u.Scheme {
	case "http":
		_, proxy = o.getenvAny("HTTP_PROXY", "http_proxy")
	case "https":
		_, proxy = o.getenvAny("HTTPS_PROXY", "https_proxy")
	}
	if proxy == "" {
		return ""
	}
	_, noProxy := o.getenvAny("NO_PROXY", "no_proxy")
	if goBypass(u, noProxy) {
		return ""
	}
	if p, err := url.Parse(proxy); err != nil || (p.Scheme != "http" && p.Scheme != "https" && p.Scheme != "socks5") {
		return "http://" + proxy
	}
	return proxy
}

// goBypass is httpproxy's useProxy, negated: loopback and localhost never
// go through a proxy; NO_PROXY entries are "*", CIDR blocks, IP addresses
// (IPv6 bare or in brackets with a port), and domains that match
// themselves and their subdomains, each with an optional port.
func goBypass(u *url.URL, noProxy string) bool {
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ip, _ := netip.ParseAddr(host)
	if host == "localhost" || (ip.IsValid() && ip.IsLoopback()) {
		return true
	}
	for entry := range strings.SplitSeq(noProxy, ",") {
		entry = strings.ToLower(strings.TrimSpace(entry))
		if entry == "" {
			continue
		}
		if entry == "*" {
			return true
		}
		if pfx, err := netip.ParsePrefix(entry); err == nil {
			if ip.IsValid() && pfx.Contains(ip) {
				return true
			}
			continue
		}
		eHost, ePort, err := net.SplitHostPort(entry)
		if err != nil {
			eHost, ePort = entry, ""
		}
		portOK := ePort == "" || ePort == port
		if eip, err := netip.ParseAddr(eHost); err == nil {
			if ip.IsValid() && eip == ip && portOK {
				return true
			}
			continue
		}
		if eHost == "" {
			continue
		}
		eHost = strings.TrimPrefix(eHost, "*")
		matchHost := eHost[0] != '.'
		if matchHost {
			eHost = "." + eHost
		}
		if (strings.HasSuffix(host, eHost) || (matchHost && host == eHost[1:])) && portOK {
			return true
		}
	}
	return false
}

// pythonProxies is the proxy botocore's IMDS session uses for u, or "":
// urllib.request.getproxies_environment (lower case wins over upper case)
// and proxy_bypass_environment (names and suffixes, no CIDR blocks), and
// botocore takes the proxy of u's scheme.
func pythonProxies(o *Options, u *url.URL) string {
	get := func(name string) (string, bool) {
		if v, ok := o.LookupEnv(strings.ToLower(name)); ok {
			return v, v != ""
		}
		v, _ := o.LookupEnv(strings.ToUpper(name))
		return v, v != ""
	}
	proxy, ok := get(u.Scheme + "_proxy")
	if !ok || (u.Scheme == "http" && o.getenv("REQUEST_METHOD") != "") {
		return ""
	}
	noProxy, _ := get("no_proxy")
	if pythonBypass(strings.ToLower(u.Host), noProxy) {
		return ""
	}
	return proxy
}

// pythonBypass is urllib.request.proxy_bypass_environment.
func pythonBypass(host, noProxy string) bool {
	if noProxy == "" {
		return false
	}
	if noProxy == "*" {
		return true
	}
	hostOnly := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		hostOnly = host[:i]
	}
	for name := range strings.SplitSeq(noProxy, ",") {
		name = strings.ToLower(strings.TrimLeft(strings.TrimSpace(name), "."))
		if name == "" {
			continue
		}
		if hostOnly == name || host == name || strings.HasSuffix(hostOnly, "."+name) || strings.HasSuffix(host, "."+name) {
			return true
		}
	}
	return false
}

func (r *run) checkRegionEnv() Check {
	c := Check{ID: "env-region"}
	instance := r.inst.region()
	if instance == "" && r.inst.zone != "" {
		instance = zoneRegion(r.inst.zone)
	}
	prof := r.profile()
	var set, differ []string
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if v := r.o.getenv(k); v != "" {
			set = append(set, k+"="+v)
			if instance != "" && v != instance {
				differ = append(differ, k+"="+v)
			}
		}
	}
	if v := prof.get("region"); v != "" {
		set = append(set, "region = "+v+" in profile "+prof.name)
		if instance != "" && v != instance {
			differ = append(differ, "region = "+v+" in profile "+prof.name)
		}
	}
	c.Data = map[string]any{"instance-region": instance}
	switch {
	case len(differ) > 0:
		c.Status = Warn
		c.Message = strings.Join(differ, ", ") + " but the instance is in " + instance + ": SDK calls go to the other region (fine if meant)"
		c.Fix = "export AWS_REGION=" + instance + " AWS_DEFAULT_REGION=" + instance
	case len(set) > 0:
		c.Status = Pass
		c.Message = strings.Join(set, ", ")
		if instance != "" {
			c.Message += ": the instance's region"
		}
	case instance == "":
		c.Status = Warn
		c.Message = "no region in the environment or the shared config, and none from IMDS: SDKs fail with a missing-region error"
		c.Fix = "export AWS_REGION=REGION AWS_DEFAULT_REGION=REGION"
	default:
		c.Status = Warn
		c.Message = "no region in the environment or the shared config: botocore, the AWS CLI and the Java SDK take " + instance + " from IMDS, but the Go SDK (without config.WithEC2IMDSRegion) and the JavaScript SDK v3 fail with a missing-region error"
		c.Fix = "export AWS_REGION=" + instance + " AWS_DEFAULT_REGION=" + instance
	}
	return c
}
