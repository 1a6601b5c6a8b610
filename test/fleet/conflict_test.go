package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/config"
)

const (
	idHolder = "i-0e0000000000000e1" // holds 127.0.0.21
	idOther  = "i-0e0000000000000e2" // holds 127.0.0.22
	idNew    = "i-0e0000000000000e3" // registered through the API
)

// TestAddressClaimedTwiceThroughAPI: an address that is already an
// instance's is refused with 409 when another instance claims it through
// the admin API, alone or racing, and the holder keeps being served.
func TestAddressClaimedTwiceThroughAPI(t *testing.T) {
	needLoopbackRange(t)
	cfg := writeFile(t, "fleet.yaml", `instances:
  - instance-id: `+idHolder+`
    addresses: [127.0.0.21]
  - instance-id: `+idOther+`
    addresses: [127.0.0.22]
`)
	p := startIMDS(t, filepath.Join(t.TempDir(), "data"), "--config", cfg)
	c := admin(t, p)
	ctx := t.Context()

	wantConflict := func(t *testing.T, what string, err error, names ...string) {
		t.Helper()
		var ae *adminclient.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			t.Errorf("%s: %v, want 409 Conflict", what, err)
			return
		}
		for _, n := range names {
			if !strings.Contains(ae.Message, n) {
				t.Errorf("%s: 409 %q, want a message naming %s", what, ae.Message, n)
			}
		}
	}

	_, _, err := c.PutInstance(ctx, config.Instance{InstanceID: idNew, Addresses: []string{"127.0.0.21"}}, adminclient.Cond{})
	wantConflict(t, "PUT a new instance at the address of "+idHolder, err, "127.0.0.21", idHolder)
	var ae *adminclient.Error
	if _, err := c.Instance(ctx, idNew); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("GET %s after its refused registration: %v, want 404", idNew, err)
	}

	// The same address in another spelling, IPv4-mapped IPv6.
	_, _, err = c.PutInstance(ctx, config.Instance{InstanceID: idNew, Addresses: []string{"::ffff:127.0.0.21"}}, adminclient.Cond{})
	wantConflict(t, "PUT a new instance at ::ffff:127.0.0.21", err, idHolder)

	// An existing instance may not take it either, and keeps what it had.
	_, _, err = c.PutInstance(ctx, config.Instance{InstanceID: idOther, Addresses: []string{"127.0.0.22", "127.0.0.21"}}, adminclient.Cond{})
	wantConflict(t, "PUT "+idOther+" adding the address of "+idHolder, err, "127.0.0.21", idHolder)
	if rec, err := c.Instance(ctx, idOther); err != nil || strings.Join(rec.Spec.Addresses, ",") != "127.0.0.22" {
		t.Errorf("%s after its refused update: %+v, %v; want addresses [127.0.0.22]", idOther, rec, err)
	}

	// The command line says so and exits non-zero.
	out, errOut, code := runIMDS(t, "instance-id: "+idNew+"\naddresses: [127.0.0.21]\n",
		"instance", "put", "-f", "-", "--admin-url", p.AdminURL, "--data-dir", p.DataDir)
	if code == 0 || !strings.Contains(errOut, "127.0.0.21") || !strings.Contains(errOut, idHolder) {
		t.Errorf("imds instance put of a taken address: exit %d, stdout %q, stderr %q; want non-zero naming the address and %s", code, out, errOut, idHolder)
	}

	// The holder is still served there, and nobody else anywhere.
	for addr, id := range map[string]string{"127.0.0.21": idHolder, "127.0.0.22": idOther} {
		if msg := wantInstance(from(addr), p.URL(), "", id)(); msg != "" {
			t.Error(msg)
		}
	}

	// Two registrations of one new address at the same time: one wins.
	t.Run("racing", func(t *testing.T) {
		for round := range 50 {
			addr := fmt.Sprintf("127.0.8.%d", round+1)
			specs := [2]config.Instance{
				{InstanceID: fmt.Sprintf("i-0f%015x", 2*round), Addresses: []string{addr}},
				{InstanceID: fmt.Sprintf("i-0f%015x", 2*round+1), Addresses: []string{addr}},
			}
			errs := putTogether(t, [2]*adminclient.Client{c, c}, specs)
			if won := checkOneWinner(t, addr, specs, errs, c, p.URL()); won >= 0 {
				eventually(t, 10*time.Second, wantInstance(from(addr), p.URL(), "", specs[won].InstanceID))
			}
		}
	})

	// Once the holder lets the address go, it can be claimed.
	if _, _, err := c.PutInstance(ctx, config.Instance{InstanceID: idHolder, Addresses: []string{"127.0.0.23"}}, adminclient.Cond{}); err != nil {
		t.Fatalf("PUT %s moving to 127.0.0.23: %v", idHolder, err)
	}
	if _, _, err := c.PutInstance(ctx, config.Instance{InstanceID: idNew, Addresses: []string{"127.0.0.21"}}, adminclient.Cond{}); err != nil {
		t.Errorf("PUT %s at 127.0.0.21 once %s moved away: %v", idNew, idHolder, err)
	}
	eventually(t, 10*time.Second, wantInstance(from("127.0.0.21"), p.URL(), "", idNew))
}

// TestAddressClaimedTwiceInConfig: a configuration file in which two
// instances claim one address is refused by imds validate and by imds serve,
// naming both instances; so is a file claiming an address that an instance
// registered through the API holds.
func TestAddressClaimedTwiceInConfig(t *testing.T) {
	twice := writeFile(t, "twice.yaml", `instances:
  - instance-id: `+idHolder+`
    addresses: [127.0.0.31]
  - instance-id: `+idOther+`
    addresses: [10.0.0.1, 127.0.0.31]
`)
	out, errOut, code := runIMDS(t, "", "validate", "--config", twice)
	if code == 0 {
		t.Errorf("imds validate: exit 0, stdout %q; want non-zero", out)
	}
	for _, want := range []string{"127.0.0.31", idHolder, idOther} {
		if !strings.Contains(errOut, want) {
			t.Errorf("imds validate of two instances at one address: exit %d, stderr %q; want it to name %s", code, errOut, want)
		}
	}

	log, code := serveUntilExit(t, filepath.Join(t.TempDir(), "data"), "--config", twice)
	if code == 0 {
		t.Errorf("imds serve of two instances at one address: exit 0")
	}
	for _, want := range []string{"127.0.0.31", idHolder, idOther} {
		if !strings.Contains(log, want) {
			t.Errorf("imds serve of two instances at one address: exit %d, output %q; want it to name %s", code, log, want)
		}
	}

	t.Run("held through the API", func(t *testing.T) {
		needLoopbackRange(t)
		dir := filepath.Join(t.TempDir(), "data")
		path := writeFile(t, "fleet.yaml", "instances:\n  - instance-id: "+idHolder+"\n    addresses: [127.0.0.31]\n")
		p := startIMDS(t, dir, "--config", path)
		if _, _, err := admin(t, p).PutInstance(t.Context(), config.Instance{InstanceID: idNew, Addresses: []string{"127.0.0.32"}}, adminclient.Cond{}); err != nil {
			t.Fatal(err)
		}
		p.Stop(t)
		// The file now gives that address to another instance.
		edited := "instances:\n  - instance-id: " + idHolder + "\n    addresses: [127.0.0.31]\n  - instance-id: " + idOther + "\n    addresses: [127.0.0.32]\n"
		if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		log, code := serveUntilExit(t, dir, "--config", path)
		if code == 0 {
			t.Errorf("imds serve of a file claiming an address held by %s: exit 0", idNew)
		}
		for _, want := range []string{"127.0.0.32", idNew, idOther} {
			if !strings.Contains(log, want) {
				t.Errorf("imds serve of a file claiming an address held by %s: exit %d, output %q; want it to name %s", idNew, code, log, want)
			}
		}
		// Nothing was changed: the server starts again on the old file.
		os.WriteFile(path, []byte("instances:\n  - instance-id: "+idHolder+"\n    addresses: [127.0.0.31]\n"), 0o600)
		p = startIMDS(t, dir, "--config", path)
		eventually(t, 10*time.Second, wantInstance(from("127.0.0.32"), p.URL(), "", idNew))
	})
}

// serveUntilExit runs imds serve, which must exit on its own within 30 s,
// and returns its output and exit code.
func serveUntilExit(t *testing.T, dataDir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	argv := append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)
	cmd := exec.CommandContext(ctx, imdsBin, argv...)
	cmd.Env = cleanEnv(t)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("imds %s did not exit within 30s; output:\n%s", strings.Join(argv, " "), out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("imds %s: %v", strings.Join(argv, " "), err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}
