package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/registry"
)

// endEvent serves POST /v1/instances/{id}/events/{event}/cancel and
// .../complete: the maintenance event moves to history.
func (h *Handler) endEvent(end func(*registry.Instance, string, time.Time) error, verb string) adminFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, eventID := r.PathValue("id"), r.PathValue("event")
		in, err := h.writeInstance(r, id, func(cur *registry.Instance) (config.Instance, error) {
			if cur == nil {
				return config.Instance{}, &registry.NotFoundError{Kind: "instance", ID: id}
			}
			tmp := *cur
			tmp.Spec.Events = slices.Clone(cur.Spec.Events)
			if err := end(&tmp, eventID, h.o.Now()); err != nil {
				return config.Instance{}, err
			}
			return tmp.Spec, nil
		})
		if err != nil {
			return err
		}
		h.adminAudit(r, "instance event "+verb, "instance", id, "event", eventID, "revision", in.Revision)
		setAdminETag(w, in.Revision)
		writeAdminJSON(w, http.StatusOK, instanceRecord(in))
		return nil
	}
}

// addFleetEvent serves POST /v1/events: one event into many instances.
func (h *Handler) addFleetEvent(w http.ResponseWriter, r *http.Request) error {
	var req adminapi.FleetEventRequest
	if err := decodeAdminBody(r, &req); err != nil {
		return err
	}
	if req.Fraction < 0 || req.Fraction > 1 || math.IsNaN(req.Fraction) {
		return badParam("fraction %v: want a number in (0, 1], or 0 for all", req.Fraction)
	}
	now := h.o.Now()
	if _, err := h.eventChange(req.Event, now); err != nil {
		return err
	}
	var fs []ec2Filter
	for _, f := range req.Filters {
		if _, known := filterValues(f.Name, &registry.Instance{}, describeView(&registry.Instance{})); !known {
			return badParam("filter %q: not a DescribeInstances filter imds knows (tag:KEY, instance-type, availability-zone, instance-id, ...)", f.Name)
		}
		if len(f.Values) == 0 {
			return badParam("filter %q: give at least one value", f.Name)
		}
		fs = append(fs, ec2Filter{f.Name, f.Values})
	}
	all, err := h.o.Registry.Instances(r.Context())
	if err != nil {
		return err
	}
	var matched []string
	for _, rec := range all {
		if rec.State.Gone() || !matches(fs, rec, describeView(rec)) {
			continue
		}
		matched = append(matched, rec.Spec.InstanceID)
	}
	chosen := chooseFraction(matched, req.Fraction, req.Seed)
	res := adminapi.FleetEventResult{Matched: len(matched), Instances: chosen}
	for _, id := range chosen {
		in, err := h.addEventTo(r.Context(), id, req.Event, now)
		if err != nil {
			return err
		}
		if req.Event.Type == adminapi.EventMaintenance {
			if res.EventIDs == nil {
				res.EventIDs = map[string]string{}
			}
			res.EventIDs[id] = in.Spec.Events[len(in.Spec.Events)-1].EventID
		}
	}
	h.adminAudit(r, "fleet event added", "type", req.Event.Type, "matched", len(matched), "chosen", len(chosen))
	writeAdminJSON(w, http.StatusOK, res)
	return nil
}

// addEventTo injects ev into one instance (with its own event id).
func (h *Handler) addEventTo(ctx context.Context, id string, ev adminapi.EventRequest, now time.Time) (*registry.Instance, error) {
	apply, err := h.eventChange(ev, now)
	if err != nil {
		return nil, err
	}
	return h.o.Registry.Update(ctx, id, func(in *registry.Instance) error {
		spec := in.Spec
		spec.Events = slices.Clone(spec.Events)
		apply(&spec)
		if err := config.ValidateInstance(&spec); err != nil {
			return badParam("%v", err)
		}
		in.Spec = spec
		return nil
	})
}

// rescheduleEvent serves POST /v1/instances/{id}/events/{event}/reschedule,
// with ModifyInstanceEventStartTime's rules.
func (h *Handler) rescheduleEvent(w http.ResponseWriter, r *http.Request) error {
	var req adminapi.RescheduleRequest
	if err := decodeAdminBody(r, &req); err != nil {
		return err
	}
	nb, err := time.Parse(time.RFC3339, req.NotBefore)
	if err != nil {
		return badParam("not-before %q: not an RFC 3339 time such as 2026-01-02T15:04:05Z", req.NotBefore)
	}
	id, eventID := r.PathValue("id"), r.PathValue("event")
	in, err := h.writeInstance(r, id, func(cur *registry.Instance) (config.Instance, error) {
		if cur == nil {
			return config.Instance{}, &registry.NotFoundError{Kind: "instance", ID: id}
		}
		tmp := *cur
		tmp.Spec.Events = slices.Clone(cur.Spec.Events)
		if _, err := events.Reschedule(&tmp, eventID, nb, h.o.Now()); err != nil {
			return config.Instance{}, err
		}
		return tmp.Spec, nil
	})
	if err != nil {
		return err
	}
	h.adminAudit(r, "instance event rescheduled", "instance", id, "event", eventID, "not_before", req.NotBefore, "revision", in.Revision)
	setAdminETag(w, in.Revision)
	writeAdminJSON(w, http.StatusOK, instanceRecord(in))
	return nil
}

// changeState serves POST /v1/instances/{id}/state: stop, start or
// terminate, as the EC2 actions do.
func (h *Handler) changeState(w http.ResponseWriter, r *http.Request) error {
	var req adminapi.StateRequest
	if err := decodeAdminBody(r, &req); err != nil {
		return err
	}
	var change func(*registry.Instance, time.Time) (events.Change, error)
	switch req.Action {
	case adminapi.StateStop:
		change = events.Stop
	case adminapi.StateStart:
		change = events.Start
	case adminapi.StateTerminate:
		change = func(in *registry.Instance, now time.Time) (events.Change, error) {
			return events.Terminate(in, now), nil
		}
	default:
		return badParam("action %q: want %s, %s or %s", req.Action, adminapi.StateStop, adminapi.StateStart, adminapi.StateTerminate)
	}
	id := r.PathValue("id")
	var ch events.Change
	in, err := h.o.Registry.Update(r.Context(), id, func(in *registry.Instance) error {
		var err error
		ch, err = change(in, h.o.Now())
		return err
	})
	if err != nil {
		return err
	}
	h.adminAudit(r, "instance state changed", "instance", id, "from", ch.Previous.Name(), "to", ch.Current.Name(), "revision", in.Revision)
	writeAdminJSON(w, http.StatusOK, adminapi.StateChange{InstanceID: id, Previous: ch.Previous.Name(), Current: ch.Current.Name()})
	return nil
}

// chooseFraction picks round(fraction × len(ids)) of ids, at least one when
// there are any, sorted. Each id is ranked by a hash of the seed and the id,
// so the choice depends only on the seed and the ids themselves.
func chooseFraction(ids []string, fraction float64, seed int64) []string {
	out := slices.Clone(ids)
	if fraction == 0 || fraction == 1 || len(ids) == 0 {
		slices.Sort(out)
		return out
	}
	rank := func(id string) uint64 {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(seed))
		s := sha256.Sum256(append(b[:], id...))
		return binary.BigEndian.Uint64(s[:8])
	}
	slices.SortFunc(out, func(a, b string) int {
		ra, rb := rank(a), rank(b)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return strings.Compare(a, b)
	})
	n := max(1, int(math.Round(fraction*float64(len(ids)))))
	out = out[:n]
	slices.Sort(out)
	return out
}
