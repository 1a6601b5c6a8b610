package credentials

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/config"
)

func TestParseProcessOutput(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      *creds
		wantErr   string // in the error; the error must never hold the output
	}{
		{"full", `{"Version": 1, "AccessKeyId": "ASIAPROC", "SecretAccessKey": "psecret", "SessionToken": "ptoken", "Expiration": "2026-01-02T04:04:05Z", "AccountId": "123456789012"}`,
			&creds{AccessKeyID: "ASIAPROC", SecretAccessKey: "psecret", SessionToken: "ptoken", Expires: t0.Add(time.Hour), AccountID: "123456789012"}, ""},
		{"no expiration", `{"Version": 1, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "psecret"}`,
			&creds{AccessKeyID: "AKIAPROC", SecretAccessKey: "psecret"}, ""},
		{"odd account id ignored", `{"Version": 1, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "psecret", "AccountId": "x"}`,
			&creds{AccessKeyID: "AKIAPROC", SecretAccessKey: "psecret"}, ""},
		{"not json", `AccessKeyId=AKIAPROC psecret`, nil, "not a credential_process JSON object"},
		{"version 2", `{"Version": 2, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "psecret"}`, nil, "Version 2"},
		{"no secret", `{"Version": 1, "AccessKeyId": "AKIAPROC"}`, nil, "lacks"},
		{"bad expiration", `{"Version": 1, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "psecret", "Expiration": "tomorrow"}`, nil, "not an RFC 3339 time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcessOutput([]byte(tc.out))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "psecret") {
					t.Errorf("error %q holds the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "broker")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProcessSource(t *testing.T) {
	p := params{Role: "app", InstanceID: "i-0123456789abcdef0", Delivery: "2.0"}
	for _, tc := range []struct {
		name, body string
		timeout    time.Duration
		wantKey    string
		wantErr    string
	}{
		{"placeholders", `echo "{\"Version\": 1, \"AccessKeyId\": \"AKIA-$1-$2-$3\", \"SecretAccessKey\": \"psecret\"}"`, time.Minute, "AKIA-app-i-0123456789abcdef0-2.0", ""},
		{"exit status", "echo psecret >&2\nexit 3", time.Minute, "", "process: exit status 3 (8 bytes on stderr, not logged)"},
		{"timeout", "exec sleep 60", 100 * time.Millisecond, "", "deadline exceeded"},
		{"too much output", "head -c 70000 /dev/zero", time.Minute, "", "more than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := newProcess(&config.ProcessSource{Command: []string{script(t, tc.body), "{role}", "{instance-id}", "{role-delivery}"}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			c, err := src.fetch(ctx, p)
			if tc.wantErr != "" {
				var fe *fetchError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "psecret") {
					t.Fatalf("error %v, want a fetchError with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.AccessKeyID != tc.wantKey {
				t.Errorf("access key id %q, want %q", c.AccessKeyID, tc.wantKey)
			}
		})
	}
	if _, err := newProcess(&config.ProcessSource{Command: []string{"/nonexistent/broker"}}); err == nil {
		t.Error("newProcess accepted a command that does not exist")
	}
}
