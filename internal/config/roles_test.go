package config

import (
	"strings"
	"testing"
	"time"
)

func TestRoleSources(t *testing.T) {
	c, err := Parse([]byte(base + `roles:
  app:
    assume-role:
      role-arn: arn:aws:iam::123456789012:role/path/app
      external-id: abc-123
      duration: 2h
      session-name: "imds-{instance-id}"
      sts-endpoint: http://127.0.0.1:5000
      region: eu-west-1
      source-profile: imds
      timeout: 10s
  broker:
    process: {command: [/usr/local/bin/broker, --role, "{role}"], timeout: 5s}
  plain:
    static: {access-key-id: AKIAEXAMPLE, secret-access-key: s, account-id: "123456789012"}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Roles["app"].AssumeRole
	if a.SessionDuration() != 2*time.Hour || a.SessionNameTemplate() != "imds-{instance-id}" || a.CallTimeout() != 10*time.Second || a.AccountID() != "123456789012" {
		t.Errorf("assume-role: %+v", a)
	}
	if p := c.Roles["broker"].Process; p.RunTimeout() != 5*time.Second || len(p.Command) != 3 {
		t.Errorf("process: %+v", p)
	}
	for name, want := range map[string]string{"app": "assume-role", "broker": "process", "plain": "static"} {
		if got := c.Roles[name].SourceName(); got != want {
			t.Errorf("%s: source %q, want %q", name, got, want)
		}
	}
	d := &AssumeRoleSource{}
	if d.SessionDuration() != DefaultSessionDuration || d.SessionNameTemplate() != "{instance-id}" || d.CallTimeout() != DefaultSourceTimeout {
		t.Errorf("assume-role defaults: %v %q %v", d.SessionDuration(), d.SessionNameTemplate(), d.CallTimeout())
	}
}

func TestInvalidRoleSources(t *testing.T) {
	const arn = "arn:aws:iam::123456789012:role/app"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"two sources", "r: {static: {access-key-id: a, secret-access-key: b}, process: {command: [x]}}",
			[]string{"line 5", "roles.r", "not several"}},
		{"static without secret", "r: {static: {access-key-id: a}}",
			[]string{"roles.r.static.secret-access-key", "required"}},
		{"static account", "r: {static: {access-key-id: a, secret-access-key: b, account-id: \"12\"}}",
			[]string{"roles.r.static.account-id", `"12"`, "account id"}},
		{"static expiration", "r: {static: {access-key-id: a, secret-access-key: b, expiration: tomorrow}}",
			[]string{"roles.r.static.expiration", `"tomorrow"`, "RFC 3339"}},
		{"no role arn", "r: {assume-role: {duration: 1h}}",
			[]string{"roles.r.assume-role.role-arn", "required"}},
		{"bad role arn", "r: {assume-role: {role-arn: arn:aws:iam::1234:user/x}}",
			[]string{"roles.r.assume-role.role-arn", `"arn:aws:iam::1234:user/x"`, "role ARN"}},
		{"duration too short", "r: {assume-role: {role-arn: " + arn + ", duration: 5m}}",
			[]string{"roles.r.assume-role.duration", `"5m"`, "want 15m to 12h"}},
		{"duration too long", "r: {assume-role: {role-arn: " + arn + ", duration: 13h}}",
			[]string{"roles.r.assume-role.duration", `"13h"`, "want 15m to 12h"}},
		{"duration not one", "r: {assume-role: {role-arn: " + arn + ", duration: 3600}}",
			[]string{"roles.r.assume-role.duration", `"3600"`, "not a duration"}},
		{"duration fraction", "r: {assume-role: {role-arn: " + arn + ", duration: 1h0.5s}}",
			[]string{"roles.r.assume-role.duration", "whole seconds"}},
		{"session name chars", "r: {assume-role: {role-arn: " + arn + ", session-name: \"imds {instance-id}\"}}",
			[]string{"roles.r.assume-role.session-name", `"imds {instance-id}"`}},
		{"session name too long", "r: {assume-role: {role-arn: " + arn + ", session-name: \"" + strings.Repeat("x", 50) + "{instance-id}\"}}",
			[]string{"roles.r.assume-role.session-name", "64 characters"}},
		{"session name placeholder", "r: {assume-role: {role-arn: " + arn + ", session-name: \"{instance}\"}}",
			[]string{"roles.r.assume-role.session-name", `"{instance}"`}},
		{"external id hidden", "r: {assume-role: {role-arn: " + arn + ", external-id: \"a b\"}}",
			[]string{"roles.r.assume-role.external-id", "2 to 1224"}},
		{"endpoint", "r: {assume-role: {role-arn: " + arn + ", sts-endpoint: \"127.0.0.1:5000\"}}",
			[]string{"roles.r.assume-role.sts-endpoint", `"127.0.0.1:5000"`, "http or https URL"}},
		{"region", "r: {assume-role: {role-arn: " + arn + ", region: mars}}",
			[]string{"roles.r.assume-role.region", `"mars"`}},
		{"assume-role timeout", "r: {assume-role: {role-arn: " + arn + ", timeout: 0s}}",
			[]string{"roles.r.assume-role.timeout", `"0s"`, "want 1s to 10m"}},
		{"unknown key", "r: {assume-role: {role-arn: " + arn + ", role_arn: x}}",
			[]string{"role_arn"}},
		{"process without command", "r: {process: {timeout: 10s}}",
			[]string{"roles.r.process.command", "required"}},
		{"process timeout", "r: {process: {command: [x], timeout: forever}}",
			[]string{"roles.r.process.timeout", `"forever"`, "not a duration"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(base + "roles:\n  " + tc.yaml + "\n"))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(tc.name, "external id") && strings.Contains(err.Error(), "a b") {
				t.Errorf("error %q echoes the external id", err)
			}
		})
	}
}
