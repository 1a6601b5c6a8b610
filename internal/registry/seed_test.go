package registry

import (
	"testing"

	"github.com/imds/imds/internal/config"
)

func TestSeedKeepsAPIChanges(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	cfg := &config.Config{Instances: []config.Instance{
		{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}},
		{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2"}},
	}}
	res, err := r.Seed(ctx, cfg)
	if err != nil || res.Registered != 2 {
		t.Fatalf("first seed: %+v, %v", res, err)
	}
	// An operator changes a through the API.
	if _, err := r.ModifyOptions(ctx, "i-0000000000000000a", OptionChanges{HTTPTokens: ptr("required")}); err != nil {
		t.Fatal(err)
	}
	// A restart with the same file keeps that change.
	res, err = r.Seed(ctx, cfg)
	if err != nil || res.Unchanged != 2 || res.Updated != 0 {
		t.Fatalf("second seed: %+v, %v", res, err)
	}
	a, _ := r.Instance(ctx, "i-0000000000000000a")
	if a.Options.HTTPTokens != "required" {
		t.Errorf("restart undid an API change: %+v", a.Options)
	}
	// Editing b in the file applies to b; removing a from the file removes
	// it; an instance registered through the API stays.
	if _, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000c"}, 0, ""); err != nil {
		t.Fatal(err)
	}
	cfg.Instances = []config.Instance{{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2"}, InstanceType: "m5.large"}}
	res, err = r.Seed(ctx, cfg)
	if err != nil || res.Updated != 1 || res.Removed != 1 {
		t.Fatalf("seed after editing the file: %+v, %v", res, err)
	}
	b, _ := r.Instance(ctx, "i-0000000000000000b")
	if b.Spec.InstanceType != "m5.large" {
		t.Errorf("edited instance type not applied: %q", b.Spec.InstanceType)
	}
	if _, err := r.Instance(ctx, "i-0000000000000000c"); err != nil {
		t.Errorf("instance registered through the API: %v", err)
	}
	if _, err := r.Instance(ctx, "i-0000000000000000a"); err == nil {
		t.Error("instance removed from the file is still registered")
	}
}
