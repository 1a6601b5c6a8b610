package imdsopt

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantMsg string // "" for valid
		values  []string
	}{
		{"optional", Tokens("optional").Validate(), "", nil},
		{"required", Required.Validate(), "", nil},
		{"tokens sometimes", Tokens("sometimes").Validate(), "want one of optional, required", []string{"optional", "required"}},
		{"tokens empty", Tokens("").Validate(), "want one of optional, required", []string{"optional", "required"}},
		{"tokens upper case", Tokens("Required").Validate(), "want one of optional, required", []string{"optional", "required"}},
		{"tokens no-preference", Tokens(NoPreference).Validate(), "want one of optional, required", []string{"optional", "required"}},
		{"default tokens no-preference", Tokens(NoPreference).ValidateDefault(), "", nil},
		{"default tokens required", Required.ValidateDefault(), "", nil},
		{"default tokens bad", Tokens("always").ValidateDefault(), "want one of optional, required, no-preference", []string{"optional", "required", "no-preference"}},
		{"enabled", State("enabled").Validate(), "", nil},
		{"disabled", Disabled.Validate(), "", nil},
		{"state on", State("on").Validate(), "want one of enabled, disabled", []string{"enabled", "disabled"}},
		{"default state no-preference", State(NoPreference).ValidateDefault(), "", nil},
		{"default state bad", State("maybe").ValidateDefault(), "want one of enabled, disabled, no-preference", []string{"enabled", "disabled", "no-preference"}},
		{"hop limit 1", HopLimit(1).Validate(), "", nil},
		{"hop limit 64", HopLimit(64).Validate(), "", nil},
		{"hop limit 0", HopLimit(0).Validate(), "want 1 to 64", nil},
		{"hop limit 65", HopLimit(65).Validate(), "want 1 to 64", nil},
		{"hop limit -1", HopLimit(-1).Validate(), "want 1 to 64", nil},
		{"default hop limit -1", HopLimit(NoPreferenceHopLimit).ValidateDefault(), "", nil},
		{"default hop limit 0", HopLimit(0).ValidateDefault(), "want 1 to 64, or -1 for no preference", nil},
		{"imds-support v2.0", ImdsSupport("v2.0").Validate(), "", nil},
		{"imds-support v1.0", ImdsSupport("v1.0").Validate(), "want v2.0", []string{"v2.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantMsg == "" {
				if tc.err != nil {
					t.Fatalf("got %v, want valid", tc.err)
				}
				return
			}
			ve, ok := errors.AsType[*ValueError](tc.err)
			if !ok {
				t.Fatalf("got %v (%T), want a *ValueError", tc.err, tc.err)
			}
			if got := ve.Error(); got != tc.wantMsg {
				t.Errorf("got %q, want %q", got, tc.wantMsg)
			}
			if diff := cmp.Diff(tc.values, ve.Values()); diff != "" {
				t.Errorf("Values (-want +got):\n%s", diff)
			}
		})
	}
}

// The value refused is kept as given, for the message each entry point
// writes.
func TestValueErrorKeepsValue(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{Tokens("sometimes").Validate(), "sometimes"},
		{State("").ValidateDefault(), ""},
		{HopLimit(65).ValidateDefault(), "65"},
	} {
		ve, _ := errors.AsType[*ValueError](tc.err)
		if ve == nil || ve.Value != tc.want {
			t.Errorf("%v: value %+v, want %q", tc.err, ve, tc.want)
		}
	}
}

// Values leaves OneOf as it is, however often it is asked.
func TestValuesDoNotAlias(t *testing.T) {
	ve, _ := errors.AsType[*ValueError](State("x").ValidateDefault())
	ve.Values()
	if diff := cmp.Diff([]string{"enabled", "disabled", "no-preference"}, ve.Values()); diff != "" {
		t.Errorf("Values (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"enabled", "disabled"}, ve.OneOf); diff != "" {
		t.Errorf("OneOf (-want +got):\n%s", diff)
	}
}
