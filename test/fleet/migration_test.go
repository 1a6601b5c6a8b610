package fleet

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/migration"
	"github.com/imds/imds/internal/store/etcdstore/etcdtest"
)

// summarize is a replica's view as comparable lines: instance, readiness,
// and each caller's address, class and request counts.
func summarize(v *migration.View) []string {
	var out []string
	for _, in := range v.Instances {
		out = append(out, fmt.Sprintf("%s ready=%v", in.InstanceID, in.Ready))
		for _, c := range in.Callers {
			out = append(out, fmt.Sprintf("%s %s %s %s put=%d v2=%d v1=%d", in.InstanceID, c.Address, c.UserAgent, c.Class, c.Requests.TokenPuts, c.Requests.V2, c.Requests.V1))
		}
	}
	slices.Sort(out)
	return out
}

// Two replicas on one etcd show the same migration view: each flushes its
// records to the store, and each merges the other's with its own.
func TestMigrationAcrossReplicas(t *testing.T) {
	needLoopbackRange(t)
	member := etcdtest.Start(t)
	cfg := writeFile(t, "fleet.yaml", replicaConfig+"migration: {flush-interval: 1s}\n")
	var reps []*proc
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("replica", i))
		reps = append(reps, startIMDS(t, dir, "--store", "etcd", "--etcd-endpoints", member.ClientURL, "--config", cfg))
	}
	a, b := reps[0], reps[1]
	x, y := from(addrX), from(addrY)

	// x: IMDSv1 through a, IMDSv2 through b; y: IMDSv2 through b only.
	if r := x.instanceID(a.URL(), ""); r.Status != 200 {
		t.Fatalf("IMDSv1 from x through a: %v", r)
	}
	if r := x.instanceID(b.URL(), x.token(t, b.URL())); r.Status != 200 {
		t.Fatalf("IMDSv2 from x through b: %v", r)
	}
	if r := y.instanceID(b.URL(), y.token(t, b.URL())); r.Status != 200 {
		t.Fatalf("IMDSv2 from y through b: %v", r)
	}

	want := []string{
		idX + " 127.0.0.1 Go-http-client/1.1 v1 put=1 v2=1 v1=1",
		idX + " ready=false",
		idY + " 127.0.0.3 Go-http-client/1.1 v2 put=1 v2=1 v1=0",
		idY + " ready=true",
	}
	for i, p := range reps {
		c := admin(t, p)
		eventually(t, 20*time.Second, func() string {
			v, err := c.Migration(t.Context())
			if err != nil {
				return err.Error()
			}
			if diff := cmp.Diff(want, summarize(v)); diff != "" {
				return fmt.Sprintf("replica %d's view (-want +got):\n%s", i, diff)
			}
			return ""
		})
	}
	// Enforcing through either replica sees the other's IMDSv1 caller.
	_, stderr, code := runIMDS(t, "", "migration", "enforce", idX, "--admin-url", b.AdminURL, "--data-dir", b.DataDir)
	if code != 1 || !strings.Contains(stderr, "refused "+idX) {
		t.Errorf("enforce %s through b: exit %d, %s; want refused for a's IMDSv1 caller", idX, code, stderr)
	}
}
