package migration

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// memFleet is the registry as Service sees it, in memory.
type memFleet struct{ tokens map[string]string }

func (f *memFleet) Instances(context.Context) ([]InstanceInfo, error) {
	var out []InstanceInfo
	for id, t := range f.tokens {
		out = append(out, InstanceInfo{ID: id, HTTPTokens: t})
	}
	return out, nil
}

func (f *memFleet) RequireTokens(_ context.Context, id string) error {
	f.tokens[id] = "required"
	return nil
}

func TestEnforce(t *testing.T) {
	const (
		legacy   = "i-0aaaaaaaaaaaaaaa1"
		clean    = "i-0bbbbbbbbbbbbbbb2"
		required = "i-0ccccccccccccccc3"
	)
	newService := func() (*Service, *memFleet) {
		f := &memFleet{tokens: map[string]string{legacy: "optional", clean: "optional", required: "required"}}
		r := NewRecorder(Options{Now: newClock().now})
		v1 := getV1(addr1, "curl/8", "/latest/meta-data/")
		v1.Instance = legacy
		r.Observe(v1)
		return NewService(r, f), f
	}
	tests := []struct {
		name    string
		req     EnforceRequest
		want    EnforceResult
		wantErr error
		tokens  map[string]string
	}{
		{
			name:   "ready ones",
			req:    EnforceRequest{Ready: true},
			want:   EnforceResult{Enforced: []string{clean}, AlreadyRequired: []string{}, Refused: []Refusal{}},
			tokens: map[string]string{legacy: "optional", clean: "required", required: "required"},
		},
		{
			name:   "dry run",
			req:    EnforceRequest{Ready: true, DryRun: true},
			want:   EnforceResult{DryRun: true, Enforced: []string{clean}, AlreadyRequired: []string{}, Refused: []Refusal{}},
			tokens: map[string]string{legacy: "optional", clean: "optional", required: "required"},
		},
		{
			name:   "named, one refused",
			req:    EnforceRequest{InstanceIDs: []string{legacy, required, clean}},
			want:   EnforceResult{Enforced: []string{clean}, AlreadyRequired: []string{required}, Refused: []Refusal{{InstanceID: legacy}}},
			tokens: map[string]string{legacy: "optional", clean: "required", required: "required"},
		},
		{
			name:    "unknown id changes nothing",
			req:     EnforceRequest{InstanceIDs: []string{clean, "i-0000000000000dead"}},
			wantErr: ErrUnknownInstance,
			tokens:  map[string]string{legacy: "optional", clean: "optional", required: "required"},
		},
		{
			name:    "neither ids nor ready",
			req:     EnforceRequest{},
			wantErr: &RequestError{},
			tokens:  map[string]string{legacy: "optional", clean: "optional", required: "required"},
		},
		{
			name:    "both ids and ready",
			req:     EnforceRequest{Ready: true, InstanceIDs: []string{clean}},
			wantErr: &RequestError{},
			tokens:  map[string]string{legacy: "optional", clean: "optional", required: "required"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newService()
			got, err := s.Enforce(t.Context(), tc.req)
			var re *RequestError
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatal(err)
			case errors.Is(tc.wantErr, ErrUnknownInstance) && !errors.Is(err, ErrUnknownInstance):
				t.Fatalf("err %v, want ErrUnknownInstance", err)
			case tc.wantErr != nil && !errors.Is(tc.wantErr, ErrUnknownInstance) && !errors.As(err, &re):
				t.Fatalf("err %v, want a RequestError", err)
			}
			if tc.wantErr == nil {
				// A refusal names the callers that would break.
				for i := range got.Refused {
					if len(got.Refused[i].Callers) != 1 || got.Refused[i].Callers[0].SDK != SDKCurl {
						t.Errorf("refusal of %s names %+v, want the curl caller", got.Refused[i].InstanceID, got.Refused[i].Callers)
					}
					got.Refused[i] = Refusal{InstanceID: got.Refused[i].InstanceID}
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tc.tokens, f.tokens); diff != "" {
				t.Errorf("http-tokens after (-want +got):\n%s", diff)
			}
		})
	}
}
