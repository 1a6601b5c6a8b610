package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The instances of the doctor tests: the instance namespace and the
// container behind it (all four of its addresses).
const (
	doctorVMID  = "i-0d0c0b0a090807061"
	doctorCtrID = "i-0d0c0b0a090807062"
)

// doctorConfig writes a configuration with the instance namespace and the
// container as two instances, each with the given metadata options (YAML
// lines under metadata-options) and role ("" for none).
func doctorConfig(t *testing.T, top *topology, vmOpts, vmRole, ctrOpts, ctrRole string) string {
	t.Helper()
	instance := func(id string, addrs []string, opts, role string) string {
		s := fmt.Sprintf("  - instance-id: %s\n    addresses: [%s]\n    account-id: \"123456789012\"\n    availability-zone: us-east-1a\n",
			id, `"`+strings.Join(addrs, `", "`)+`"`)
		if role != "" {
			s += "    iam-role: " + role + "\n"
		}
		s += "    metadata-options:\n"
		for l := range strings.SplitSeq(opts, "\n") {
			s += "      " + l + "\n"
		}
		return s
	}
	cfg := "instances:\n" +
		instance(doctorVMID, []string{top.vm.v4, top.vm.v6}, vmOpts, vmRole) +
		instance(doctorCtrID, []string{top.containerA.v4, top.containerB.v4, top.containerA.v6, top.containerB.v6}, ctrOpts, ctrRole) +
		`roles:
  app-role:
    static:
      access-key-id: AKIAIOSFODNN7EXAMPLE
      secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
      session-token: FwoGZXIvYXdzEXAMPLESESSIONTOKEN
`
	path := filepath.Join(t.TempDir(), "imds.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveIMDS runs imds in the host namespace on both IMDS addresses until
// the test ends.
func serveIMDS(t *testing.T, top *topology, config string) {
	t.Helper()
	srv := top.host.Start(t, imdsBin, "serve",
		"--listen", hostPort(false, 80), "--listen", hostPort(true, 80),
		"--config", config, "--data-dir", t.TempDir())
	srv.WaitStderr(t, "msg=listening", 2, 15*time.Second)
}

// doctorReport is the JSON that `imds doctor --json` prints.
type doctorReport struct {
	OK        bool   `json:"ok"`
	Endpoint  string `json:"endpoint"`
	Container struct {
		Detected bool   `json:"detected"`
		Evidence string `json:"evidence"`
	} `json:"container"`
	Checks []doctorCheck `json:"checks"`
}

type doctorCheck struct {
	ID      string         `json:"id"`
	Status  string         `json:"status"`
	Message string         `json:"message"`
	Fix     string         `json:"fix"`
	Data    map[string]any `json:"data"`
}

func (r doctorReport) check(t *testing.T, id string) doctorCheck {
	t.Helper()
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no check %q in the report", id)
	return doctorCheck{}
}

// doctor runs `imds doctor` in ns with only the given environment (and
// PATH, and an empty HOME), so that the test's own proxy or AWS variables do
// not leak in. It returns the parsed --json report and checks that the exit
// status agrees with it.
func doctor(t *testing.T, ns *Namespace, env []string, args ...string) doctorReport {
	t.Helper()
	r := runDoctor(t, ns, env, append([]string{"--json"}, args...)...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("doctor --json: %v\nstdout:\n%s\nstderr:\n%s", err, r.Stdout, r.Stderr)
	}
	wantExit := 1
	if rep.OK {
		wantExit = 0
	}
	if r.ExitCode != wantExit {
		t.Errorf("doctor exited %d with ok=%v, want %d; stderr:\n%s", r.ExitCode, rep.OK, wantExit, r.Stderr)
	}
	t.Logf("doctor --json %s in %v", strings.Join(args, " "), r.Elapsed.Round(time.Millisecond))
	return rep
}

func runDoctor(t *testing.T, ns *Namespace, env []string, args ...string) Result {
	t.Helper()
	cmd := append([]string{"-i", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd = append(cmd, imdsBin, "doctor")
	return ns.Run(t, "env", append(cmd, args...)...)
}

// wantCheck checks a check's status and that its message and fix contain
// the given strings.
func wantCheck(t *testing.T, rep doctorReport, id, status, msg, fix string) {
	t.Helper()
	c := rep.check(t, id)
	if c.Status != status || !strings.Contains(c.Message, msg) || !strings.Contains(c.Fix, fix) {
		t.Errorf("%s: got %s %q (fix %q), want %s containing %q (fix containing %q)", id, c.Status, c.Message, c.Fix, status, msg, fix)
	}
}

// TestDoctor runs imds in the host namespace and `imds doctor` in the
// instance and the container namespaces, and checks each problem it must
// find on its --json report.
func TestDoctor(t *testing.T) {
	Require(t)
	top := newTopology(t)
	region := []string{"AWS_REGION=us-east-1"}

	t.Run("container/hop limit 1", func(t *testing.T) {
		serveIMDS(t, top, doctorConfig(t, top,
			"http-tokens: required", "app-role",
			"http-tokens: optional\nhttp-put-response-hop-limit: 1\nhttp-protocol-ipv6: enabled", "app-role"))
		rep := doctor(t, top.container, region)
		if rep.OK {
			t.Error("report ok, want a failure")
		}
		if !rep.Container.Detected {
			t.Errorf("container not detected: %+v", rep.Container)
		}
		wantCheck(t, rep, "endpoint-ipv4", "pass", "answers (token PUT no answer within 1s, GET without a token 200)", "")
		wantCheck(t, rep, "token", "fail", "no answer within 1s", "")
		wantCheck(t, rep, "hop-limit", "fail", "hop limit too low", "--instance-id "+doctorCtrID+" --http-put-response-hop-limit 2 --http-endpoint enabled")
		wantCheck(t, rep, "imdsv1", "warn", "SDKs here fall back to it because the token request fails", "")
		wantCheck(t, rep, "credentials", "pass", "read with IMDSv1", "")
		text := runDoctor(t, top.container, region)
		t.Logf("imds doctor:\n%s", text.Stdout)
		if !strings.Contains(text.Stdout, "\nFAIL  hop-limit        hop limit too low") {
			t.Errorf("text report has no hop-limit failure line:\n%s", text.Stdout)
		}

		// imds get falls back to IMDSv1 as the SDKs do, and says so.
		r := top.container.Run(t, "env", "-i", imdsBin, "get", "instance-id")
		if r.ExitCode != 0 || r.Stdout != doctorCtrID+"\n" || !strings.Contains(r.Stderr, "read with IMDSv1: the token request failed") {
			t.Errorf("imds get instance-id: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		r = top.container.Run(t, "env", "-i", imdsBin, "get", "--no-fallback", "instance-id")
		if r.ExitCode != 1 || r.Stdout != "" || !strings.Contains(r.Stderr, "IMDSv2 token") {
			t.Errorf("imds get --no-fallback instance-id: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})

	t.Run("container/hop limit 2", func(t *testing.T) {
		serveIMDS(t, top, doctorConfig(t, top,
			"http-tokens: required", "app-role",
			"http-tokens: required\nhttp-put-response-hop-limit: 2\nhttp-protocol-ipv6: enabled", "app-role"))
		rep := doctor(t, top.container, region)
		for _, c := range rep.Checks {
			if c.Status != "pass" {
				t.Errorf("%s: got %s %q (fix %q), want pass", c.ID, c.Status, c.Message, c.Fix)
			}
		}
		if !rep.OK || rep.Endpoint != "http://169.254.169.254" {
			t.Errorf("got ok %v endpoint %q", rep.OK, rep.Endpoint)
		}
		wantCheck(t, rep, "hop-limit", "pass", "in a container", "")
		wantCheck(t, rep, "region", "pass", "region us-east-1, availability zone us-east-1a, instance "+doctorCtrID, "")
		wantCheck(t, rep, "credentials", "pass", "read with IMDSv2", "")
		text := runDoctor(t, top.container, region)
		t.Logf("imds doctor:\n%s", text.Stdout)
		if text.ExitCode != 0 {
			t.Errorf("exit %d, want 0", text.ExitCode)
		}

		r := top.container.Run(t, "env", "-i", imdsBin, "get", "-r", "/latest/")
		var tree struct {
			MetaData struct {
				InstanceID string `json:"instance-id"`
				IAM        struct {
					SecurityCredentials map[string]any `json:"security-credentials"`
				} `json:"iam"`
			} `json:"meta-data"`
			Dynamic struct {
				InstanceIdentity struct {
					Document struct{ Region string } `json:"document"`
				} `json:"instance-identity"`
			} `json:"dynamic"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &tree); r.ExitCode != 0 || r.Stderr != "" || err != nil {
			t.Fatalf("imds get -r /latest/: exit %d, %v, stderr %q, stdout:\n%s", r.ExitCode, err, r.Stderr, r.Stdout)
		}
		md := tree.MetaData
		if md.InstanceID != doctorCtrID || tree.Dynamic.InstanceIdentity.Document.Region != "us-east-1" ||
			len(md.IAM.SecurityCredentials) != 1 || md.IAM.SecurityCredentials["app-role"] != nil {
			t.Errorf("imds get -r /latest/: got %+v; want the instance id, the document's region and the role listed without credentials", tree)
		}
	})

	t.Run("instance", func(t *testing.T) {
		serveIMDS(t, top, doctorConfig(t, top,
			"http-tokens: required\nhttp-protocol-ipv6: enabled", "",
			"http-endpoint: disabled", "app-role"))

		t.Run("disabled endpoint", func(t *testing.T) {
			rep := doctor(t, top.container, region)
			wantCheck(t, rep, "endpoint-ipv4", "fail", "answers 403 Forbidden: instance metadata is turned off", "--http-endpoint enabled")
			if got := rep.check(t, "endpoint-ipv4").Data["failure"]; got != "disabled" {
				t.Errorf("endpoint-ipv4 data failure: got %v, want disabled", got)
			}
			wantCheck(t, rep, "role", "skip", "", "")
		})
		t.Run("no role", func(t *testing.T) {
			rep := doctor(t, top.instance, region)
			wantCheck(t, rep, "token", "pass", "IMDSv2 token issued (TTL 21600s)", "")
			wantCheck(t, rep, "hop-limit", "pass", "", "")
			wantCheck(t, rep, "role", "fail", "no IAM role", "aws ec2 associate-iam-instance-profile --instance-id "+doctorVMID)
			wantCheck(t, rep, "credentials", "skip", "no role", "")
		})
		t.Run("required tokens, probe without a token", func(t *testing.T) {
			rep := doctor(t, top.instance, region, "--no-token")
			wantCheck(t, rep, "imdsv1", "fail", "got 401 Unauthorized", "upgrade the SDK")
			if got := rep.check(t, "imdsv1").Data["http-tokens"]; got != "required" {
				t.Errorf("imdsv1 data http-tokens: got %v, want required", got)
			}
		})
		t.Run("proxy variable", func(t *testing.T) {
			rep := doctor(t, top.instance, append([]string{"HTTP_PROXY=http://10.200.1.1:3128", "NO_PROXY=localhost"}, region...))
			wantCheck(t, rep, "env-proxy", "fail", "send IMDS requests to the proxy http://10.200.1.1:3128", "export NO_PROXY=localhost,169.254.169.254,")
			// doctor itself goes around the proxy.
			wantCheck(t, rep, "token", "pass", "", "")
		})
		t.Run("IPv6 endpoint", func(t *testing.T) {
			rep := doctor(t, top.instance, region, "--ipv6")
			if rep.Endpoint != "http://[fd00:ec2::254]" {
				t.Errorf("endpoint: got %s", rep.Endpoint)
			}
			wantCheck(t, rep, "endpoint-ipv6", "pass", "answers (token PUT 200, GET without a token 401)", "")
			wantCheck(t, rep, "token", "pass", "", "")
		})
	})

	t.Run("unreachable/refused", func(t *testing.T) {
		// No imds runs now: the host namespace refuses the connection.
		rep := doctor(t, top.instance, region)
		wantCheck(t, rep, "endpoint-ipv4", "fail", "connection refused", "")
		wantCheck(t, rep, "token", "skip", "", "")
	})

	t.Run("unreachable/no route", func(t *testing.T) {
		lone := New(t, "lone")
		rep := doctor(t, lone, region)
		wantCheck(t, rep, "endpoint-ipv4", "fail", "no route to 169.254.169.254", "run on an EC2 instance")
		if got := rep.check(t, "endpoint-ipv4").Data["failure"]; got != "no route" {
			t.Errorf("endpoint-ipv4 data failure: got %v, want no route", got)
		}
	})
}
