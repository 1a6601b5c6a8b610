package scenario

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/events"
)

// API is the part of the admin API a scenario uses (adminclient.Client).
// Errors are the client's: a step that fails stops the run.
type API interface {
	AddEvent(ctx context.Context, id string, ev adminapi.EventRequest) (*adminapi.InstanceRecord, error)
	AddFleetEvent(ctx context.Context, req adminapi.FleetEventRequest) (*adminapi.FleetEventResult, error)
	EndEvent(ctx context.Context, id, eventID, verb string) (*adminapi.InstanceRecord, error)
	RescheduleEvent(ctx context.Context, id, eventID string, notBefore time.Time) (*adminapi.InstanceRecord, error)
	ChangeState(ctx context.Context, id, action string) (*adminapi.StateChange, error)
}

// chosen is what a step did: the instances it acted on and the maintenance
// event it added to each.
type chosen struct {
	ids    []string
	events map[string]string
}

// Run plays s: it waits for each step's time on clock (from the moment Run is
// called), does it, and prints a line saying what happened. The first step
// that fails stops the run and is returned.
func Run(ctx context.Context, s *Scenario, api API, clock events.Clock, out io.Writer) error {
	if clock == nil {
		clock = events.RealClock
	}
	start := clock.Now()
	done := map[string]chosen{}
	for i := range s.Steps {
		st := &s.Steps[i]
		if wait := start.Add(time.Duration(st.At)).Sub(clock.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-clock.After(wait):
			}
		}
		c, what, err := do(ctx, st, api, done, clock.Now())
		label := fmt.Sprintf("+%v", time.Duration(st.At))
		if st.Name != "" {
			label += " " + st.Name
		}
		if err != nil {
			fmt.Fprintf(out, "%s: %s: failed: %v\n", label, what, err)
			return fmt.Errorf("%s: %w", st.label(i), err)
		}
		fmt.Fprintf(out, "%s: %s\n", label, what)
		if st.Name != "" {
			done[st.Name] = c
		}
	}
	return nil
}

// do performs one step and says what it did.
func do(ctx context.Context, st *Step, api API, done map[string]chosen, now time.Time) (chosen, string, error) {
	var c chosen
	switch {
	case st.SameAs != "":
		c = done[st.SameAs]
	case len(st.Instances) > 0:
		c.ids = st.Instances
	}
	targets := func() string { return strings.Join(c.ids, ", ") }

	if e := st.Event; e != nil {
		what := describe(e)
		if c.ids == nil && st.SameAs == "" { // filters or fraction: the server chooses
			req := adminapi.FleetEventRequest{Fraction: st.Fraction, Seed: st.Seed, Event: e.request()}
			for _, k := range sortedKeys(st.Filters) {
				req.Filters = append(req.Filters, adminapi.Filter{Name: k, Values: st.Filters[k]})
			}
			res, err := api.AddFleetEvent(ctx, req)
			if err != nil {
				return c, what, err
			}
			c = chosen{ids: res.Instances, events: res.EventIDs}
			return c, fmt.Sprintf("%s -> %s (%d of %d matching)", what, targets(), len(res.Instances), res.Matched), nil
		}
		c.events = map[string]string{}
		for _, id := range c.ids {
			rec, err := api.AddEvent(ctx, id, e.request())
			if err != nil {
				return c, what + " -> " + id, err
			}
			if e.Type == adminapi.EventMaintenance && len(rec.Spec.Events) > 0 {
				c.events[id] = rec.Spec.Events[len(rec.Spec.Events)-1].EventID
			}
		}
		return c, what + " -> " + targets(), nil
	}

	if st.State != "" {
		var parts []string
		for _, id := range c.ids {
			ch, err := api.ChangeState(ctx, id, st.State)
			if err != nil {
				return c, st.State + " -> " + id, err
			}
			parts = append(parts, fmt.Sprintf("%s %s -> %s", id, ch.Previous, ch.Current))
		}
		return c, st.State + ": " + strings.Join(parts, ", "), nil
	}

	// cancel, complete or reschedule the events step SameAs added.
	verb := map[bool]string{true: "cancel", false: "complete"}[st.Cancel]
	if st.Reschedule != nil {
		verb = "reschedule"
	}
	var parts []string
	for _, id := range c.ids {
		eventID := c.events[id]
		if eventID == "" {
			return c, verb, fmt.Errorf("step %q added no maintenance event to %s", st.SameAs, id)
		}
		var err error
		switch verb {
		case "reschedule":
			nb := now.Add(time.Duration(*st.Reschedule)).UTC().Truncate(time.Second)
			_, err = api.RescheduleEvent(ctx, id, eventID, nb)
			parts = append(parts, fmt.Sprintf("%s %s to %s", id, eventID, nb.Format(time.RFC3339)))
		default:
			_, err = api.EndEvent(ctx, id, eventID, verb)
			parts = append(parts, id+" "+eventID)
		}
		if err != nil {
			return c, verb + " " + eventID, err
		}
	}
	return c, verb + ": " + strings.Join(parts, ", "), nil
}

func describe(e *Event) string {
	parts := []string{e.Type}
	for _, v := range []string{e.Action, e.Code, e.LifecycleState} {
		if v != "" {
			parts = append(parts, v)
		}
	}
	if e.In != "" {
		parts = append(parts, "in "+e.In)
	}
	return strings.Join(parts, " ")
}

func sortedKeys(m map[string]List) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
