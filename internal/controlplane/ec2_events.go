package controlplane

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

// --- XML shapes ---

type stateXML struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

func stateOf(s metadata.State) stateXML { return stateXML{s.Code(), s.Name()} }

type instanceEventXML struct {
	InstanceEventID   string `xml:"instanceEventId"`
	Code              string `xml:"code"`
	Description       string `xml:"description"`
	NotBefore         string `xml:"notBefore"`
	NotAfter          string `xml:"notAfter"`
	NotBeforeDeadline string `xml:"notBeforeDeadline,omitempty"`
}

type statusDetailXML struct {
	Name   string `xml:"name"`
	Status string `xml:"status"`
}

type statusSummaryXML struct {
	Status  string            `xml:"status"`
	Details []statusDetailXML `xml:"details>item"`
}

type instanceStatusXML struct {
	InstanceID       string             `xml:"instanceId"`
	AvailabilityZone string             `xml:"availabilityZone"`
	Events           []instanceEventXML `xml:"eventsSet>item,omitempty"`
	InstanceState    stateXML           `xml:"instanceState"`
	SystemStatus     statusSummaryXML   `xml:"systemStatus"`
	InstanceStatus   statusSummaryXML   `xml:"instanceStatus"`
}

type describeInstanceStatusResponse struct {
	XMLName xml.Name `xml:"DescribeInstanceStatusResponse"`
	ec2Head
	Statuses  []instanceStatusXML `xml:"instanceStatusSet>item"`
	NextToken string              `xml:"nextToken,omitempty"`
}

type modifyInstanceEventStartTimeResponse struct {
	XMLName xml.Name `xml:"ModifyInstanceEventStartTimeResponse"`
	ec2Head
	Event instanceEventXML `xml:"event"`
}

type stateChangeXML struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  stateXML `xml:"currentState"`
	PreviousState stateXML `xml:"previousState"`
}

type stateChangeResponse struct {
	XMLName xml.Name
	ec2Head
	Instances []stateChangeXML `xml:"instancesSet>item"`
}

// ec2Time is EC2's timestamp form in XML.
func ec2Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func eventXML(e config.MaintenanceEvent) instanceEventXML {
	desc := e.Description
	switch e.State {
	case events.EventCanceled:
		desc = "[Canceled] " + desc
	case events.EventCompleted:
		desc = "[Completed] " + desc
	}
	nb, _ := time.Parse(time.RFC3339, e.NotBefore)
	x := instanceEventXML{
		InstanceEventID: e.EventID, Code: e.Code, Description: desc,
		NotBefore: ec2Time(nb), NotAfter: ec2Time(events.EventEnd(e)),
	}
	if e.State == "" || e.State == events.EventActive {
		x.NotBeforeDeadline = ec2Time(events.EventDeadline(e))
	}
	return x
}

// --- DescribeInstanceStatus ---

// statusFilters are the DescribeInstanceStatus filters imds knows.
var statusFilters = []string{"availability-zone", "instance-state-name", "instance-state-code", "event.code", "event.instance-event-id"}

// describeInstanceStatus reports each instance's state and scheduled events.
// Without IncludeAllInstances only running instances are listed, as on EC2.
// Status checks always pass on a running instance (imds has no hardware to
// fail) and are not-applicable otherwise.
func (h *Handler) describeInstanceStatus(ctx context.Context, c *ec2Call) (ec2Response, error) {
	ids, err := c.instanceIDs()
	if err != nil {
		return nil, err
	}
	all, err := c.boolean("IncludeAllInstances")
	if err != nil {
		return nil, err
	}
	fs, err := c.filtersOf(statusFilters)
	if err != nil {
		return nil, err
	}
	maxResults, after, err := c.paging(len(ids) > 0)
	if err != nil {
		return nil, err
	}
	recs, err := h.instancesByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	resp := &describeInstanceStatusResponse{}
	for _, rec := range recs {
		st := rec.State
		if (st.Name() != string(metadata.Running) && !all) || rec.Spec.InstanceID <= after {
			continue
		}
		in := describeView(rec)
		x := instanceStatusXML{InstanceID: in.ID, AvailabilityZone: in.AvailabilityZone, InstanceState: stateOf(st)}
		var codes, eventIDs []string
		for i, e := range rec.Spec.Events {
			e.EventID = events.EventID(rec, i)
			x.Events = append(x.Events, eventXML(e))
			codes, eventIDs = append(codes, e.Code), append(eventIDs, e.EventID)
		}
		if !matchesValues(fs, map[string][]string{
			"availability-zone":       {in.AvailabilityZone},
			"instance-state-name":     {st.Name()},
			"instance-state-code":     {fmt.Sprint(st.Code())},
			"event.code":              codes,
			"event.instance-event-id": eventIDs,
		}) {
			continue
		}
		check := statusSummaryXML{Status: "not-applicable"}
		if st.Name() == string(metadata.Running) {
			check = statusSummaryXML{Status: "ok", Details: []statusDetailXML{{"reachability", "passed"}}}
		}
		x.SystemStatus, x.InstanceStatus = check, check
		if maxResults > 0 && len(resp.Statuses) == maxResults {
			resp.NextToken = base64.RawURLEncoding.EncodeToString([]byte(resp.Statuses[maxResults-1].InstanceID))
			break
		}
		resp.Statuses = append(resp.Statuses, x)
	}
	return resp, nil
}

// paging reads MaxResults (5 to 1000; 0 when not given) and NextToken (the
// last instance id of the previous page), as DescribeInstances takes them.
func (c *ec2Call) paging(withIDs bool) (maxResults int, after string, err error) {
	m, err := c.integer("MaxResults")
	if err != nil {
		return 0, "", err
	}
	if m != nil {
		if withIDs {
			return 0, "", &ec2Error{http.StatusBadRequest, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults"}
		}
		if *m < 5 || *m > 1000 {
			return 0, "", errInvalid("Value ( %d ) for parameter maxResults is invalid. Expecting a value from 5 to 1000.", *m)
		}
		maxResults = *m
	}
	if tok, ok := c.str("NextToken"); ok && *tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(*tok)
		if err != nil || checkInstanceID(string(b)) != nil {
			return 0, "", &ec2Error{http.StatusBadRequest, "InvalidPaginationToken", "The pagination token is not valid."}
		}
		after = string(b)
	}
	return maxResults, after, nil
}

// instancesByID returns the records of ids, sorted, or every instance when
// ids is empty; an unknown id is EC2's InvalidInstanceID.NotFound.
func (h *Handler) instancesByID(ctx context.Context, ids []string) ([]*registry.Instance, error) {
	all, err := h.o.Registry.Instances(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b *registry.Instance) int { return strings.Compare(a.Spec.InstanceID, b.Spec.InstanceID) })
	if len(ids) == 0 {
		return all, nil
	}
	var out []*registry.Instance
	var missing []string
	for _, id := range ids {
		i := slices.IndexFunc(all, func(in *registry.Instance) bool { return in.Spec.InstanceID == id })
		if i < 0 {
			missing = append(missing, id)
			continue
		}
		if !slices.Contains(out, all[i]) {
			out = append(out, all[i])
		}
	}
	if len(missing) > 0 {
		return nil, errInstanceNotFound(missing...)
	}
	return out, nil
}

// filtersOf reads the Filter.N parameters, allowing only names in known.
func (c *ec2Call) filtersOf(known []string) ([]ec2Filter, error) {
	return c.filtersWhere(func(name string) bool { return slices.Contains(known, name) })
}

// matchesValues applies filters to the values an instance has for each name.
func matchesValues(fs []ec2Filter, have map[string][]string) bool {
	for _, f := range fs {
		if !slices.ContainsFunc(have[f.name], func(h string) bool {
			return slices.ContainsFunc(f.values, func(p string) bool { return wildcardMatch(p, h) })
		}) {
			return false
		}
	}
	return true
}

// --- ModifyInstanceEventStartTime ---

// parseEC2Time reads a timestamp parameter as the AWS CLI and SDKs send it
// (ISO 8601, with or without fractional seconds; UTC when no zone is given).
func parseEC2Time(name, v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errInvalid("Value (%s) for parameter %s is invalid. Expecting an ISO 8601 time such as 2026-03-02T03:00:00Z.", v, name)
}

func (h *Handler) modifyInstanceEventStartTime(ctx context.Context, c *ec2Call) (ec2Response, error) {
	id, err := c.required("InstanceId")
	if err != nil {
		return nil, err
	}
	if err := checkInstanceID(id); err != nil {
		return nil, err
	}
	eventID, err := c.required("InstanceEventId")
	if err != nil {
		return nil, err
	}
	nbs, err := c.required("NotBefore")
	if err != nil {
		return nil, err
	}
	nb, err := parseEC2Time("NotBefore", nbs)
	if err != nil {
		return nil, err
	}
	dry, err := c.boolean("DryRun")
	if err != nil {
		return nil, err
	}
	var moved config.MaintenanceEvent
	_, err = h.o.Registry.Update(ctx, id, func(in *registry.Instance) error {
		e, err := events.Reschedule(in, eventID, nb, h.o.Now())
		if err != nil {
			return err
		}
		moved = e
		if dry {
			return errDryRun
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	h.audit(c, "instance", id, "event", eventID, "not_before", moved.NotBefore)
	return &modifyInstanceEventStartTimeResponse{Event: eventXML(moved)}, nil
}

// --- StopInstances, StartInstances, TerminateInstances ---

func (h *Handler) stopInstances(ctx context.Context, c *ec2Call) (ec2Response, error) {
	if _, err := c.boolean("Force"); err != nil {
		return nil, err
	}
	if _, err := c.boolean("Hibernate"); err != nil {
		return nil, err
	}
	return h.changeStates(ctx, c, "StopInstancesResponse", events.Stop)
}

func (h *Handler) startInstances(ctx context.Context, c *ec2Call) (ec2Response, error) {
	return h.changeStates(ctx, c, "StartInstancesResponse", events.Start)
}

func (h *Handler) terminateInstances(ctx context.Context, c *ec2Call) (ec2Response, error) {
	return h.changeStates(ctx, c, "TerminateInstancesResponse", func(in *registry.Instance, now time.Time) (events.Change, error) {
		return events.Terminate(in, now), nil
	})
}

// changeStates applies change to every instance named. Every id must exist,
// and every instance must be in a state the change applies to, before any is
// changed; a dry run stops there.
func (h *Handler) changeStates(ctx context.Context, c *ec2Call, name string, change func(*registry.Instance, time.Time) (events.Change, error)) (ec2Response, error) {
	ids, err := c.instanceIDs()
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errMissing("InstanceId")
	}
	recs, err := h.instancesByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	now := h.o.Now()
	for _, rec := range recs {
		if _, err := change(rec, now); err != nil { // on the copy just read
			return nil, err
		}
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	resp := &stateChangeResponse{XMLName: xml.Name{Local: name}}
	for _, id := range ids {
		var ch events.Change
		if _, err := h.o.Registry.Update(ctx, id, func(in *registry.Instance) error {
			ch, err = change(in, now)
			return err
		}); err != nil {
			return nil, err
		}
		resp.Instances = append(resp.Instances, stateChangeXML{id, stateOf(ch.Current), stateOf(ch.Previous)})
		h.audit(c, "instance", id, "from", ch.Previous.Name(), "to", ch.Current.Name())
	}
	return resp, nil
}

// eventsEC2Error maps the errors of package events to EC2's codes.
func eventsEC2Error(err error) *ec2Error {
	var (
		se *events.StateError
		nf *events.EventNotFoundError
		st *events.EventStartError
	)
	switch {
	case errors.As(err, &se):
		return &ec2Error{http.StatusBadRequest, "IncorrectInstanceState", se.Error()}
	case errors.As(err, &nf):
		return &ec2Error{http.StatusBadRequest, "InvalidInstanceEventIDNotFound", fmt.Sprintf("The event ID '%s' does not exist for instance '%s'", nf.EventID, nf.InstanceID)}
	case errors.Is(err, events.ErrEventNotActive):
		return &ec2Error{http.StatusBadRequest, "InvalidInstanceEventIDNotFound", err.Error() + "; only a scheduled event can be rescheduled"}
	case errors.As(err, &st):
		return &ec2Error{http.StatusBadRequest, "InvalidInstanceEventStartTime", st.Error()}
	}
	return nil
}
