// Package scenario plays a file of timed event steps against a running imds
// through its admin API: a rebalance recommendation, then a Spot
// interruption, then a terminated instance; an Auto Scaling group taking
// instances out of service; a maintenance window that is moved.
package scenario

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
)

// Scenario is a parsed, checked scenario file.
type Scenario struct {
	Steps []Step `yaml:"steps"`
}

// Step is one timed step: at its time, one action on its target.
type Step struct {
	// At is when the step happens, from the start of the run (30s, 2m).
	At   Duration `yaml:"at"`
	Name string   `yaml:"name"`

	// The target: instance ids, or every running instance matching Filters
	// (a Fraction of them, chosen by Seed), or the instances step SameAs
	// chose.
	Instances []string        `yaml:"instances"`
	Filters   map[string]List `yaml:"filters"`
	Fraction  float64         `yaml:"fraction"`
	Seed      int64           `yaml:"seed"`
	SameAs    string          `yaml:"same-as"`

	// The action, exactly one of these.
	Event *Event `yaml:"event"`
	// State is stop, start or terminate.
	State string `yaml:"state"`
	// Cancel and Complete move the maintenance event that step SameAs added
	// to history; Reschedule moves its start to this long after the step.
	Cancel     bool      `yaml:"cancel"`
	Complete   bool      `yaml:"complete"`
	Reschedule *Duration `yaml:"reschedule"`
}

// Event is the event a step injects: the admin API's event request.
type Event struct {
	Type           string `yaml:"type"`
	Action         string `yaml:"action"`
	Code           string `yaml:"code"`
	Description    string `yaml:"description"`
	In             string `yaml:"in"`
	Duration       string `yaml:"duration"`
	LifecycleState string `yaml:"lifecycle-state"`
}

func (e *Event) request() adminapi.EventRequest {
	return adminapi.EventRequest{Type: e.Type, Action: e.Action, Code: e.Code, Description: e.Description,
		In: e.In, Duration: e.Duration, LifecycleState: e.LifecycleState}
}

// Duration is a Go duration in YAML (30s, 2m, 1h30m).
type Duration time.Duration

// UnmarshalYAML reads a duration such as 30s.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 30s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 2m", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// List is a string or a list of strings in YAML.
type List []string

// UnmarshalYAML reads a scalar or a sequence of scalars.
func (l *List) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = List{n.Value}
		return nil
	}
	var vs []string
	if err := n.Decode(&vs); err != nil {
		return fmt.Errorf("line %d: want a value or a list of values", n.Line)
	}
	*l = vs
	return nil
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Parse reads and checks a scenario. Unknown keys are refused; every error
// names the step and the key.
func Parse(data []byte) (*Scenario, error) {
	var s Scenario
	if err := config.DecodeYAML(data, &s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if len(s.Steps) == 0 {
		return nil, errors.New("scenario: steps: want at least one step")
	}
	var errs []error
	names := map[string]time.Duration{}
	for i := range s.Steps {
		st := &s.Steps[i]
		bad := func(key, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s: %s", st.label(i), key, fmt.Sprintf(format, args...)))
		}
		if st.Name != "" {
			if !nameRe.MatchString(st.Name) {
				bad("name", "%q: want letters, digits, - and _ (at most 64)", st.Name)
			}
			if _, dup := names[st.Name]; dup {
				bad("name", "%q is the name of an earlier step", st.Name)
			}
		}
		actions := 0
		for _, set := range []bool{st.Event != nil, st.State != "", st.Cancel, st.Complete, st.Reschedule != nil} {
			if set {
				actions++
			}
		}
		if actions != 1 {
			bad("event", "give exactly one of event, state, cancel, complete and reschedule")
		}
		targets := 0
		for _, set := range []bool{len(st.Instances) > 0, len(st.Filters) > 0 || st.Fraction != 0, st.SameAs != ""} {
			if set {
				targets++
			}
		}
		if targets != 1 {
			bad("instances", "give exactly one target: instances, filters (and/or fraction), or same-as")
		}
		for _, id := range st.Instances {
			if err := config.ValidateInstanceID(id); err != nil {
				bad("instances", "%v", err)
			}
		}
		if st.Fraction < 0 || st.Fraction > 1 {
			bad("fraction", "%v: want a number in (0, 1]", st.Fraction)
		}
		for k, vs := range st.Filters {
			if len(vs) == 0 {
				bad("filters."+k, "give at least one value")
			}
		}
		if st.SameAs != "" {
			at, ok := names[st.SameAs]
			switch {
			case !ok:
				bad("same-as", "%q is not the name of an earlier step", st.SameAs)
			case at > time.Duration(st.At):
				bad("same-as", "step %q happens later (at %v)", st.SameAs, at)
			}
		}
		if (st.Cancel || st.Complete || st.Reschedule != nil) && st.SameAs == "" {
			bad("same-as", "cancel, complete and reschedule act on the maintenance event an earlier step added: name it in same-as")
		}
		if st.State != "" {
			if !slices.Contains([]string{adminapi.StateStop, adminapi.StateStart, adminapi.StateTerminate}, st.State) {
				bad("state", "%q: want stop, start or terminate", st.State)
			}
			if len(st.Filters) > 0 || st.Fraction != 0 {
				bad("state", "acts on instances or same-as, not on filters")
			}
		}
		if e := st.Event; e != nil {
			types := []string{adminapi.EventSpot, adminapi.EventRebalance, adminapi.EventMaintenance, adminapi.EventLifecycle}
			if !slices.Contains(types, e.Type) {
				bad("event.type", "%q: want one of %s", e.Type, strings.Join(types, ", "))
			}
			for key, v := range map[string]string{"event.in": e.In, "event.duration": e.Duration} {
				if v == "" {
					continue
				}
				if d, err := time.ParseDuration(v); err != nil || d < 0 {
					bad(key, "%q: want a duration such as 2m", v)
				}
			}
			if e.Type == adminapi.EventLifecycle {
				if err := config.ValidateLifecycleState(e.LifecycleState); err != nil {
					bad("event.lifecycle-state", "%q: %v", e.LifecycleState, err)
				}
			}
		}
		if st.Name != "" {
			names[st.Name] = time.Duration(st.At)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortStableFunc(s.Steps, func(a, b Step) int { return cmp.Compare(a.At, b.At) })
	return &s, nil
}

func (st *Step) label(i int) string {
	if st.Name != "" {
		return fmt.Sprintf("steps[%d] (%s)", i, st.Name)
	}
	return fmt.Sprintf("steps[%d]", i)
}
