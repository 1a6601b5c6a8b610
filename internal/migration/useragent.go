package migration

import "strings"

// SDK names a User-Agent is parsed into.
const (
	SDKGoV2      = "aws-sdk-go-v2"
	SDKGo        = "aws-sdk-go"
	SDKBotocore  = "botocore"
	SDKCLI       = "aws-cli"
	SDKJava      = "aws-sdk-java"
	SDKJS        = "aws-sdk-js"
	SDKCloudInit = "cloud-init"
	SDKCurl      = "curl"
	SDKOther     = "other"
)

// products maps a User-Agent product name (lower case) to its SDK, in the
// order they are looked for: the AWS CLI's User-Agent also names botocore,
// and boto3's names botocore too.
var products = []struct{ product, sdk string }{
	{"aws-cli", SDKCLI},
	{"aws-sdk-go-v2", SDKGoV2},
	{"aws-sdk-go", SDKGo},
	{"aws-sdk-java", SDKJava},
	{"aws-sdk-js", SDKJS},
	{"aws-sdk-nodejs", SDKJS},
	{"cloud-init", SDKCloudInit},
	{"boto3", SDKBotocore},
	{"botocore", SDKBotocore},
	{"curl", SDKCurl},
}

// ParseUserAgent returns the SDK or tool that a User-Agent names, and its
// version ("" when it names none).
func ParseUserAgent(ua string) (sdk, version string) {
	lower := strings.ToLower(ua)
	for _, p := range products {
		if v, ok := productVersion(lower, ua, p.product); ok {
			return p.sdk, v
		}
	}
	return SDKOther, ""
}

// productVersion finds "product/version" at the start of a space-separated
// token of lower (ua in lower case) and returns the version as ua has it.
func productVersion(lower, ua, product string) (string, bool) {
	for from := 0; from < len(lower); {
		i := strings.Index(lower[from:], product+"/")
		if i < 0 {
			return "", false
		}
		i += from
		if i == 0 || lower[i-1] == ' ' {
			v := ua[i+len(product)+1:]
			if j := strings.IndexAny(v, " ;()"); j >= 0 {
				v = v[:j]
			}
			return v, true
		}
		from = i + 1
	}
	return "", false
}
