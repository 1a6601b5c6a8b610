package fleet

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/imds/imds/internal/imdsopt"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
)

// eventually polls cond until it holds; the bound only stops a hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not a correctness wait
	}
}

func TestSyncerFollowsStore(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := registry.New(st, nil)
	ctx := t.Context()
	if _, err := reg.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}, IAMRole: "r"}, store.Absent, ""); err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewManager(nil, nil)
	s := NewSyncer(SyncerOptions{Store: st, Roles: creds, Settings: Settings{DefaultInstance: "i-0000000000000000a"}})
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()

	snap := s.Fleet().Load()
	e := snap.ByAddr(netip.MustParseAddr("10.0.0.1"))
	if e == nil || snap.Default() != e {
		t.Fatalf("instance not served at its address or as the default: %v", e)
	}
	// The role is not configured yet: its leaf answers EC2's error form.
	n, ok := e.Tree.Lookup("meta-data/iam/security-credentials/r")
	if !ok {
		t.Fatal("no credentials leaf for the role")
	}
	if body, _ := n.Body(metadataRequest()); !contains(body, `"Code" : "InvalidRole"`) {
		t.Errorf("credentials of an unconfigured role:\n%s\nwant the InvalidRole error form", body)
	}

	// A new instance appears; a role appears and its instances are rebuilt.
	if _, err := reg.Put(ctx, config.Instance{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2"}}, store.Absent, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PutRole(ctx, "r", &config.Role{Static: &config.StaticSource{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret"}}, store.Absent); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new instance served", func() bool { return s.Fleet().Load().ByID("i-0000000000000000b") != nil })
	eventually(t, "role credentials served", func() bool {
		n, ok := s.Fleet().Load().ByID("i-0000000000000000a").Tree.Lookup("meta-data/iam/security-credentials/r")
		if !ok {
			return false
		}
		body, _ := n.Body(metadataRequest())
		return contains(body, "AKIAEXAMPLE")
	})

	// An option change rebuilds only that instance.
	before := s.Fleet().Load().ByID("i-0000000000000000b")
	if _, err := reg.ModifyOptions(ctx, "i-0000000000000000a", registry.OptionChanges{HTTPTokens: new(imdsopt.Required)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "option change served", func() bool {
		return s.Fleet().Load().ByID("i-0000000000000000a").Instance.Options.TokensRequired
	})
	if s.Fleet().Load().ByID("i-0000000000000000b") != before {
		t.Error("an unchanged instance was rebuilt")
	}

	// A deleted instance stops being served, and its address too.
	if err := reg.Delete(ctx, "i-0000000000000000b", store.Any); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted instance gone", func() bool {
		snap := s.Fleet().Load()
		return snap.ByID("i-0000000000000000b") == nil && snap.ByAddr(netip.MustParseAddr("10.0.0.2")) == nil
	})
	if st := s.Status(); !st.Synced || st.Instances != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestSyncerWaitRevision: once WaitRevision returns for the revision of a
// write, the published snapshot has the write, with no polling.
func TestSyncerWaitRevision(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := registry.New(st, nil)
	ctx := t.Context()
	s := NewSyncer(SyncerOptions{Store: st})
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()

	for i, id := range []string{"i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"} {
		rec, err := reg.Put(ctx, config.Instance{InstanceID: id}, store.Absent, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitRevision(ctx, rec.Revision); err != nil {
			t.Fatal(err)
		}
		if got := s.Fleet().Load().Len(); got != i+1 {
			t.Fatalf("after WaitRevision(%d): got %d instances, want %d", rec.Revision, got, i+1)
		}
	}
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if err := s.WaitRevision(short, 1<<40); err == nil {
		t.Error("WaitRevision of a revision never written returned nil with a cancelled context")
	}
}
