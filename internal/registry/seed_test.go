package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/imds/imds/internal/imdsopt"

	"github.com/google/go-cmp/cmp"

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
	if _, err := r.ModifyOptions(ctx, "i-0000000000000000a", OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("required")}); err != nil {
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

// TestSeedAllOrNothing: a file that validates but breaks a registry rule
// writes nothing, and the error names the instance and the rule.
func TestSeedAllOrNothing(t *testing.T) {
	const (
		a, b, c, x = "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c", "i-00000000000000001"
	)
	for _, tc := range []struct {
		name      string
		instances []config.Instance
		want      []string // in the error
	}{
		{"address of an API instance", []config.Instance{
			{InstanceID: a, Addresses: []string{"10.0.0.1"}},
			{InstanceID: b, Addresses: []string{"10.0.9.9"}},
		}, []string{"instance " + b, RuleOneInstancePerAddress, "10.0.9.9 is already an address of " + x}},
		{"tokens enforced", []config.Instance{
			{InstanceID: a, Addresses: []string{"10.0.0.1"}},
			{InstanceID: c, AvailabilityZone: "eu-west-1a", MetadataOptions: config.MetadataOptions{HTTPTokens: "optional"}},
		}, []string{"instance " + c, RuleEnforcedTokens, "HttpTokensEnforced"}},
		{"both", []config.Instance{
			{InstanceID: b, Addresses: []string{"10.0.9.9"}},
			{InstanceID: c, AvailabilityZone: "eu-west-1a", MetadataOptions: config.MetadataOptions{HTTPTokens: "optional"}},
		}, []string{"instance " + b, "instance " + c}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegistry(t)
			ctx := t.Context()
			if _, err := r.Put(ctx, config.Instance{InstanceID: x, Addresses: []string{"10.0.9.9"}}, 0, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := r.ModifyDefaults(ctx, "eu-west-1", DefaultChanges{HTTPTokens: ptr[imdsopt.Tokens]("required"), HTTPTokensEnforced: ptr[imdsopt.State]("enabled")}); err != nil {
				t.Fatal(err)
			}
			before, _, _ := r.st.List(ctx, "")
			_, err := r.Seed(ctx, &config.Config{
				Instances: tc.instances,
				Roles:     map[string]*config.Role{"web": {Static: &config.StaticSource{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "secret"}}},
			})
			if err == nil {
				t.Fatal("Seed succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Errorf("error %T is not a *RuleError", err)
			}
			after, _, _ := r.st.List(ctx, "")
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("the store changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestSeedMovesAddresses: an address may move to another instance in one
// file, from an instance the file removes or changes, whatever the order.
func TestSeedMovesAddresses(t *testing.T) {
	const a, b, c = "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"
	r := newRegistry(t)
	ctx := t.Context()
	if _, err := r.Seed(ctx, &config.Config{Instances: []config.Instance{
		{InstanceID: a, Addresses: []string{"10.0.0.1"}},
		{InstanceID: b, Addresses: []string{"10.0.0.2"}},
	}}); err != nil {
		t.Fatal(err)
	}
	// c takes a's address (a leaves the file), and b takes... nothing new,
	// but gives 10.0.0.2 to c, listed first.
	res, err := r.Seed(ctx, &config.Config{Instances: []config.Instance{
		{InstanceID: c, Addresses: []string{"10.0.0.1", "10.0.0.2"}},
		{InstanceID: b, Addresses: []string{"10.0.0.3"}},
	}})
	if err != nil || res.Registered != 1 || res.Updated != 1 || res.Removed != 1 {
		t.Fatalf("Seed: %+v, %v", res, err)
	}
	in, err := r.Instance(ctx, c)
	if err != nil || len(in.Spec.Addresses) != 2 {
		t.Fatalf("instance c: %+v, %v", in, err)
	}
	// Two instances exchanging addresses cannot be ordered.
	_, err = r.Seed(ctx, &config.Config{Instances: []config.Instance{
		{InstanceID: c, Addresses: []string{"10.0.0.3"}},
		{InstanceID: b, Addresses: []string{"10.0.0.1"}},
	}})
	if err == nil || !strings.Contains(err.Error(), "exchange addresses") {
		t.Fatalf("swap: %v, want an error saying the instances exchange addresses", err)
	}
}

// TestPutInstancesAllOrNothing: a batch with one instance that breaks a rule
// writes none of them.
func TestPutInstancesAllOrNothing(t *testing.T) {
	const a, b, x = "i-0000000000000000a", "i-0000000000000000b", "i-00000000000000001"
	r := newRegistry(t)
	ctx := t.Context()
	if _, err := r.Put(ctx, config.Instance{InstanceID: x, Addresses: []string{"10.0.9.9"}}, 0, ""); err != nil {
		t.Fatal(err)
	}
	_, err := r.PutInstances(ctx, []config.Instance{
		{InstanceID: a, Addresses: []string{"10.0.0.1"}},
		{InstanceID: b, Addresses: []string{"10.0.9.9"}},
	})
	if err == nil || !strings.Contains(err.Error(), "instance "+b) || !errors.Is(err, ErrConflict) {
		t.Fatalf("PutInstances: %v, want a conflict naming %s", err, b)
	}
	if _, err := r.Instance(ctx, a); err == nil {
		t.Error("instance a was registered")
	}
	res, err := r.PutInstances(ctx, []config.Instance{
		{InstanceID: a, Addresses: []string{"10.0.0.1"}},
		{InstanceID: x, Addresses: []string{"10.0.9.8"}},
		{InstanceID: b, Addresses: []string{"10.0.9.9"}},
	})
	if err != nil || len(res) != 3 {
		t.Fatalf("PutInstances: %v, %v", res, err)
	}
}
