// Package events plays EC2's events out in time. A maintenance event whose
// window ends moves to history as completed; a Spot interruption whose time
// comes stops or terminates its instance; StopInstances, StartInstances and
// TerminateInstances move an instance through EC2's states, each transitional
// state ending TransitionTime later.
//
// The rules are functions of a record and a time, so that every replica that
// applies them to the same record reaches the same result: whichever replica
// sees a step due first writes it (compare-and-swap), the others find nothing
// left to do. Runner applies them when their time comes.
package events

import (
	"errors"
	"fmt"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

// TransitionTime is how long an instance stays pending, stopping or
// shutting-down before it is running, stopped or terminated.
const TransitionTime = 30 * time.Second

// DefaultDeadline is how long after its start a maintenance event can be
// rescheduled to when its record names no deadline.
const DefaultDeadline = 21 * 24 * time.Hour

// Maintenance event states, as in events/maintenance/scheduled and history.
const (
	EventActive    = "active"
	EventCanceled  = "canceled"
	EventCompleted = "completed"
)

// State reasons EC2 reports with a state change (StateReason.Code).
const (
	ReasonUserShutdown  = "Client.UserInitiatedShutdown"
	ReasonSpotShutdown  = "Server.SpotInstanceShutdown"
	ReasonSpotTerminate = "Server.SpotInstanceTermination"
)

// StateMessage is EC2's StateReason.Message for a reason code.
func StateMessage(code string) string {
	switch code {
	case ReasonUserShutdown:
		return "Client.UserInitiatedShutdown: User initiated shutdown"
	case ReasonSpotShutdown:
		return "Server.SpotInstanceShutdown: Spot Instance shutdown due to price or capacity"
	case ReasonSpotTerminate:
		return "Server.SpotInstanceTermination: Spot Instance termination due to price or capacity"
	}
	return code
}

func parse(s string) time.Time {
	t, _ := time.Parse(time.RFC3339, s) // records hold validated times
	return t
}

func format(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// state is rec's state, running for records that never had one.
func state(rec *registry.Instance) metadata.State {
	if rec.State == "" {
		return metadata.Running
	}
	return rec.State
}

// EventEnd is when a maintenance event's window ends.
func EventEnd(e config.MaintenanceEvent) time.Time {
	if e.NotAfter != "" {
		return parse(e.NotAfter)
	}
	return parse(e.NotBefore).Add(metadata.DefaultEventWindow)
}

// EventDeadline is the latest start a maintenance event can be moved to.
func EventDeadline(e config.MaintenanceEvent) time.Time {
	if e.NotBeforeDeadline != "" {
		return parse(e.NotBeforeDeadline)
	}
	return parse(e.NotBefore).Add(DefaultDeadline)
}

// step is one change due at a time.
type step struct {
	at    time.Time
	apply func()
}

// nextStep returns the earliest change due on rec, or ok false.
func nextStep(rec *registry.Instance) (s step, ok bool) {
	consider := func(at time.Time, apply func()) {
		if !ok || at.Before(s.at) {
			s, ok = step{at, apply}, true
		}
	}
	switch st := state(rec); st {
	case metadata.Pending, metadata.Stopping, metadata.ShuttingDown:
		until := rec.StateUntil
		consider(until, func() {
			rec.State = map[metadata.State]metadata.State{
				metadata.Pending: metadata.Running, metadata.Stopping: metadata.Stopped, metadata.ShuttingDown: metadata.Terminated,
			}[st]
			if rec.State == metadata.Running {
				rec.State, rec.StateReason = "", ""
			}
			rec.StateUntil = time.Time{}
		})
	}
	if sp := rec.Spec.Spot; sp != nil && state(rec) == metadata.Running {
		at := parse(sp.Time)
		consider(at, func() {
			if sp.Action == "terminate" {
				rec.State, rec.StateReason = metadata.ShuttingDown, ReasonSpotTerminate
			} else {
				rec.State, rec.StateReason = metadata.Stopping, ReasonSpotShutdown
			}
			rec.StateUntil = at.Add(TransitionTime)
		})
	}
	for i, e := range rec.Spec.Events {
		if e.State != "" && e.State != EventActive {
			continue
		}
		consider(EventEnd(e), func() {
			rec.Spec.Events[i].State = EventCompleted
		})
	}
	return s, ok
}

// Scheduled reports whether rec may have a change due at some time: a
// transitional state, a Spot interruption or maintenance events. Next is
// zero for every record it is false for, so that a fleet need keep only
// these records for the runner.
func Scheduled(rec *registry.Instance) bool {
	switch rec.State {
	case metadata.Pending, metadata.Stopping, metadata.ShuttingDown:
		return true
	}
	return rec.Spec.Spot != nil || len(rec.Spec.Events) > 0
}

// Next is when the next change to rec is due; zero when none is.
func Next(rec *registry.Instance) time.Time {
	if s, ok := nextStep(rec); ok {
		return s.at
	}
	return time.Time{}
}

// Advance applies to rec, in order, every change due at or before now, and
// reports whether there was any. Each change happens at its own time (a
// terminated instance's StateUntil counts from the Spot time, not from now),
// so that replicas applying it at different moments agree.
func Advance(rec *registry.Instance, now time.Time) bool {
	changed := false
	for {
		s, ok := nextStep(rec)
		if !ok || s.at.After(now) {
			return changed
		}
		s.apply()
		changed = true
	}
}

// StateError: the instance is not in a state from which the action can be
// taken (EC2's IncorrectInstanceState).
type StateError struct {
	InstanceID string
	State      metadata.State
	Action     string // stopped, started
}

func (e *StateError) Error() string {
	return fmt.Sprintf("The instance '%s' is not in a state from which it can be %s.", e.InstanceID, e.Action)
}

// Change is a state change, as StopInstances, StartInstances and
// TerminateInstances report it.
type Change struct {
	InstanceID        string
	Previous, Current metadata.State
}

// Stop stops a running or pending instance at now (EC2's StopInstances); a
// stopping or stopped one is left as it is.
func Stop(rec *registry.Instance, now time.Time) (Change, error) {
	Advance(rec, now)
	c := Change{InstanceID: rec.Spec.InstanceID, Previous: state(rec)}
	switch c.Previous {
	case metadata.Running, metadata.Pending:
		rec.State, rec.StateUntil, rec.StateReason = metadata.Stopping, now.Add(TransitionTime), ReasonUserShutdown
	case metadata.Stopping, metadata.Stopped:
	default:
		return c, &StateError{c.InstanceID, c.Previous, "stopped"}
	}
	c.Current = state(rec)
	return c, nil
}

// Start starts a stopped instance at now (EC2's StartInstances); a pending or
// running one is left as it is. A Spot interruption or rebalance
// recommendation that has come to pass is cleared: it belonged to the run
// that ended.
func Start(rec *registry.Instance, now time.Time) (Change, error) {
	Advance(rec, now)
	c := Change{InstanceID: rec.Spec.InstanceID, Previous: state(rec)}
	switch c.Previous {
	case metadata.Stopped:
		rec.State, rec.StateUntil, rec.StateReason = metadata.Pending, now.Add(TransitionTime), ""
		if sp := rec.Spec.Spot; sp != nil && !parse(sp.Time).After(now) {
			rec.Spec.Spot = nil
			rec.Spec.Rebalance = ""
		}
	case metadata.Pending, metadata.Running:
	default:
		return c, &StateError{c.InstanceID, c.Previous, "started"}
	}
	c.Current = state(rec)
	return c, nil
}

// Terminate terminates an instance at now (EC2's TerminateInstances); a
// terminated or shutting-down one is left as it is.
func Terminate(rec *registry.Instance, now time.Time) Change {
	Advance(rec, now)
	c := Change{InstanceID: rec.Spec.InstanceID, Previous: state(rec)}
	switch c.Previous {
	case metadata.Terminated, metadata.ShuttingDown:
	default:
		rec.State, rec.StateUntil, rec.StateReason = metadata.ShuttingDown, now.Add(TransitionTime), ReasonUserShutdown
	}
	c.Current = state(rec)
	return c
}

// EventNotFoundError: the instance has no maintenance event with this id.
type EventNotFoundError struct{ InstanceID, EventID string }

func (e *EventNotFoundError) Error() string {
	return fmt.Sprintf("instance %s has no event %s", e.InstanceID, e.EventID)
}

// ErrEventNotActive: the event is canceled or completed already.
var ErrEventNotActive = errors.New("the event is not active: it is canceled or completed")

// EventStartError: a new start time EC2 would refuse.
type EventStartError struct{ Msg string }

func (e *EventStartError) Error() string { return e.Msg }

// EventID is the id of rec's i-th maintenance event: its own, else the one
// the metadata derives for it.
func EventID(rec *registry.Instance, i int) string {
	if id := rec.Spec.Events[i].EventID; id != "" {
		return id
	}
	return metadata.DerivedEventID(rec.Spec.InstanceID, i)
}

// activeEvent finds an active event of rec at now. The event's id is written
// into it, so that it no longer depends on its place in the list.
func activeEvent(rec *registry.Instance, eventID string, now time.Time) (*config.MaintenanceEvent, error) {
	Advance(rec, now)
	for i := range rec.Spec.Events {
		e := &rec.Spec.Events[i]
		if EventID(rec, i) != eventID {
			continue
		}
		e.EventID = eventID
		if e.State != "" && e.State != EventActive {
			return nil, fmt.Errorf("event %s: %w", eventID, ErrEventNotActive)
		}
		return e, nil
	}
	return nil, &EventNotFoundError{rec.Spec.InstanceID, eventID}
}

// Cancel moves an active maintenance event to history as canceled.
func Cancel(rec *registry.Instance, eventID string, now time.Time) error {
	e, err := activeEvent(rec, eventID, now)
	if err != nil {
		return err
	}
	e.State = EventCanceled
	return nil
}

// Complete moves an active maintenance event to history as completed, before
// its window ends.
func Complete(rec *registry.Instance, eventID string, now time.Time) error {
	e, err := activeEvent(rec, eventID, now)
	if err != nil {
		return err
	}
	e.State = EventCompleted
	return nil
}

// Reschedule moves an active maintenance event to start at notBefore, keeping
// the length of its window, as ModifyInstanceEventStartTime does: the new
// start must be in the future and no later than the event's deadline.
func Reschedule(rec *registry.Instance, eventID string, notBefore, now time.Time) (config.MaintenanceEvent, error) {
	e, err := activeEvent(rec, eventID, now)
	if err != nil {
		return config.MaintenanceEvent{}, err
	}
	deadline := EventDeadline(*e)
	switch {
	case !notBefore.After(now):
		return *e, &EventStartError{fmt.Sprintf("The requested start time %s is in the past.", format(notBefore))}
	case notBefore.After(deadline):
		return *e, &EventStartError{fmt.Sprintf("The requested start time %s is after the event's deadline %s.", format(notBefore), format(deadline))}
	}
	window := EventEnd(*e).Sub(parse(e.NotBefore))
	e.NotBeforeDeadline = format(deadline)
	e.NotBefore = format(notBefore)
	e.NotAfter = format(notBefore.Add(window))
	return *e, nil
}
