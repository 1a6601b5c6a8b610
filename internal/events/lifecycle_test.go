package events

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

var t0 = time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)

func rec(spec config.Instance) *registry.Instance {
	if spec.InstanceID == "" {
		spec.InstanceID = "i-0123456789abcdef0"
	}
	return &registry.Instance{Spec: spec}
}

func TestSpotTimeStopsOrTerminates(t *testing.T) {
	for _, tc := range []struct {
		action     string
		mid, final metadata.State
		reason     string
	}{
		{"terminate", metadata.ShuttingDown, metadata.Terminated, ReasonSpotTerminate},
		{"stop", metadata.Stopping, metadata.Stopped, ReasonSpotShutdown},
		{"hibernate", metadata.Stopping, metadata.Stopped, ReasonSpotShutdown},
	} {
		t.Run(tc.action, func(t *testing.T) {
			r := rec(config.Instance{Spot: &config.SpotAction{Action: tc.action, Time: format(t0)}})
			if got := Next(r); !got.Equal(t0) {
				t.Fatalf("Next = %v, want the Spot time %v", got, t0)
			}
			if Advance(r, t0.Add(-time.Second)) {
				t.Fatal("Advance before the Spot time changed the record")
			}
			if !Advance(r, t0) || r.State != tc.mid || r.StateReason != tc.reason {
				t.Fatalf("at the Spot time: state %q reason %q, want %q %q", r.State, r.StateReason, tc.mid, tc.reason)
			}
			if got := Next(r); !got.Equal(t0.Add(TransitionTime)) {
				t.Fatalf("Next = %v, want %v", got, t0.Add(TransitionTime))
			}
			Advance(r, t0.Add(TransitionTime))
			if r.State != tc.final {
				t.Fatalf("after the transition: state %q, want %q", r.State, tc.final)
			}
			if !Next(r).IsZero() || Advance(r, t0.Add(time.Hour)) {
				t.Fatal("a gone instance has more steps")
			}
		})
	}
}

// A replica that comes back long after the Spot time reaches the same
// record as one that fired on time.
func TestAdvanceIsIdempotentAndOrderFree(t *testing.T) {
	spec := config.Instance{
		Spot: &config.SpotAction{Action: "terminate", Time: format(t0)},
		Events: []config.MaintenanceEvent{
			{Code: "system-reboot", EventID: "instance-event-0aaaaaaaaaaaaaaaa", NotBefore: format(t0.Add(-time.Hour)), NotAfter: format(t0.Add(10 * time.Second)), State: "active"},
		},
	}
	onTime := rec(spec)
	for _, at := range []time.Duration{0, 10 * time.Second, TransitionTime} {
		Advance(onTime, t0.Add(at))
	}
	late := rec(spec)
	Advance(late, t0.Add(time.Hour))
	Advance(late, t0.Add(time.Hour)) // a second replica
	if diff := cmp.Diff(onTime, late); diff != "" {
		t.Errorf("late replica differs (-on time +late):\n%s", diff)
	}
	if late.State != metadata.Terminated || late.Spec.Events[0].State != EventCompleted {
		t.Errorf("state %q, event %q; want terminated and completed", late.State, late.Spec.Events[0].State)
	}
}

func TestMaintenanceWindowEndCompletes(t *testing.T) {
	r := rec(config.Instance{Events: []config.MaintenanceEvent{
		{Code: "system-reboot", EventID: "instance-event-0aaaaaaaaaaaaaaaa", NotBefore: format(t0)},
		{Code: "instance-reboot", EventID: "instance-event-0bbbbbbbbbbbbbbbb", NotBefore: format(t0), NotAfter: format(t0.Add(time.Hour)), State: "canceled"},
	}})
	end := t0.Add(metadata.DefaultEventWindow)
	if got := Next(r); !got.Equal(end) {
		t.Fatalf("Next = %v, want the window's end %v", got, end)
	}
	Advance(r, end.Add(-time.Nanosecond))
	if r.Spec.Events[0].State != "" {
		t.Fatalf("completed before the window ended: %q", r.Spec.Events[0].State)
	}
	Advance(r, end)
	if got := []string{r.Spec.Events[0].State, r.Spec.Events[1].State}; !cmp.Equal(got, []string{EventCompleted, EventCanceled}) {
		t.Errorf("states %v, want [completed canceled]", got)
	}
	if state(r) != metadata.Running {
		t.Errorf("state %q: a maintenance event changed the instance's state", r.State)
	}
}

func TestStopStartTerminate(t *testing.T) {
	r := rec(config.Instance{Spot: &config.SpotAction{Action: "stop", Time: format(t0)}, Rebalance: format(t0.Add(-time.Minute))})
	Advance(r, t0.Add(TransitionTime))
	if r.State != metadata.Stopped {
		t.Fatalf("state %q, want stopped", r.State)
	}
	now := t0.Add(time.Hour)
	if c, err := Stop(r, now); err != nil || c.Previous != metadata.Stopped || c.Current != metadata.Stopped {
		t.Fatalf("Stop of a stopped instance: %+v, %v; want stopped -> stopped", c, err)
	}
	c, err := Start(r, now)
	if err != nil || c.Previous != metadata.Stopped || c.Current != metadata.Pending {
		t.Fatalf("Start: %+v, %v; want stopped -> pending", c, err)
	}
	if r.Spec.Spot != nil || r.Spec.Rebalance != "" {
		t.Errorf("the interruption of the last run survived a start: %+v %q", r.Spec.Spot, r.Spec.Rebalance)
	}
	Advance(r, now.Add(TransitionTime))
	if state(r) != metadata.Running || r.State != "" {
		t.Fatalf("state %q, want running", r.State)
	}
	if c := Terminate(r, now.Add(time.Hour)); c.Previous != metadata.Running || c.Current != metadata.ShuttingDown {
		t.Fatalf("Terminate: %+v, want running -> shutting-down", c)
	}
	later := now.Add(2 * time.Hour)
	for _, f := range []func(*registry.Instance, time.Time) (Change, error){Stop, Start} {
		_, err := f(r, later)
		var se *StateError
		if !errors.As(err, &se) || se.State != metadata.Terminated {
			t.Errorf("on a terminated instance: %v, want a StateError in state terminated", err)
		}
	}
	if c := Terminate(r, later); c.Previous != metadata.Terminated || c.Current != metadata.Terminated {
		t.Errorf("Terminate twice: %+v, want terminated -> terminated", c)
	}
}

func TestStartWhileStoppingIsRefused(t *testing.T) {
	r := rec(config.Instance{})
	if _, err := Stop(r, t0); err != nil {
		t.Fatal(err)
	}
	var se *StateError
	if _, err := Start(r, t0.Add(time.Second)); !errors.As(err, &se) || se.State != metadata.Stopping {
		t.Fatalf("Start while stopping: %v, want a StateError", err)
	}
}

func TestEventChanges(t *testing.T) {
	const id = "instance-event-0aaaaaaaaaaaaaaaa"
	mk := func() *registry.Instance {
		return rec(config.Instance{Events: []config.MaintenanceEvent{
			{Code: "system-reboot", EventID: id, NotBefore: format(t0.Add(time.Hour)), NotAfter: format(t0.Add(3 * time.Hour)), State: "active"},
		}})
	}
	t.Run("reschedule keeps the window", func(t *testing.T) {
		r := mk()
		e, err := Reschedule(r, id, t0.Add(48*time.Hour), t0)
		if err != nil {
			t.Fatal(err)
		}
		want := config.MaintenanceEvent{Code: "system-reboot", EventID: id, State: "active",
			NotBefore: format(t0.Add(48 * time.Hour)), NotAfter: format(t0.Add(50 * time.Hour)),
			NotBeforeDeadline: format(t0.Add(time.Hour + DefaultDeadline))}
		if diff := cmp.Diff(want, e); diff != "" {
			t.Errorf("rescheduled (-want +got):\n%s", diff)
		}
		// The deadline stays where it was, not relative to the new start.
		if _, err := Reschedule(r, id, t0.Add(time.Hour+DefaultDeadline+time.Second), t0); err == nil {
			t.Error("a second reschedule past the first deadline was accepted")
		}
	})
	for _, tc := range []struct {
		name string
		at   time.Time
	}{
		{"after the deadline", t0.Add(time.Hour + DefaultDeadline + time.Second)},
		{"in the past", t0.Add(-time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var se *EventStartError
			if _, err := Reschedule(mk(), id, tc.at, t0); !errors.As(err, &se) {
				t.Errorf("got %v, want an EventStartError", err)
			}
		})
	}
	t.Run("unknown id", func(t *testing.T) {
		var nf *EventNotFoundError
		if _, err := Reschedule(mk(), "instance-event-0ffffffffffffffff", t0.Add(time.Hour), t0); !errors.As(err, &nf) {
			t.Errorf("got %v, want an EventNotFoundError", err)
		}
	})
	t.Run("cancel then complete", func(t *testing.T) {
		r := mk()
		if err := Cancel(r, id, t0); err != nil {
			t.Fatal(err)
		}
		if r.Spec.Events[0].State != EventCanceled {
			t.Errorf("state %q, want canceled", r.Spec.Events[0].State)
		}
		if err := Complete(r, id, t0); !errors.Is(err, ErrEventNotActive) {
			t.Errorf("Complete of a canceled event: %v, want ErrEventNotActive", err)
		}
	})
}

// An event from the configuration file without an event-id is known by the
// id its metadata shows.
func TestDerivedEventID(t *testing.T) {
	r := rec(config.Instance{Events: []config.MaintenanceEvent{{Code: "system-reboot", NotBefore: format(t0.Add(time.Hour))}}})
	id := metadata.DerivedEventID(r.Spec.InstanceID, 0)
	in := &metadata.Instance{ID: r.Spec.InstanceID, Events: []metadata.Event{{Code: "system-reboot", NotBefore: t0.Add(time.Hour)}}}
	in.Derive()
	if in.Events[0].EventID != id || EventID(r, 0) != id {
		t.Fatalf("metadata shows %q, events uses %q, want %q", in.Events[0].EventID, EventID(r, 0), id)
	}
	if err := Cancel(r, id, t0); err != nil {
		t.Fatal(err)
	}
	if r.Spec.Events[0].EventID != id || r.Spec.Events[0].State != EventCanceled {
		t.Errorf("event after cancel: %+v", r.Spec.Events[0])
	}
}

// A fleet keeps only the records Scheduled reports, so it must report every
// record that has a change due, at any time.
func TestScheduledCoversEveryDueChange(t *testing.T) {
	states := []metadata.State{"", metadata.Pending, metadata.Running, metadata.Stopping, metadata.Stopped, metadata.ShuttingDown, metadata.Terminated}
	spots := []*config.SpotAction{nil, {Action: "stop", Time: "2026-03-01T10:00:00Z"}, {Action: "terminate", Time: "2026-03-01T10:00:00Z"}}
	eventSets := [][]config.MaintenanceEvent{nil,
		{{Code: "system-reboot", NotBefore: "2026-03-01T09:00:00Z"}},
		{{Code: "system-reboot", NotBefore: "2026-03-01T09:00:00Z", State: EventCompleted}},
	}
	for _, st := range states {
		for _, sp := range spots {
			for _, evs := range eventSets {
				rec := &registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000a", Spot: sp, Events: evs}, State: st}
				if st == metadata.Pending || st == metadata.Stopping || st == metadata.ShuttingDown {
					rec.StateUntil = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
				}
				if !Scheduled(rec) && !Next(rec).IsZero() {
					t.Errorf("state %q, spot %v, events %v: a change is due at %v but Scheduled is false", st, sp, evs, Next(rec))
				}
			}
		}
	}
}
