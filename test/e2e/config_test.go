package e2e

import (
	"strings"
	"testing"
)

// The web-1 instance: the README's example config. Tests change one option
// at a time with webConfig.
const (
	webInstanceID = "i-0a1b2c3d4e5f60718"
	webAccountID  = "123456789012"
	webAMI        = "ami-0123456789abcdef0"
	webAZ         = "ap-northeast-1a"
	webRegion     = "ap-northeast-1"
	webLocalIPv4  = "10.0.0.12"
	webMAC        = "0e:12:34:56:78:9a"
	webRole       = "bedrock-ui-ec2-role"
	webKeyName    = "my-key"
	webKey        = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7x user@host"
	webUserData   = "#!/bin/bash\necho hello\n"

	testAccessKeyID     = "AKIAIOSFODNN7EXAMPLE"
	testSecretAccessKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

const webConfigYAML = `default-instance: i-0a1b2c3d4e5f60718   # optional: serves callers matching no address
instances:
  - instance-id: i-0a1b2c3d4e5f60718
    addresses: [127.0.0.1]
    account-id: "123456789012"
    ami-id: ami-0123456789abcdef0
    instance-type: t3.micro
    availability-zone: ap-northeast-1a
    local-ipv4: 10.0.0.12
    public-ipv4: 203.0.113.10
    mac: 0e:12:34:56:78:9a
    hostname: ip-10-0-0-12.ap-northeast-1.compute.internal
    security-groups: [web]
    public-keys: {my-key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7x user@host"}
    user-data: |
      #!/bin/bash
      echo hello
    tags: {Name: web-1, Env: prod}
    iam-role: bedrock-ui-ec2-role
    metadata-options:
      http-tokens: required
      http-put-response-hop-limit: 2
      http-endpoint: enabled
      http-protocol-ipv6: disabled
      instance-metadata-tags: enabled
roles:
  bedrock-ui-ec2-role:
    static: {access-key-id: AKIAIOSFODNN7EXAMPLE, secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}
`

// webOptions are the metadata options of web-1 that tests vary.
type webOptions struct {
	HTTPTokens   string // "required" (default) or "optional"
	HTTPEndpoint string // "enabled" (default) or "disabled"
	HopLimit     string // "2" (default)
}

// webConfig is webConfigYAML with the given options.
func webConfig(t *testing.T, o webOptions) string {
	t.Helper()
	cfg := webConfigYAML
	replace := func(key, from, to string) {
		if to == "" {
			return
		}
		old := key + ": " + from + "\n"
		if !strings.Contains(cfg, old) {
			t.Fatalf("webConfigYAML has no %q", old)
		}
		cfg = strings.Replace(cfg, old, key+": "+to+"\n", 1)
	}
	replace("http-tokens", "required", o.HTTPTokens)
	replace("http-endpoint", "enabled", o.HTTPEndpoint)
	replace("http-put-response-hop-limit", "2", o.HopLimit)
	return cfg
}

// The second instance of twoInstanceConfig, called from 127.0.0.2.
const (
	dbInstanceID = "i-0fedcba9876543210"
	dbAddress    = "127.0.0.2"
)

// twoInstanceConfig has web-1 at 127.0.0.1 and db-1 at 127.0.0.2, both
// with tokens optional, and no default instance: any other caller is
// unknown.
const twoInstanceConfig = `instances:
  - instance-id: i-0a1b2c3d4e5f60718
    addresses: [127.0.0.1]
    account-id: "123456789012"
    ami-id: ami-0123456789abcdef0
    instance-type: t3.micro
    availability-zone: ap-northeast-1a
    local-ipv4: 10.0.0.12
    mac: 0e:12:34:56:78:9a
    iam-role: bedrock-ui-ec2-role
  - instance-id: i-0fedcba9876543210
    addresses: [127.0.0.2]
    account-id: "123456789012"
    ami-id: ami-0123456789abcdef0
    instance-type: m5.large
    availability-zone: eu-west-1b
    local-ipv4: 10.1.0.20
    mac: 0e:12:34:56:78:9b
roles:
  bedrock-ui-ec2-role:
    static: {access-key-id: AKIAIOSFODNN7EXAMPLE, secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}
`

// The built-in demo instance served by `imds serve` without --config.
const (
	demoInstanceID = "i-0123456789abcdef0"
	demoAccountID  = "123456789012"
	demoAMI        = "ami-0123456789abcdef0"
	demoType       = "t3.micro"
	demoAZ         = "us-east-1a"
	demoRegion     = "us-east-1"
	demoLocalIPv4  = "10.0.0.10"
	demoMAC        = "0e:00:00:00:00:01"
	demoRole       = "imds-demo-role"
	demoUserData   = "#!/bin/bash\necho \"hello from imds\"\n"
	demoTagName    = "imds-demo"
)
