package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/cli"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/controlplane"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store/boltstore"
)

type operators map[string]string

func (o operators) Secret(_ context.Context, id string) (string, bool) { s, ok := o[id]; return s, ok }

// adminCLI runs imds commands against a control plane served by httptest.
type adminCLI struct {
	t        *testing.T
	url      string
	dataDir  string // holds the operator's credentials file
	reg      *registry.Registry
	withAuth []string
}

func newAdminCLI(t *testing.T) *adminCLI {
	t.Helper()
	// The environment must not choose the server or the credentials.
	t.Setenv("IMDS_ADMIN_URL", "")
	t.Setenv("IMDS_ACCESS_KEY_ID", "")
	t.Setenv("IMDS_SECRET_ACCESS_KEY", "")
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(st, nil)
	op := registry.NewOperator()
	srv := httptest.NewServer(controlplane.New(controlplane.Options{
		Registry:  reg,
		Operators: operators{op.AccessKeyID: op.SecretAccessKey},
	}))
	t.Cleanup(srv.Close)
	dataDir := t.TempDir()
	if err := adminapi.WriteCredentialsFile(filepath.Join(dataDir, "credentials"), adminapi.Credentials{AccessKeyID: op.AccessKeyID, SecretAccessKey: op.SecretAccessKey}); err != nil {
		t.Fatal(err)
	}
	return &adminCLI{t: t, url: srv.URL, dataDir: dataDir, reg: reg,
		withAuth: []string{"--admin-url", srv.URL, "--data-dir", dataDir}}
}

// run runs imds with args and the flags that reach the test server.
func (a *adminCLI) run(stdin string, args ...string) (code int, stdout, stderr string) {
	a.t.Helper()
	return a.runRaw(stdin, append(args, a.withAuth...)...)
}

func (a *adminCLI) runRaw(stdin string, args ...string) (code int, stdout, stderr string) {
	a.t.Helper()
	var out, errOut bytes.Buffer
	if stdin != "" {
		r, w, err := os.Pipe()
		if err != nil {
			a.t.Fatal(err)
		}
		go func() { w.WriteString(stdin); w.Close() }()
		old := os.Stdin
		os.Stdin = r
		defer func() { os.Stdin = old; r.Close() }()
	}
	code = cli.Run(a.t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func (a *adminCLI) file(name, content string) string {
	a.t.Helper()
	p := filepath.Join(a.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return p
}

const vmYAML = `instance-id: i-0000000000000000a
addresses: [10.0.0.1]
availability-zone: us-east-1a
user-data: |
  #!/bin/sh
  echo hello
tags:
  Name: web-1
metadata-options:
  http-tokens: required
  http-put-response-hop-limit: 2
`

const fleetYAML = `instances:
  - instance-id: i-0000000000000000b
    addresses: [10.0.0.2, "fd00::2"]
  - instance-id: i-0000000000000000c
`

type cliCase struct {
	name   string
	stdin  string
	args   []string
	code   int
	stdout []string // each must appear in standard output
	stderr []string // each must appear in standard error
	not    []string // none may appear in either
}

func runCases(t *testing.T, a *adminCLI, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		code, out, errOut := a.run(tc.stdin, tc.args...)
		if code != tc.code {
			t.Fatalf("%s: imds %s: exit %d, want %d\nstdout: %s\nstderr: %s", tc.name, strings.Join(tc.args, " "), code, tc.code, out, errOut)
		}
		for _, w := range tc.stdout {
			if !strings.Contains(out, w) {
				t.Errorf("%s: stdout does not contain %q:\n%s", tc.name, w, out)
			}
		}
		for _, w := range tc.stderr {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr does not contain %q:\n%s", tc.name, w, errOut)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(out+errOut, w) {
				t.Errorf("%s: output contains %q:\n%s%s", tc.name, w, out, errOut)
			}
		}
	}
}

func TestInstanceCommands(t *testing.T) {
	a := newAdminCLI(t)
	vm := a.file("vm.yaml", vmYAML)
	runCases(t, a, []cliCase{
		{name: "put", args: []string{"instance", "put", "-f", vm}, stdout: []string{"i-0000000000000000a registered (revision "}},
		{name: "put again", args: []string{"instance", "put", "-f", vm}, stdout: []string{"i-0000000000000000a updated (revision "}},
		{name: "put a list", args: []string{"instance", "put", "-f", a.file("fleet.yaml", fleetYAML)},
			stdout: []string{"i-0000000000000000b registered", "i-0000000000000000c registered"}},
		{name: "put from stdin", stdin: "instance-id: i-0000000000000000d\n", args: []string{"instance", "put", "-f", "-"},
			stdout: []string{"i-0000000000000000d registered"}},
		{name: "create only", args: []string{"instance", "put", "--create", "-f", vm}, code: cli.ExitFailure,
			stderr: []string{"already exists", "read it again"}},
		{name: "stale revision", args: []string{"instance", "put", "--if-match", "1", "-f", vm}, code: cli.ExitFailure,
			stderr: []string{"someone else changed it"}},
		{name: "a value the server refuses", args: []string{"instance", "put", "-f", a.file("bad.yaml", "instance-id: i-0000000000000000e\nmetadata-options:\n  http-tokens: always\n")},
			code: cli.ExitInvalid, stderr: []string{"metadata-options.http-tokens", "always"}},
		{name: "an address another instance has", args: []string{"instance", "put", "-f", a.file("dup.yaml", "instance-id: i-0000000000000000e\naddresses: [10.0.0.1]\n")},
			code: cli.ExitFailure, stderr: []string{"10.0.0.1", "i-0000000000000000a"}},
		{name: "a list with a broken rule", args: []string{"instance", "put", "-f", a.file("dup-list.yaml",
			"instances:\n- instance-id: i-0000000000000000e\n  addresses: [10.0.0.8]\n- instance-id: i-0000000000000000f\n  addresses: [10.0.0.1]\n")},
			code: cli.ExitFailure, stderr: []string{"instance i-0000000000000000f", "one instance per address", "10.0.0.1 is already an address of i-0000000000000000a"},
			not: []string{"i-0000000000000000e registered"}},
		{name: "an unknown key", args: []string{"instance", "put", "-f", a.file("typo.yaml", "instance-id: i-0000000000000000e\nadresses: [10.0.0.9]\n")},
			code: cli.ExitInvalid, stderr: []string{"line 2", "adresses"}},
		{name: "a full configuration file", args: []string{"instance", "put", "-f", a.file("config.yaml", fleetYAML+"roles: {}\n")},
			code: cli.ExitInvalid, stderr: []string{"roles", "imds role put"}},
		{name: "no id", args: []string{"instance", "put", "-f", a.file("noid.yaml", "addresses: [10.0.0.9]\n")},
			code: cli.ExitInvalid, stderr: []string{"instance-id: required"}},
		{name: "missing file", args: []string{"instance", "put", "-f", filepath.Join(a.dataDir, "nope.yaml")}, code: cli.ExitFailure, stderr: []string{"nope.yaml"}},
		{name: "ls", args: []string{"instance", "ls"}, stdout: []string{
			"ID                   STATE    ADDRESSES         TOKENS    HOP  ENDPOINT  REVISION",
			"i-0000000000000000a  running  10.0.0.1          required  2    enabled",
			"i-0000000000000000b  running  10.0.0.2,fd00::2  optional  1    enabled",
			"i-0000000000000000c  running  -                 optional  1    enabled",
		}},
		{name: "get", args: []string{"instance", "get", "i-0000000000000000a"}, stdout: []string{
			"spec:\n  instance-id: i-0000000000000000a\n", "  user-data: |\n    #!/bin/sh\n    echo hello\n", "options:\n  http-tokens: required\n", "revision: ",
		}},
		{name: "get json", args: []string{"instance", "get", "-o", "json", "i-0000000000000000a"}, stdout: []string{`"instance-id": "i-0000000000000000a"`}},
		{name: "get missing", args: []string{"instance", "get", "i-000000000000000ff"}, code: cli.ExitFailure, stderr: []string{"i-000000000000000ff does not exist"}},
		{name: "get without id", args: []string{"instance", "get"}, code: cli.ExitUsage},
		{name: "bad output", args: []string{"instance", "ls", "-o", "xml"}, code: cli.ExitUsage, stderr: []string{"--output"}},
		{name: "rm", args: []string{"instance", "rm", "i-0000000000000000c", "i-0000000000000000d"}, stdout: []string{"i-0000000000000000c removed\ni-0000000000000000d removed\n"}},
		{name: "rm again", args: []string{"instance", "rm", "i-0000000000000000c"}, code: cli.ExitFailure, stderr: []string{"does not exist"}},
	})

	// get --spec prints what put reads back.
	code, out, errOut := a.run("", "instance", "get", "--spec", "i-0000000000000000a")
	if code != 0 {
		t.Fatalf("get --spec: %d %s", code, errOut)
	}
	var spec config.Instance
	dec := yaml.NewDecoder(strings.NewReader(out))
	dec.KnownFields(true)
	if err := dec.Decode(&spec); err != nil || spec.InstanceID != "i-0000000000000000a" || *spec.UserData != "#!/bin/sh\necho hello\n" {
		t.Errorf("get --spec does not read back: %+v, %v\n%s", spec, err, out)
	}
	if code, _, errOut := a.run(out, "instance", "put", "-f", "-"); code != 0 {
		t.Errorf("put of get --spec: %d %s", code, errOut)
	}

	code, out, _ = a.run("", "instance", "ls", "-o", "json")
	var list adminapi.InstanceList
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Instances) != 2 {
		t.Errorf("ls -o json: %d %v %s", code, err, out)
	}
}

func TestInstanceEventCommand(t *testing.T) {
	a := newAdminCLI(t)
	if code, _, errOut := a.run("", "instance", "put", "-f", a.file("vm.yaml", vmYAML)); code != 0 {
		t.Fatal(errOut)
	}
	runCases(t, a, []cliCase{
		{name: "spot", args: []string{"instance", "event", "i-0000000000000000a", "--spot", "terminate", "--in", "2m"},
			stdout: []string{"i-0000000000000000a: spot/instance-action terminate at "}},
		{name: "rebalance", args: []string{"instance", "event", "i-0000000000000000a", "--rebalance"},
			stdout: []string{"events/recommendations/rebalance noticed at "}},
		{name: "maintenance", args: []string{"instance", "event", "i-0000000000000000a", "--maintenance", "system-reboot", "--at", "2030-01-02T03:00:00Z", "--duration", "1h"},
			stdout: []string{"events/maintenance/scheduled instance-event-", "system-reboot from 2030-01-02T03:00:00Z to 2030-01-02T04:00:00Z (active)"}},
		{name: "bad action", args: []string{"instance", "event", "i-0000000000000000a", "--spot", "explode"}, code: cli.ExitInvalid, stderr: []string{"action", "explode"}},
		{name: "two kinds", args: []string{"instance", "event", "i-0000000000000000a", "--spot", "stop", "--rebalance"}, code: cli.ExitUsage},
		{name: "no kind", args: []string{"instance", "event", "i-0000000000000000a"}, code: cli.ExitUsage},
		{name: "in and at", args: []string{"instance", "event", "i-0000000000000000a", "--spot", "stop", "--in", "1m", "--at", "2030-01-02T03:00:00Z"}, code: cli.ExitUsage},
		{name: "missing instance", args: []string{"instance", "event", "i-000000000000000ff", "--rebalance"}, code: cli.ExitFailure, stderr: []string{"does not exist"}},
		{name: "clear", args: []string{"instance", "event", "i-0000000000000000a", "--clear"}, stdout: []string{"i-0000000000000000a: no events"}},
	})
}

func TestRoleRelayKeyCommands(t *testing.T) {
	a := newAdminCLI(t)
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	role := a.file("role.yaml", "static:\n  access-key-id: AKIAIOSFODNN7EXAMPLE\n  secret-access-key: "+secret+"\n")
	runCases(t, a, []cliCase{
		{name: "role put", args: []string{"role", "put", "web", "-f", role}, stdout: []string{"role web created (static, revision "}},
		{name: "role put again", args: []string{"role", "put", "web", "-f", role}, stdout: []string{"role web updated"}},
		{name: "role put invalid", args: []string{"role", "put", "bad", "-f", a.file("bad.yaml", "static:\n  access-key-id: AKIAIOSFODNN7EXAMPLE\n")},
			code: cli.ExitInvalid, stderr: []string{"secret-access-key", "required"}},
		{name: "role put unknown key", args: []string{"role", "put", "bad", "-f", a.file("typo.yaml", "statik: {}\n")},
			code: cli.ExitInvalid, stderr: []string{"statik"}},
		{name: "role ls", args: []string{"role", "ls"}, stdout: []string{"NAME  SOURCE  REVISION\nweb   static  "}, not: []string{secret}},
		{name: "role get", args: []string{"role", "get", "web"}, stdout: []string{"access-key-id: AKIAIOSFODNN7EXAMPLE"}, not: []string{secret}},
		{name: "role rm", args: []string{"role", "rm", "web"}, stdout: []string{"role web removed"}},
		{name: "role rm again", args: []string{"role", "rm", "web"}, code: cli.ExitFailure, stderr: []string{"does not exist"}},

		{name: "relay put bad address", args: []string{"relay", "put", "hv1", "--address", "nope"}, code: cli.ExitInvalid, stderr: []string{"nope"}},
		{name: "relay put without address", args: []string{"relay", "put", "hv1"}, code: cli.ExitUsage},
		{name: "relay rm missing", args: []string{"relay", "rm", "hv9"}, code: cli.ExitFailure, stderr: []string{"does not exist"}},

		{name: "keys rotate", args: []string{"keys", "rotate"}, stdout: []string{"token signing key 2; keys accepted: 2, 1"}},
	})

	code, out, errOut := a.run("", "relay", "put", "hv1", "--address", "10.1.0.1", "--address", "fd00:1::1")
	if code != 0 || !strings.Contains(errOut, "shown once") {
		t.Fatalf("relay put: %d %s", code, errOut)
	}
	relaySecret := strings.TrimSpace(out)
	if b, err := base64.StdEncoding.DecodeString(relaySecret); err != nil || len(b) != 32 {
		t.Fatalf("relay put printed %q, want a 32-byte secret in base64", out)
	}
	runCases(t, a, []cliCase{
		{name: "relay ls", args: []string{"relay", "ls"}, stdout: []string{"hv1   10.1.0.1,fd00:1::1"}, not: []string{relaySecret}},
		{name: "relay ls json", args: []string{"relay", "ls", "-o", "json"}, stdout: []string{`"name": "hv1"`}, not: []string{relaySecret, "secret"}},
		{name: "relay rm", args: []string{"relay", "rm", "hv1"}, stdout: []string{"relay hv1 removed"}},
	})
}

func TestAdminConnectionErrors(t *testing.T) {
	a := newAdminCLI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	wrong := a.file("wrong", "[imds]\naws_access_key_id = IMDSNOBODY\naws_secret_access_key = guess\n")

	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr []string
	}{
		{"unreachable", nil, []string{"instance", "ls", "--admin-url", closed, "--data-dir", a.dataDir},
			cli.ExitFailure, []string{"no answer from the control plane at " + closed, "--admin-url"}},
		{"unreachable from the environment", map[string]string{"IMDS_ADMIN_URL": closed}, []string{"instance", "ls", "--data-dir", a.dataDir},
			cli.ExitFailure, []string{closed}},
		{"bad URL", nil, []string{"instance", "ls", "--admin-url", "127.0.0.1:1339", "--data-dir", a.dataDir}, cli.ExitUsage, []string{"admin URL"}},
		{"wrong credentials", nil, []string{"role", "ls", "--admin-url", a.url, "--credentials", wrong},
			cli.ExitFailure, []string{"refused the credentials", "--credentials"}},
		{"no credentials file", nil, []string{"instance", "ls", "--admin-url", a.url, "--data-dir", t.TempDir()},
			cli.ExitFailure, []string{"no operator credentials", "IMDS_ACCESS_KEY_ID"}},
		{"credentials from the environment", map[string]string{"IMDS_ACCESS_KEY_ID": "IMDSNOBODY", "IMDS_SECRET_ACCESS_KEY": "guess"},
			[]string{"instance", "ls", "--admin-url", a.url, "--data-dir", a.dataDir}, cli.ExitFailure, []string{"refused the credentials"}},
		{"half the environment", map[string]string{"IMDS_ACCESS_KEY_ID": "IMDSNOBODY"},
			[]string{"instance", "ls", "--admin-url", a.url, "--data-dir", a.dataDir}, cli.ExitUsage, []string{"IMDS_SECRET_ACCESS_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errOut := a.runRaw("", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, errOut)
				}
			}
		})
	}
}

func TestOperatorKeyCommands(t *testing.T) {
	a := newAdminCLI(t)
	add := func() (id, secret string) {
		t.Helper()
		code, out, errOut := a.run("", "keys", "operator", "add")
		if code != 0 || !strings.Contains(errOut, "shown once") {
			t.Fatalf("keys operator add: %d %s", code, errOut)
		}
		for line := range strings.Lines(out) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), " = ")
			switch k {
			case "aws_access_key_id":
				id = v
			case "aws_secret_access_key":
				secret = v
			}
		}
		if id == "" || secret == "" {
			t.Fatalf("keys operator add printed %q, want a credentials profile's two lines", out)
		}
		return id, secret
	}
	id1, secret1 := add()
	id2, secret2 := add()
	runCases(t, a, []cliCase{
		{name: "ls", args: []string{"keys", "operator", "ls"}, stdout: []string{"ACCESS KEY ID", id1, id2}, not: []string{secret1, secret2}},
		{name: "ls json", args: []string{"keys", "operator", "ls", "-o", "json"}, stdout: []string{`"access-key-id": "` + id1 + `"`}, not: []string{secret1, secret2, "secret"}},
		{name: "revoke", args: []string{"keys", "operator", "revoke", id1}, stdout: []string{"operator key " + id1 + " revoked"}},
		{name: "revoke again", args: []string{"keys", "operator", "revoke", id1}, code: cli.ExitFailure, stderr: []string{"does not exist"}},
		{name: "revoke the last", args: []string{"keys", "operator", "revoke", id2}, code: cli.ExitFailure, stderr: []string{"the last one"}},
	})
}

func TestInstanceEventLifecycleCommands(t *testing.T) {
	a := newAdminCLI(t)
	if code, _, errOut := a.run("", "instance", "put", "-f", a.file("vm.yaml", vmYAML)); code != 0 {
		t.Fatal(errOut)
	}
	if code, _, errOut := a.run("", "instance", "put", "-f", a.file("fleet.yaml", fleetYAML)); code != 0 {
		t.Fatal(errOut)
	}
	_, out, _ := a.run("", "instance", "event", "i-0000000000000000a", "--maintenance", "system-reboot", "--in", "1h")
	i := strings.Index(out, "instance-event-")
	if i < 0 {
		t.Fatalf("no event id in %q", out)
	}
	eventID := out[i : i+len("instance-event-")+17]
	runCases(t, a, []cliCase{
		{name: "cancel", args: []string{"instance", "event", "i-0000000000000000a", "--cancel", eventID},
			stdout: []string{"events/maintenance/history " + eventID + " system-reboot", "(canceled)"}},
		{name: "complete a canceled event", args: []string{"instance", "event", "i-0000000000000000a", "--complete", eventID},
			code: cli.ExitFailure, stderr: []string{"not active"}},
		{name: "lifecycle", args: []string{"instance", "event", "i-0000000000000000a", "--lifecycle", "Terminated"},
			stdout: []string{"autoscaling/target-lifecycle-state Terminated"}},
		{name: "bad lifecycle", args: []string{"instance", "event", "i-0000000000000000a", "--lifecycle", "Gone"},
			code: cli.ExitInvalid, stderr: []string{"lifecycle-state", "Gone"}},
		{name: "fleet by tag", args: []string{"instance", "event", "--filter", "tag:Name=web-1", "--rebalance"},
			stdout: []string{"i-0000000000000000a: rebalance", "1 of 1 matching instances"}},
		{name: "fleet fraction", args: []string{"instance", "event", "--fraction", "0.5", "--seed", "3", "--spot", "terminate"},
			stdout: []string{"2 of 3 matching instances"}},
		{name: "fleet without a selection", args: []string{"instance", "event", "--spot", "terminate"}, code: cli.ExitUsage},
		{name: "id and filter", args: []string{"instance", "event", "i-0000000000000000a", "--filter", "tag:a=b", "--rebalance"}, code: cli.ExitUsage},
		{name: "bad filter", args: []string{"instance", "event", "--filter", "tag:a", "--rebalance"}, code: cli.ExitUsage, stderr: []string{"NAME=VALUE"}},
		{name: "cancel fleet-wide", args: []string{"instance", "event", "--filter", "tag:a=b", "--cancel", eventID}, code: cli.ExitUsage},
	})
}

func TestScenarioCommands(t *testing.T) {
	a := newAdminCLI(t)
	if code, _, errOut := a.run("", "instance", "put", "-f", a.file("fleet.yaml", fleetYAML)); code != 0 {
		t.Fatal(errOut)
	}
	good := a.file("good.yaml", `steps:
  - at: 0s
    name: scale-in
    instances: [i-0000000000000000b]
    event: {type: lifecycle, lifecycle-state: Terminated}
  - at: 0s
    same-as: scale-in
    state: terminate
`)
	bad := a.file("bad.yaml", "steps:\n  - at: 0s\n    name: x\n    instances: [i-0000000000000000b]\n    state: explode\n")
	failing := a.file("failing.yaml", "steps:\n  - at: 0s\n    instances: [i-000000000000000ff]\n    state: stop\n")
	runCases(t, a, []cliCase{
		{name: "check", args: []string{"scenario", "check", good}, stdout: []string{"2 steps"}},
		{name: "check a bad file", args: []string{"scenario", "check", bad}, code: cli.ExitInvalid, stderr: []string{"steps[0] (x): state", "explode"}},
		{name: "run", args: []string{"scenario", "run", good},
			stdout: []string{"+0s scale-in: lifecycle Terminated -> i-0000000000000000b", "+0s: terminate: i-0000000000000000b running -> shutting-down"}},
		{name: "run a failing step", args: []string{"scenario", "run", failing}, code: cli.ExitFailure,
			stdout: []string{"failed"}, stderr: []string{"does not exist"}},
		{name: "run a missing file", args: []string{"scenario", "run", "/nonexistent.yaml"}, code: cli.ExitInvalid},
	})
}
