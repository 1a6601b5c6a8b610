package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imds/imds/internal/migration"
)

// sdkGet is a Func: the Go SDK's IMDS client, as an application configures
// it by default (IMDSv1 fallback allowed), reads args[1] from the endpoint
// args[0] and prints it.
func sdkGet(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want ENDPOINT PATH, got %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := imds.New(imds.Options{Endpoint: args[0], ClientEnableState: imds.ClientEnabled})
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: args[1]})
	if err != nil {
		return err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		return err
	}
	fmt.Print(string(b))
	return nil
}

// An SDK in a container one router hop from an instance with hop limit 1
// never gets its token answers, falls back to IMDSv1, and is classified
// v1-fallback with the hop limit named; the same SDK on the instance itself
// is v2.
func TestMigrationFallbackBehindHopLimit(t *testing.T) {
	Require(t, "curl")
	top := newTopology(t)
	data := t.TempDir()
	cfg := fmt.Sprintf(`instances:
  - instance-id: %s
    addresses: [%s]
    metadata-options: {http-tokens: optional, http-put-response-hop-limit: 1}
  - instance-id: %s
    addresses: [%s]
    metadata-options: {http-tokens: optional, http-put-response-hop-limit: 1}
`, vmID, top.vm.v4, ctrAID, top.containerA.v4)
	path := filepath.Join(t.TempDir(), "imds.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := top.host.Start(t, imdsBin, "serve", "--listen", hostPort(false, 80),
		"--admin-listen", "127.0.0.1:1339", "--config", path, "--data-dir", data)
	srv.WaitStderr(t, "control plane listening", 1, 15*time.Second)

	endpoint := "http://" + hostPort(false, 80)
	for _, c := range []struct {
		name string
		ns   *Namespace
		want string
	}{{"instance", top.vm.ns, vmID}, {"container", top.container, ctrAID}} {
		r := c.ns.RunFunc(t, "sdk-get", endpoint, "instance-id")
		if r.ExitCode != 0 || r.Stdout != c.want {
			t.Fatalf("Go SDK in the %s: exit %d, %q, stderr %s; want %s", c.name, r.ExitCode, r.Stdout, r.Stderr, c.want)
		}
		t.Logf("Go SDK in the %s read its instance id in %v", c.name, r.Elapsed.Round(time.Millisecond))
	}

	r := top.host.Run(t, imdsBin, "migration", "--json", "--admin-url", "http://127.0.0.1:1339", "--data-dir", data)
	if r.ExitCode != 0 {
		t.Fatalf("imds migration --json: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	var view []migration.Instance
	if err := json.Unmarshal([]byte(r.Stdout), &view); err != nil {
		t.Fatalf("imds migration --json: %v\n%s", err, r.Stdout)
	}
	got := map[string]migration.Instance{}
	for _, in := range view {
		got[in.InstanceID] = in
	}
	vm, ctr := got[vmID], got[ctrAID]
	if len(vm.Callers) != 1 || vm.Callers[0].Class != migration.ClassV2 || !vm.Ready {
		t.Errorf("the instance's own SDK: %+v; want one v2 caller, ready", vm)
	}
	if len(ctr.Callers) != 1 {
		t.Fatalf("the container: %+v; want one caller", ctr)
	}
	c := ctr.Callers[0]
	if c.Class != migration.ClassV1Fallback || c.SDK != migration.SDKGoV2 || c.Address != top.containerA.v4 || ctr.Ready {
		t.Errorf("the container's SDK: class %s, sdk %s, address %s, instance ready %v; want v1-fallback, aws-sdk-go-v2 from %s, not ready",
			c.Class, c.SDK, c.Address, ctr.Ready, top.containerA.v4)
	}
	if !strings.Contains(c.Evidence, "hop limit (http-put-response-hop-limit 1)") || !strings.Contains(c.Evidence, "raise it to 2") {
		t.Errorf("evidence %q does not name the hop limit and its fix", c.Evidence)
	}
	t.Logf("container caller: %s: %s", c.Class, c.Evidence)
}
