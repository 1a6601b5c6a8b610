package scenario

import (
	"strings"
	"testing"
	"time"
)

const spotReclaim = `steps:
  - at: 0s
    name: reclaim
    filters:
      tag:pool: spot
      instance-type: [m5.large, c5.large]
    fraction: 0.3
    seed: 7
    event: {type: rebalance}
  - at: 30s
    same-as: reclaim
    event: {type: spot, action: terminate, in: 2m}
`

func TestParse(t *testing.T) {
	if _, err := Parse([]byte(spotReclaim)); err != nil {
		t.Fatal(err)
	}
	// A same-as naming a step further down the file is refused.
	_, err := Parse([]byte("steps:\n  - at: 30s\n    same-as: reclaim\n    state: stop\n  - at: 0s\n    name: reclaim\n    instances: [i-01234567]\n    event: {type: rebalance}\n"))
	if err == nil || !strings.Contains(err.Error(), "earlier step") {
		t.Fatalf("a step naming a later step: %v", err)
	}
	s, err := Parse([]byte(`steps:
  - at: 0s
    name: reclaim
    filters: {tag:pool: spot, instance-type: [m5.large, c5.large]}
    fraction: 0.3
    seed: 7
    event: {type: rebalance}
  - at: 2m
    same-as: reclaim
    state: terminate
  - at: 30s
    same-as: reclaim
    event: {type: spot, action: terminate, in: 2m}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Steps) != 3 || time.Duration(s.Steps[1].At) != 30*time.Second || s.Steps[2].State != "terminate" {
		t.Errorf("steps not in time order: %+v", s.Steps)
	}
	if got := s.Steps[0].Filters["instance-type"]; len(got) != 2 || s.Steps[0].Filters["tag:pool"][0] != "spot" {
		t.Errorf("filters %+v", s.Steps[0].Filters)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, mentions string }{
		{"empty", `steps: []`, "at least one step"},
		{"unknown key", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    event: {type: spot}\n    when: now\n", "when"},
		{"bad at", "steps:\n  - at: soon\n    instances: [i-01234567]\n    event: {type: spot}\n", `"soon"`},
		{"no action", "steps:\n  - at: 0s\n    instances: [i-01234567]\n", "exactly one of event, state"},
		{"two actions", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    state: stop\n    event: {type: spot}\n", "exactly one of event, state"},
		{"no target", "steps:\n  - at: 0s\n    event: {type: spot}\n", "exactly one target"},
		{"bad id", "steps:\n  - at: 0s\n    instances: [vm-1]\n    event: {type: spot}\n", `"vm-1"`},
		{"bad type", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    event: {type: volcano}\n", "event.type"},
		{"bad state", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    state: reboot\n", "state"},
		{"state on filters", "steps:\n  - at: 0s\n    filters: {tag:a: b}\n    state: stop\n", "not on filters"},
		{"cancel without same-as", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    cancel: true\n", "same-as"},
		{"unknown same-as", "steps:\n  - at: 0s\n    same-as: nope\n    cancel: true\n", `"nope"`},
		{"bad fraction", "steps:\n  - at: 0s\n    fraction: 2\n    event: {type: spot}\n", "fraction"},
		{"bad lifecycle", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    event: {type: lifecycle, lifecycle-state: Asleep}\n", "lifecycle-state"},
		{"bad in", "steps:\n  - at: 0s\n    instances: [i-01234567]\n    event: {type: spot, in: later}\n", "event.in"},
		{"duplicate name", "steps:\n  - at: 0s\n    name: a\n    instances: [i-01234567]\n    event: {type: spot}\n  - at: 1s\n    name: a\n    instances: [i-01234567]\n    event: {type: spot}\n", "earlier step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("got %v, want an error mentioning %s", err, tc.mentions)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(spotReclaim))
	f.Add([]byte("steps:\n  - at: 0s\n    name: reboot\n    instances: [i-0b000000000000002]\n    event: {type: maintenance, code: system-reboot, in: 1h, duration: 2h}\n  - at: 10s\n    same-as: reboot\n    reschedule: 3h\n"))
	f.Add([]byte("steps:\n  - at: 0s\n    instances: [i-01234567]\n    state: stop\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			// It names the file's part or the step at fault.
			if msg := err.Error(); !strings.HasPrefix(msg, "scenario: ") && !strings.HasPrefix(msg, "steps[") {
				t.Fatalf("error %q does not say where the scenario is wrong", err)
			}
			return
		}
		// What is accepted is what Parse promises: steps in time order,
		// each with one action and one target, and same-as naming an
		// earlier step.
		names := map[string]bool{}
		for i, st := range s.Steps {
			if i > 0 && st.At < s.Steps[i-1].At {
				t.Fatalf("steps out of order: %v before %v", s.Steps[i-1].At, st.At)
			}
			actions, targets := 0, 0
			for _, set := range []bool{st.Event != nil, st.State != "", st.Cancel, st.Complete, st.Reschedule != nil} {
				if set {
					actions++
				}
			}
			for _, set := range []bool{len(st.Instances) > 0, len(st.Filters) > 0 || st.Fraction != 0, st.SameAs != ""} {
				if set {
					targets++
				}
			}
			if actions != 1 || targets != 1 || st.At < 0 || st.Fraction < 0 || st.Fraction > 1 ||
				st.SameAs != "" && !names[st.SameAs] || st.Name != "" && names[st.Name] {
				t.Fatalf("accepted step %d: %+v", i, st)
			}
			if st.Name != "" {
				names[st.Name] = true
			}
		}
	})
}
