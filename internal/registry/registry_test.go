package registry

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/imds/imds/internal/imdsopt"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
)

func newRegistry(t *testing.T) *Registry {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st, func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) })
}

func ptr[T any](v T) *T { return &v }

func TestResolvePrecedence(t *testing.T) {
	v2 := &Image{ImdsSupport: "v2.0"}
	for _, tc := range []struct {
		name string
		spec config.MetadataOptions
		d    Defaults
		img  *Image
		want Options
	}{
		{"built-in", config.MetadataOptions{}, Defaults{}, nil,
			Options{"optional", 1, "enabled", "disabled", "disabled"}},
		{"image v2.0", config.MetadataOptions{}, Defaults{}, v2,
			Options{"required", 2, "enabled", "disabled", "disabled"}},
		// EC2's documented example: account hop limit 1 beats the AMI's 2.
		{"account beats image", config.MetadataOptions{}, Defaults{HTTPPutResponseHopLimit: 1}, v2,
			Options{"required", 1, "enabled", "disabled", "disabled"}},
		{"account V1 or V2 beats image", config.MetadataOptions{}, Defaults{HTTPTokens: "optional"}, v2,
			Options{"optional", 2, "enabled", "disabled", "disabled"}},
		{"launch beats account", config.MetadataOptions{HTTPTokens: "optional", HTTPPutResponseHopLimit: 3}, Defaults{HTTPTokens: "required", HTTPPutResponseHopLimit: 2}, v2,
			Options{"optional", 3, "enabled", "disabled", "disabled"}},
		{"account only", config.MetadataOptions{}, Defaults{HTTPTokens: "required", HTTPEndpoint: "disabled", InstanceMetadataTags: "enabled"}, nil,
			Options{"required", 1, "disabled", "disabled", "enabled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Resolve(tc.spec, tc.d, tc.img)); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultsApplyAtRegistrationOnly(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	before, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a", AvailabilityZone: "eu-west-1a"}, store.Absent, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ModifyDefaults(ctx, "eu-west-1", DefaultChanges{HTTPTokens: ptr[imdsopt.Tokens]("required"), HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](2)}); err != nil {
		t.Fatal(err)
	}
	after, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000b", AvailabilityZone: "eu-west-1b"}, store.Absent, "")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000c", AvailabilityZone: "us-east-1a"}, store.Absent, "")
	again, _ := r.Instance(ctx, before.Spec.InstanceID)
	if again.Options.HTTPTokens != "optional" {
		t.Errorf("existing instance changed by new defaults: %+v", again.Options)
	}
	if after.Options.HTTPTokens != "required" || after.Options.HTTPPutResponseHopLimit != 2 {
		t.Errorf("instance registered after the defaults: %+v", after.Options)
	}
	if other.Options.HTTPTokens != "optional" {
		t.Errorf("defaults of eu-west-1 applied in us-east-1: %+v", other.Options)
	}
	d, _ := r.ModifyDefaults(ctx, "eu-west-1", DefaultChanges{HTTPTokens: ptr[imdsopt.Tokens]("no-preference"), HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](-1)})
	if d != (Defaults{}) {
		t.Errorf("no-preference left %+v", d)
	}
}

func TestImageSupportAndEnforcement(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	if err := r.PutImage(ctx, Image{ImageID: "ami-0123456789abcdef0", ImdsSupport: "v2.0"}); err != nil {
		t.Fatal(err)
	}
	var inv *InvalidError
	if err := r.PutImage(ctx, Image{ImageID: "ami-0123456789abcdef0"}); !errors.As(err, &inv) {
		t.Errorf("removing imds-support v2.0: %v, want InvalidError", err)
	}
	in, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a", AMIID: "ami-0123456789abcdef0"}, store.Absent, "")
	if err != nil {
		t.Fatal(err)
	}
	if in.Options.HTTPTokens != "required" || in.Options.HTTPPutResponseHopLimit != 2 {
		t.Errorf("instance of a v2.0 image: %+v", in.Options)
	}

	if _, err := r.ModifyDefaults(ctx, "us-east-1", DefaultChanges{HTTPTokensEnforced: ptr[imdsopt.State]("enabled")}); err != nil {
		t.Fatal(err)
	}
	_, err = r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000b", MetadataOptions: config.MetadataOptions{HTTPTokens: "optional"}}, store.Absent, "")
	if !errors.As(err, &inv) {
		t.Errorf("optional tokens under HttpTokensEnforced: %v, want InvalidError", err)
	}
	if _, err := r.ModifyOptions(ctx, "i-0000000000000000a", OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("optional")}); !errors.As(err, &inv) {
		t.Errorf("modify to optional under HttpTokensEnforced: %v, want InvalidError", err)
	}
}

func TestAddressesAreUnique(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	if _, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}}, store.Absent, ""); err != nil {
		t.Fatal(err)
	}
	_, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000b", Addresses: []string{"10.0.0.2", "::ffff:10.0.0.1"}}, store.Absent, "")
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("second claim of 10.0.0.1: %v, want ErrConflict", err)
	}
	if _, err := r.Instance(ctx, "i-0000000000000000b"); err == nil {
		t.Error("the refused instance was registered")
	}
	// 10.0.0.2 was released when the write failed.
	if _, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000c", Addresses: []string{"10.0.0.2"}}, store.Absent, ""); err != nil {
		t.Errorf("10.0.0.2 after the failed write: %v", err)
	}
	// Moving an address: the old owner gives it up, then another takes it.
	a, _ := r.Instance(ctx, "i-0000000000000000a")
	a.Spec.Addresses = []string{"10.0.0.9"}
	if _, err := r.Put(ctx, a.Spec, a.Revision, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000d", Addresses: []string{"10.0.0.1"}}, store.Absent, ""); err != nil {
		t.Errorf("10.0.0.1 after its owner moved: %v", err)
	}
	if err := r.Delete(ctx, "i-0000000000000000d", store.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000e", Addresses: []string{"10.0.0.1"}}, store.Absent, ""); err != nil {
		t.Errorf("10.0.0.1 after its owner was deleted: %v", err)
	}
}

func TestIfMatch(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	in, _ := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a"}, store.Absent, "")
	if _, err := r.Put(ctx, in.Spec, in.Revision, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, in.Spec, in.Revision, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("write on a stale revision: %v, want ErrConflict", err)
	}
	if err := r.Delete(ctx, "i-0000000000000000a", in.Revision); !errors.Is(err, ErrConflict) {
		t.Errorf("delete on a stale revision: %v, want ErrConflict", err)
	}
	var nf *NotFoundError
	if err := r.Delete(ctx, "i-0000000000000000f", store.Any); !errors.As(err, &nf) {
		t.Errorf("delete of a missing instance: %v, want NotFoundError", err)
	}
}

func TestModifyAndTags(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a", Tags: config.OrderedMap{{Key: "Name", Value: "a"}}}, store.Absent, "")
	in, err := r.ModifyOptions(ctx, "i-0000000000000000a", OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("required"), HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](3), InstanceMetadataTags: ptr[imdsopt.State]("enabled")})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Options{"required", 3, "enabled", "disabled", "enabled"}); in.Options != want {
		t.Errorf("options %+v, want %+v", in.Options, want)
	}
	var inv *InvalidError
	if _, err := r.ModifyOptions(ctx, "i-0000000000000000a", OptionChanges{HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](65)}); !errors.As(err, &inv) {
		t.Errorf("hop limit 65: %v", err)
	}
	var nf *NotFoundError
	if _, err := r.ModifyOptions(ctx, "i-0000000000000000f", OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("required")}); !errors.As(err, &nf) {
		t.Errorf("unknown instance: %v", err)
	}
	if err := r.CreateTags(ctx, []string{"i-0000000000000000a"}, config.OrderedMap{{Key: "Env", Value: "prod"}, {Key: "Name", Value: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTags(ctx, []string{"i-0000000000000000a"}, config.OrderedMap{{Key: "bad key", Value: "x"}}); !errors.As(err, &inv) {
		t.Errorf("a tag key metadata cannot show: %v", err)
	}
	if err := r.DeleteTags(ctx, []string{"i-0000000000000000a"}, []TagRef{{Key: "Env", Value: ptr("dev")}}); err != nil {
		t.Fatal(err)
	}
	in, _ = r.Instance(ctx, "i-0000000000000000a")
	if diff := cmp.Diff(config.OrderedMap{{Key: "Name", Value: "b"}, {Key: "Env", Value: "prod"}}, in.Spec.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	r.DeleteTags(ctx, []string{"i-0000000000000000a"}, []TagRef{{Key: "Env"}})
	in, _ = r.Instance(ctx, "i-0000000000000000a")
	if len(in.Spec.Tags) != 1 {
		t.Errorf("tags after deleting Env: %v", in.Spec.Tags)
	}
}

func TestTokenRingRotation(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	tr, err := r.EnsureTokenRing(ctx)
	if err != nil || len(tr.Keys) != 1 {
		t.Fatalf("EnsureTokenRing: %+v, %v", tr, err)
	}
	again, _ := r.EnsureTokenRing(ctx)
	if !cmp.Equal(tr, again) {
		t.Error("a second EnsureTokenRing changed the ring")
	}
	tr, _ = r.RotateTokenKey(ctx)
	if len(tr.Keys) != 2 || tr.Keys[0].ID != 2 || tr.Keys[1].Retired.IsZero() {
		t.Fatalf("after rotation: %+v", tr.Keys)
	}
	now = now.Add(7 * time.Hour)
	tr, _ = r.RotateTokenKey(ctx)
	if len(tr.Keys) != 2 || tr.Keys[0].ID != 3 || tr.Keys[1].ID != 2 {
		t.Errorf("a key retired 7h ago is still there: %+v", tr.Keys)
	}
}

// Every API that changes options refuses a value with one message form:
// the EC2 parameter, the value, and what the option wants.
func TestOptionValuesRefused(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	if _, err := r.Put(ctx, config.Instance{InstanceID: "i-0000000000000000a"}, store.Absent, ""); err != nil {
		t.Fatal(err)
	}
	modify := func(c OptionChanges) error { _, err := r.ModifyOptions(ctx, "i-0000000000000000a", c); return err }
	defaults := func(c DefaultChanges) error { _, err := r.ModifyDefaults(ctx, "us-east-1", c); return err }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"tokens", modify(OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("sometimes")}), `HttpTokens "sometimes": want one of optional, required`},
		{"tokens no-preference", modify(OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("no-preference")}), `HttpTokens "no-preference": want one of optional, required`},
		{"hop limit", modify(OptionChanges{HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](65)}), `HttpPutResponseHopLimit "65": want 1 to 64`},
		{"hop limit -1", modify(OptionChanges{HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](-1)}), `HttpPutResponseHopLimit "-1": want 1 to 64`},
		{"endpoint", modify(OptionChanges{HTTPEndpoint: ptr[imdsopt.State]("on")}), `HttpEndpoint "on": want one of enabled, disabled`},
		{"ipv6", modify(OptionChanges{HTTPProtocolIPv6: ptr[imdsopt.State]("")}), `HttpProtocolIpv6: want one of enabled, disabled`},
		{"tags", modify(OptionChanges{InstanceMetadataTags: ptr[imdsopt.State]("Enabled")}), `InstanceMetadataTags "Enabled": want one of enabled, disabled`},
		{"default tokens", defaults(DefaultChanges{HTTPTokens: ptr[imdsopt.Tokens]("always")}), `HttpTokens "always": want one of optional, required, no-preference`},
		{"default hop limit", defaults(DefaultChanges{HTTPPutResponseHopLimit: ptr[imdsopt.HopLimit](0)}), `HttpPutResponseHopLimit "0": want 1 to 64, or -1 for no preference`},
		{"default endpoint", defaults(DefaultChanges{HTTPEndpoint: ptr[imdsopt.State]("maybe")}), `HttpEndpoint "maybe": want one of enabled, disabled, no-preference`},
		{"default tags", defaults(DefaultChanges{InstanceMetadataTags: ptr[imdsopt.State]("yes")}), `InstanceMetadataTags "yes": want one of enabled, disabled, no-preference`},
		{"default enforced", defaults(DefaultChanges{HTTPTokensEnforced: ptr[imdsopt.State]("on")}), `HttpTokensEnforced "on": want one of enabled, disabled, no-preference`},
		{"image", r.PutImage(ctx, Image{ImageID: "ami-0000000000000000a", ImdsSupport: "v1.0"}), `ImdsSupport "v1.0": want v2.0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inv *InvalidError
			if !errors.As(tc.err, &inv) {
				t.Fatalf("got %v, want an InvalidError", tc.err)
			}
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	in, _ := r.Instance(ctx, "i-0000000000000000a")
	if want := (Options{"optional", 1, "enabled", "disabled", "disabled"}); in.Options != want {
		t.Errorf("refused changes left options %+v, want %+v", in.Options, want)
	}
	if d, _ := r.Defaults(ctx, "us-east-1"); d != (Defaults{}) {
		t.Errorf("refused changes left defaults %+v", d)
	}
}
