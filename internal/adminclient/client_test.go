package adminclient

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/controlplane"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store/boltstore"
)

type operators map[string]string

func (o operators) Secret(_ context.Context, id string) (string, bool) { s, ok := o[id]; return s, ok }

var testCreds = adminapi.Credentials{AccessKeyID: "IMDSTESTKEY", SecretAccessKey: "test-secret"}

// newServer runs the whole control plane over a bbolt store.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(controlplane.New(controlplane.Options{
		Registry:  registry.New(st, nil),
		Operators: operators{testCreds.AccessKeyID: testCreds.SecretAccessKey},
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, url string, creds adminapi.Credentials) *Client {
	t.Helper()
	c, err := New(Options{URL: url, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClient(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv.URL+"/", testCreds)
	ctx := t.Context()

	spec := config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}}
	rec, created, err := c.PutInstance(ctx, spec, Cond{Create: true})
	if err != nil || !created {
		t.Fatalf("PutInstance: created %v, %v", created, err)
	}
	if _, _, err := c.PutInstance(ctx, spec, Cond{Create: true}); !isStatus(err, http.StatusPreconditionFailed) {
		t.Errorf("second create: %v, want 412", err)
	}
	spec.Tags = config.OrderedMap{{Key: "Name", Value: "a"}}
	rec2, created, err := c.PutInstance(ctx, spec, Cond{IfMatch: rec.Revision})
	if err != nil || created {
		t.Fatalf("replace at the read revision: created %v, %v", created, err)
	}
	if _, _, err := c.PutInstance(ctx, spec, Cond{IfMatch: rec.Revision}); !isStatus(err, http.StatusPreconditionFailed) {
		t.Errorf("replace at a stale revision: %v, want 412", err)
	}
	list, err := c.Instances(ctx)
	if err != nil || len(list) != 1 || list[0].Revision != rec2.Revision {
		t.Errorf("Instances: %+v, %v", list, err)
	}
	got, err := c.Instance(ctx, "i-0000000000000000a")
	if err != nil || !cmp.Equal(got.Spec.Tags, spec.Tags) {
		t.Errorf("Instance: %+v, %v", got, err)
	}
	if _, err := c.AddEvent(ctx, "i-0000000000000000a", adminapi.EventRequest{Type: adminapi.EventSpot}); err != nil {
		t.Errorf("AddEvent: %v", err)
	}
	if rec, err := c.ClearEvents(ctx, "i-0000000000000000a"); err != nil || rec.Spec.Spot != nil {
		t.Errorf("ClearEvents: %+v, %v", rec, err)
	}
	if err := c.DeleteInstance(ctx, "i-0000000000000000a", Cond{}); err != nil {
		t.Errorf("DeleteInstance: %v", err)
	}
	var ae *Error
	if _, err := c.Instance(ctx, "i-0000000000000000a"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != adminapi.CodeNotFound {
		t.Errorf("Instance after delete: %v", err)
	}

	role := &config.Role{Static: &config.StaticSource{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "s3cr3t-s3cr3t"}}
	if r, created, err := c.PutRole(ctx, "web", role, Cond{}); err != nil || !created || r.Source != "static" {
		t.Fatalf("PutRole: %+v %v %v", r, created, err)
	}
	if rs, err := c.Roles(ctx); err != nil || len(rs) != 1 || rs[0].Name != "web" {
		t.Errorf("Roles: %+v, %v", rs, err)
	}
	if r, err := c.Role(ctx, "web"); err != nil || strings.Contains(fmtAny(r.Role), "s3cr3t") {
		t.Errorf("Role: %+v, %v", r, err)
	}
	if err := c.DeleteRole(ctx, "web", Cond{}); err != nil {
		t.Errorf("DeleteRole: %v", err)
	}

	rl, err := c.PutRelay(ctx, "hv1", []string{"10.1.0.1"}, nil)
	if err != nil || len(rl.Secret) != 32 {
		t.Fatalf("PutRelay: %+v, %v", rl, err)
	}
	if rls, err := c.Relays(ctx); err != nil || len(rls) != 1 || rls[0].Secret != nil {
		t.Errorf("Relays: %+v, %v", rls, err)
	}
	if err := c.DeleteRelay(ctx, "hv1"); err != nil {
		t.Errorf("DeleteRelay: %v", err)
	}
	if keys, err := c.RotateTokenKey(ctx); err != nil || keys.Signing != 2 {
		t.Errorf("RotateTokenKey: %+v, %v", keys, err)
	}
}

func fmtAny(v any) string { b, _ := json.Marshal(v); return string(b) }

func isStatus(err error, status int) bool {
	var ae *Error
	return errors.As(err, &ae) && ae.Status == status
}

func TestClientErrors(t *testing.T) {
	srv := newServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	var ue *UnreachableError
	if _, err := newClient(t, closed, testCreds).Instances(t.Context()); !errors.As(err, &ue) || ue.URL != closed {
		t.Errorf("closed port: %v, want an UnreachableError naming %s", err, closed)
	}
	bad := adminapi.Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: "guess"}
	if _, err := newClient(t, srv.URL, bad).Instances(t.Context()); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong secret: %v, want 401", err)
	}
	for _, u := range []string{"127.0.0.1:1339", "ftp://x", "http://"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
}
