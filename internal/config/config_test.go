package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestIssueExampleLoads(t *testing.T) {
	c, err := Load("testdata/issue-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := c.Instances[0]
	if got, want := string(in.UserDataBytes()), "#!/bin/bash\necho hello\n"; got != want {
		t.Errorf("user data %q, want %q", got, want)
	}
	if in.MetadataOptions.HTTPPutResponseHopLimit != 2 || in.MetadataOptions.HTTPTokens != "required" {
		t.Errorf("metadata options %+v", in.MetadataOptions)
	}
	if v, _ := in.Tags.Get("Env"); v != "prod" {
		t.Errorf("tag Env = %q, want prod", v)
	}
	if len(in.Tags) != 2 || in.Tags[0].Key != "Name" {
		t.Errorf("tags %v: want the file's order", in.Tags)
	}
}

const base = `instances:
  - instance-id: i-0a1b2c3d4e5f60718
    addresses: [10.0.0.1]
`

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear in the error
	}{
		{"negative rate", base + "rate-limit: {requests-per-second: -1}\n",
			[]string{"line 4", "rate-limit.requests-per-second", `"-1"`, "want 0 (no limit) or more"}},
		{"negative burst", base + "rate-limit:\n  requests-per-second: 10\n  burst: -2\n",
			[]string{"line 6", "rate-limit.burst", `"-2"`}},
		{"rate limit response", base + "rate-limit: {requests-per-second: 10, response: 418}\n",
			[]string{"rate-limit.response", `"418"`, "want 429, 503 or drop"}},
		{"hop limit 0", base + "    metadata-options: {http-put-response-hop-limit: 0}\n",
			[]string{"line 4", "instances[0].metadata-options.http-put-response-hop-limit", `"0"`, "want 1 to 64"}},
		{"hop limit 65", base + "    metadata-options:\n      http-put-response-hop-limit: 65\n",
			[]string{"line 5", `"65"`, "want 1 to 64"}},
		{"hop limit not a number", base + "    metadata-options: {http-put-response-hop-limit: two}\n",
			[]string{"line 4", "two"}},
		{"http tokens", base + "    metadata-options: {http-tokens: sometimes}\n",
			[]string{"http-tokens", `"sometimes"`, "optional, required"}},
		{"http endpoint", base + "    metadata-options: {http-endpoint: on}\n",
			[]string{"http-endpoint", `"on"`, "enabled, disabled"}},
		{"ipv6", base + "    metadata-options: {http-protocol-ipv6: yes}\n",
			[]string{"http-protocol-ipv6"}},
		{"unknown key", base + "    instance-typo: t3.micro\n",
			[]string{"line 4", "instance-typo"}},
		{"unknown option", base + "    metadata-options: {http-token: required}\n",
			[]string{"line 4", "http-token"}},
		{"duplicate id", base + "  - instance-id: i-0a1b2c3d4e5f60718\n",
			[]string{"line 4", "instances[1].instance-id", "duplicate"}},
		{"duplicate address", base + "  - instance-id: i-0b1b2c3d4e5f60718\n    addresses: [10.0.0.1]\n",
			[]string{"line 5", "instances[1].addresses[0]", `"10.0.0.1"`, "already an address of i-0a1b2c3d4e5f60718"}},
		{"bad address", base + "  - instance-id: i-0b1b2c3d4e5f60718\n    addresses: [10.0.0.300]\n",
			[]string{"instances[1].addresses[0]", "not an IP address"}},
		{"tag key with space", base + "    metadata-options: {instance-metadata-tags: enabled}\n    tags: {\"my tag\": x}\n",
			[]string{"line 5", "tags.my tag", "may use only"}},
		{"tag key _index", base + "    metadata-options: {instance-metadata-tags: enabled}\n    tags: {_index: x}\n",
			[]string{"_index"}},
		{"tag key slash", base + "    metadata-options: {instance-metadata-tags: enabled}\n    tags: {a/b: x}\n",
			[]string{"a/b"}},
		{"aws tag prefix", base + "    tags: {\"aws:x\": y}\n",
			[]string{"reserved"}},
		{"bad instance id", "instances:\n  - instance-id: web-1\n",
			[]string{"line 2", `"web-1"`, "not an instance id"}},
		{"missing role", base + "    iam-role: nope\n",
			[]string{"iam-role", `"nope"`, "no such role"}},
		{"role without source", base + "roles:\n  r: {}\n",
			[]string{"roles.r", "source"}},
		{"az and region disagree", base + "    availability-zone: us-east-1a\n    region: eu-west-1\n",
			[]string{"region", "eu-west-1", "not in it"}},
		{"no instances", "instances: []\n", []string{"at least one instance"}},
		{"default instance unknown", base + "default-instance: i-0ccccccccccccccc0\n", []string{"default-instance", "no instance"}},
		{"spot without action", base + "    spot: {time: \"2026-01-01T00:00:00Z\"}\n", []string{"spot.action", "required"}},
		{"bad time", base + "    launch-time: yesterday\n", []string{"launch-time", "RFC 3339"}},
		{"bad lifecycle state", base + "    target-lifecycle-state: Sleeping\n", []string{"target-lifecycle-state", `"Sleeping"`, "Warmed:Hibernated"}},
		{"bad event deadline", base + "    maintenance-events: [{code: system-reboot, not-before: \"2026-01-01T00:00:00Z\", not-before-deadline: soon}]\n",
			[]string{"not-before-deadline", "RFC 3339"}},
		{"user data too large", base + "    user-data: \"" + strings.Repeat("x", 16385) + "\"\n", []string{"16385 bytes", "16384"}},
		{"not yaml", "instances: [", []string{"did not find expected"}},
		{"migration window not a duration", base + "migration: {window: 1 day}\n", []string{"line 4", "migration.window", `"1 day"`, "at least 1m0s"}},
		{"migration window too short", base + "migration:\n  window: 30s\n", []string{"line 5", "migration.window", `"30s"`}},
		{"migration fallback window", base + "migration: {fallback-window: \"-1s\"}\n", []string{"migration.fallback-window", `"-1s"`}},
		{"migration flush interval", base + "migration: {flush-interval: 0.5s}\n", []string{"migration.flush-interval", "at least 1s"}},
		{"migration caps", base + "migration: {callers-per-instance: -1, metrics-instances: 1000001}\n", []string{"migration.callers-per-instance", "migration.metrics-instances", "want 1 to 100000"}},
		{"migration unknown key", base + "migration: {windw: 24h}\n", []string{"line 4", "windw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := Parse([]byte(base + "    metadata-options: {http-tokens: x, http-endpoint: y, http-put-response-hop-limit: 99}\n"))
	errs, ok := err.(Errors)
	if !ok || len(errs) != 3 {
		t.Fatalf("got %v, want three errors", err)
	}
}

func TestDemoIsValid(t *testing.T) {
	if c := Demo(); c.DefaultInstance == "" || len(c.Instances) != 1 {
		t.Errorf("demo config: %+v", c)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(base + "    metadata-options: {http-put-response-hop-limit: 0}\n"))
	f.Add([]byte(base + "rate-limit: {requests-per-second: 2.5, burst: 3, response: drop}\n"))
	f.Add([]byte("instances:\n  - {instance-id: i-0a1b2c3d, tags: {a: b}, public-keys: {k: ssh-rsa x}}\nroles: {r: {static: {access-key-id: a, secret-access-key: b}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			// A problem of the configuration names its key and what is wrong.
			var errs Errors
			if errors.As(err, &errs) {
				for _, e := range errs {
					if e.Key == "" || e.Msg == "" {
						t.Fatalf("error %q names no key or no problem", e)
					}
				}
			}
			return
		}
		// Whatever is accepted validates again,
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		// and reads back the same from its JSON, which is YAML too.
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		c2, err := Parse(js)
		if err != nil {
			t.Fatalf("config read back from %s: %v", js, err)
		}
		if diff := cmp.Diff(c, c2, cmpopts.IgnoreUnexported(Config{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("config read back from %s differs (-accepted +read back):\n%s", js, diff)
		}
	})
}

func TestOrderedMapJSON(t *testing.T) {
	in := OrderedMap{{"b", "1"}, {"a", "x\"y"}}
	data, err := in.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out OrderedMap
	if err := out.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Errorf("round trip %v -> %s -> %v", in, data, out)
	}
	if err := out.UnmarshalJSON([]byte(`{"a": 1}`)); err == nil {
		t.Error("a number value was accepted")
	}
}

func TestRateLimitDefaults(t *testing.T) {
	c, err := Parse([]byte(base + "rate-limit: {requests-per-second: 2.5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RateLimit; got.Burst != 3 || got.Response != "429" {
		t.Errorf("rate-limit %+v, want burst 3 (the rate rounded up) and response 429", got)
	}
}
