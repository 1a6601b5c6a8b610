package imdsclient

import (
	"fmt"
	"net/url"
	"strings"
)

// The IMDS endpoints of EC2, as the AWS SDKs spell them.
const (
	IPv4Endpoint = "http://169.254.169.254"
	IPv6Endpoint = "http://[fd00:ec2::254]"
)

// The environment variables that choose the endpoint in every AWS SDK.
const (
	EnvEndpoint     = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
	EnvEndpointMode = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"
)

// Endpoint is a resolved IMDS base URL and what chose it.
type Endpoint struct {
	URL string
	// Source is what chose URL: "--endpoint", "--ipv6", EnvEndpoint,
	// EnvEndpointMode+"=IPv6" or "default".
	Source string
}

// ResolveEndpoint picks the endpoint as the SDKs do, with the command line
// first: flag (a full URL), else EnvEndpoint, else IPv6 mode (the ipv6 flag
// or EnvEndpointMode=IPv6, any case) gives IPv6Endpoint, else IPv4Endpoint.
// An endpoint that is not an absolute http or https URL, or a mode other than
// IPv4 or IPv6, is an error, as it is in the Go SDK and botocore.
func ResolveEndpoint(flag string, ipv6 bool, getenv func(string) string) (Endpoint, error) {
	if flag != "" {
		if err := checkURL(flag); err != nil {
			return Endpoint{}, fmt.Errorf("--endpoint: %w", err)
		}
		return Endpoint{strings.TrimRight(flag, "/"), "--endpoint"}, nil
	}
	if v := getenv(EnvEndpoint); v != "" {
		if err := checkURL(v); err != nil {
			return Endpoint{}, fmt.Errorf("%s: %w", EnvEndpoint, err)
		}
		return Endpoint{strings.TrimRight(v, "/"), EnvEndpoint}, nil
	}
	if ipv6 {
		return Endpoint{IPv6Endpoint, "--ipv6"}, nil
	}
	mode := getenv(EnvEndpointMode)
	switch {
	case mode == "", strings.EqualFold(mode, "IPv4"):
		return Endpoint{IPv4Endpoint, "default"}, nil
	case strings.EqualFold(mode, "IPv6"):
		return Endpoint{IPv6Endpoint, EnvEndpointMode + "=" + mode}, nil
	}
	return Endpoint{}, fmt.Errorf("%s=%q: want IPv4 or IPv6", EnvEndpointMode, mode)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}
