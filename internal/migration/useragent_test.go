package migration

import (
	"testing"
	"unicode/utf8"
)

func TestParseUserAgent(t *testing.T) {
	tests := []struct{ ua, sdk, version string }{
		{"aws-sdk-go-v2/1.30.3 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/ec2imds#1.16.11", SDKGoV2, "1.30.3"},
		{"aws-sdk-go/1.44.0 (go1.20; linux; amd64)", SDKGo, "1.44.0"},
		{"Botocore/1.31.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7", SDKBotocore, "1.31.0"},
		{"Boto3/1.28.0 md/Botocore#1.31.0 ua/2.0 os/linux#6.1 Botocore/1.31.0", SDKBotocore, "1.28.0"},
		{"aws-cli/1.45.0 md/Botocore#1.40.0 ua/2.1 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy botocore/1.40.0", SDKCLI, "1.45.0"},
		{"aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.debian.12", SDKCLI, "2.15.0"},
		{"aws-sdk-java/2.20.0 Linux/6.1 OpenJDK_64-Bit_Server_VM/17", SDKJava, "2.20.0"},
		{"aws-sdk-nodejs/2.1400.0 linux/v20.20.2", SDKJS, "2.1400.0"},
		{"aws-sdk-js/3.400.0 ua/2.0 os/linux#6.1 lang/js md/nodejs#20.20.2", SDKJS, "3.400.0"},
		{"Cloud-Init/22.4.2", SDKCloudInit, "22.4.2"},
		{"curl/7.88.1", SDKCurl, "7.88.1"},
		{"Go-http-client/1.1", SDKOther, ""},
		{"", SDKOther, ""},
		{"xaws-cli/1.0 notcurl/1", SDKOther, ""},
	}
	for _, tc := range tests {
		sdk, v := ParseUserAgent(tc.ua)
		if sdk != tc.sdk || v != tc.version {
			t.Errorf("ParseUserAgent(%q) = %s %q, want %s %q", tc.ua, sdk, v, tc.sdk, tc.version)
		}
	}
}

func FuzzParseUserAgent(f *testing.F) {
	for _, s := range []string{"aws-sdk-go-v2/1.30.3 os/linux", "Botocore/1.31.0", "curl/", "aws-cli/", "a/b c/d", "\xff/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ua string) {
		sdk, v := ParseUserAgent(ua)
		if sdk == "" {
			t.Fatal("empty sdk")
		}
		if len(v) > len(ua) {
			t.Fatalf("version %q longer than the User-Agent %q", v, ua)
		}
		if utf8.ValidString(ua) && !utf8.ValidString(v) {
			t.Fatalf("version %q of a valid User-Agent is not valid UTF-8", v)
		}
	})
}
