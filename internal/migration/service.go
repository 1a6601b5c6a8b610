package migration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imds/imds/internal/imdsopt"
)

// Fleet is what the service needs of the registry.
type Fleet interface {
	// Instances returns every instance with its http-tokens setting.
	Instances(ctx context.Context) ([]InstanceInfo, error)
	// RequireTokens sets an instance's http-tokens to required.
	RequireTokens(ctx context.Context, id string) error
}

// Service answers the migration questions for the CLI, the admin API and
// the page.
type Service struct {
	rec   *Recorder
	fleet Fleet
}

// NewService returns the service over rec's records and fleet's instances.
func NewService(rec *Recorder, fleet Fleet) *Service { return &Service{rec: rec, fleet: fleet} }

// View is the fleet's view, or one instance's when id is not "".
func (s *Service) View(ctx context.Context, id string) (View, error) {
	all, err := s.fleet.Instances(ctx)
	if err != nil {
		return View{}, err
	}
	return s.rec.View(ctx, all, id)
}

// EnforceRequest asks to require tokens on instances: the ones named, or
// every ready one.
type EnforceRequest struct {
	InstanceIDs []string `json:"instance-ids,omitempty"`
	Ready       bool     `json:"ready,omitempty"`
	// DryRun says what would be done and changes nothing.
	DryRun bool `json:"dry-run,omitempty"`
}

// Refusal is an instance that was not switched because callers would break.
type Refusal struct {
	InstanceID string   `json:"instance-id"`
	Verdict    string   `json:"verdict"`
	Callers    []Caller `json:"callers"`
}

// EnforceResult says what Enforce did, or would do.
type EnforceResult struct {
	DryRun          bool      `json:"dry-run"`
	Enforced        []string  `json:"enforced"`
	AlreadyRequired []string  `json:"already-required"`
	Refused         []Refusal `json:"refused"`
}

// RequestError: the request itself is wrong; nothing was changed.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

// Enforce sets http-tokens required on the ready instances among those asked
// for and refuses, naming the callers, the ones where a caller would break.
// Unknown instance ids fail the whole request before anything changes.
func (s *Service) Enforce(ctx context.Context, req EnforceRequest) (EnforceResult, error) {
	res := EnforceResult{DryRun: req.DryRun, Enforced: []string{}, AlreadyRequired: []string{}, Refused: []Refusal{}}
	switch {
	case req.Ready && len(req.InstanceIDs) > 0:
		return res, &RequestError{"name instances or ask for every ready one (ready), not both"}
	case !req.Ready && len(req.InstanceIDs) == 0:
		return res, &RequestError{"name the instances to enforce, or ask for every ready one (ready)"}
	}
	v, err := s.View(ctx, "")
	if err != nil {
		return res, err
	}
	byID := map[string]*Instance{}
	for i := range v.Instances {
		byID[v.Instances[i].InstanceID] = &v.Instances[i]
	}
	targets := req.InstanceIDs
	if req.Ready {
		targets = nil
		for _, in := range v.Instances {
			if in.HTTPTokens != string(imdsopt.Required) && in.Ready {
				targets = append(targets, in.InstanceID)
			}
		}
	}
	var unknown []string
	for _, id := range targets {
		if byID[id] == nil {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return res, fmt.Errorf("%s: %w; nothing was changed", strings.Join(unknown, ", "), ErrUnknownInstance)
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	var errs []error
	for _, id := range targets {
		in := byID[id]
		switch {
		case in.HTTPTokens == string(imdsopt.Required):
			res.AlreadyRequired = append(res.AlreadyRequired, id)
		case !in.Ready:
			res.Refused = append(res.Refused, Refusal{InstanceID: id, Verdict: in.Verdict, Callers: in.Breaking()})
		case req.DryRun:
			res.Enforced = append(res.Enforced, id)
		default:
			if err := s.fleet.RequireTokens(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("require tokens on %s: %w", id, err))
				continue
			}
			res.Enforced = append(res.Enforced, id)
		}
	}
	return res, errors.Join(errs...)
}
