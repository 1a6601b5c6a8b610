package controlplane

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/store"
)

func TestEndEventAndLifecycle(t *testing.T) {
	e := newAdminEnv(t)
	const path = "/v1/instances/i-0000000000000000a"
	if rec := e.do("PUT", path, vmA); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	add := func() string {
		rec := e.do("POST", path+"/events", `{"type": "maintenance", "code": "system-reboot", "in": "1h"}`)
		s := decodeAs[adminapi.InstanceRecord](t, rec).Spec
		return s.Events[len(s.Events)-1].EventID
	}
	first, second := add(), add()

	rec := e.do("POST", path+"/events/"+first+"/cancel", "")
	if s := decodeAs[adminapi.InstanceRecord](t, rec).Spec; rec.Code != 200 || s.Events[0].State != "canceled" || s.Events[1].State != "active" {
		t.Fatalf("cancel: %d %+v", rec.Code, s.Events)
	}
	rec = e.do("POST", path+"/events/"+second+"/complete", "")
	if s := decodeAs[adminapi.InstanceRecord](t, rec).Spec; rec.Code != 200 || s.Events[1].State != "completed" {
		t.Fatalf("complete: %d %+v", rec.Code, s.Events)
	}
	for _, tc := range []struct {
		path, code string
		status     int
	}{
		{path + "/events/" + first + "/complete", adminapi.CodeConflict, 409},
		{path + "/events/instance-event-0ffffffffffffffff/cancel", adminapi.CodeNotFound, 404},
		{"/v1/instances/i-0000000000000000f/events/" + first + "/cancel", adminapi.CodeNotFound, 404},
	} {
		rec := e.do("POST", tc.path, "")
		if got := errorCode(t, rec); rec.Code != tc.status || got.Code != tc.code {
			t.Errorf("POST %s: %d %+v, want %d %s", tc.path, rec.Code, got, tc.status, tc.code)
		}
	}

	rec = e.do("POST", path+"/events", `{"type": "lifecycle", "lifecycle-state": "Warmed:Hibernated"}`)
	if s := decodeAs[adminapi.InstanceRecord](t, rec).Spec; rec.Code != 200 || s.TargetLifecycleState != "Warmed:Hibernated" {
		t.Fatalf("lifecycle: %d %+v", rec.Code, s)
	}
	for _, body := range []string{
		`{"type": "lifecycle", "lifecycle-state": "Sleeping"}`,
		`{"type": "lifecycle"}`,
		`{"type": "lifecycle", "lifecycle-state": "InService", "in": "1m"}`,
		`{"type": "spot", "lifecycle-state": "InService"}`,
	} {
		rec := e.do("POST", path+"/events", body)
		if got := errorCode(t, rec); rec.Code != 400 || !strings.Contains(got.Message, "lifecycle-state") && !strings.Contains(got.Message, "in ") {
			t.Errorf("%s: %d %+v, want 400 naming the field", body, rec.Code, got)
		}
	}
}

func TestFleetEvent(t *testing.T) {
	e := newAdminEnv(t)
	for i := range 10 {
		spec := config.Instance{
			InstanceID:       fmt.Sprintf("i-00000000000000%03d", i),
			InstanceType:     []string{"m5.large", "c5.large"}[i%2],
			AvailabilityZone: []string{"us-east-1a", "us-east-1b"}[i/5],
			Tags:             config.OrderedMap{{Key: "role", Value: []string{"worker", "web"}[i%3/2]}},
		}
		if _, err := e.reg.Put(t.Context(), spec, store.Absent, ""); err != nil {
			t.Fatal(err)
		}
	}
	inject := func(body string) adminapi.FleetEventResult {
		t.Helper()
		rec := e.do("POST", "/v1/events", body)
		if rec.Code != 200 {
			t.Fatalf("POST /v1/events %s: %d %s", body, rec.Code, rec.Body)
		}
		return decodeAs[adminapi.FleetEventResult](t, rec)
	}
	got := inject(`{"filters": [{"name": "instance-type", "values": ["m5.large"]}, {"name": "availability-zone", "values": ["us-east-1a"]}], "event": {"type": "rebalance"}}`)
	if want := (adminapi.FleetEventResult{Matched: 3, Instances: []string{"i-00000000000000000", "i-00000000000000002", "i-00000000000000004"}}); !cmp.Equal(got, want) {
		t.Errorf("by type and zone: %+v, want %+v", got, want)
	}
	got = inject(`{"filters": [{"name": "tag:role", "values": ["web"]}], "event": {"type": "maintenance"}}`)
	if want := []string{"i-00000000000000002", "i-00000000000000005", "i-00000000000000008"}; !cmp.Equal(got.Instances, want) {
		t.Errorf("by tag: %v, want %v", got.Instances, want)
	}
	// Each instance gets an event id of its own, and the answer says which.
	ids := map[string]bool{}
	for _, id := range got.Instances {
		in, err := e.reg.Instance(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		ids[in.Spec.Events[0].EventID] = true
		if got.EventIDs[id] != in.Spec.Events[0].EventID {
			t.Errorf("event-ids[%s] = %q, want %q", id, got.EventIDs[id], in.Spec.Events[0].EventID)
		}
	}
	if len(ids) != 3 {
		t.Errorf("%d distinct event ids among 3 instances", len(ids))
	}

	a := inject(`{"fraction": 0.3, "seed": 7, "event": {"type": "spot", "in": "5m"}}`)
	b := inject(`{"fraction": 0.3, "seed": 7, "event": {"type": "spot", "in": "5m"}}`)
	c := inject(`{"fraction": 0.3, "seed": 8, "event": {"type": "spot", "in": "5m"}}`)
	if a.Matched != 10 || len(a.Instances) != 3 || !cmp.Equal(a, b) {
		t.Errorf("fraction 0.3 seed 7 twice: %+v and %+v; want the same 3 of 10", a, b)
	}
	if cmp.Equal(a.Instances, c.Instances) {
		t.Errorf("seeds 7 and 8 chose the same instances %v", a.Instances)
	}
	if got := inject(`{"fraction": 0.01, "event": {"type": "rebalance"}}`); len(got.Instances) != 1 {
		t.Errorf("a tiny fraction chose %v, want one instance", got.Instances)
	}

	for _, tc := range []struct{ body, mentions string }{
		{`{"fraction": 1.5, "event": {"type": "spot"}}`, "fraction"},
		{`{"filters": [{"name": "colour", "values": ["red"]}], "event": {"type": "spot"}}`, "colour"},
		{`{"filters": [{"name": "tag:role"}], "event": {"type": "spot"}}`, "at least one value"},
		{`{"event": {"type": "volcano"}}`, "type"},
	} {
		rec := e.do("POST", "/v1/events", tc.body)
		if got := errorCode(t, rec); rec.Code != 400 || !strings.Contains(got.Message, tc.mentions) {
			t.Errorf("%s: %d %+v, want 400 mentioning %q", tc.body, rec.Code, got, tc.mentions)
		}
	}
}

func TestRescheduleAndState(t *testing.T) {
	e := newAdminEnv(t)
	const path = "/v1/instances/i-0000000000000000a"
	if rec := e.do("PUT", path, vmA); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	rec := e.do("POST", path+"/events", `{"type": "maintenance", "time": "2026-03-02T00:00:00Z", "duration": "1h"}`)
	eventID := decodeAs[adminapi.InstanceRecord](t, rec).Spec.Events[0].EventID
	rec = e.do("POST", path+"/events/"+eventID+"/reschedule", `{"not-before": "2026-03-05T00:00:00Z"}`)
	if ev := decodeAs[adminapi.InstanceRecord](t, rec).Spec.Events[0]; rec.Code != 200 || ev.NotBefore != "2026-03-05T00:00:00Z" || ev.NotAfter != "2026-03-05T01:00:00Z" {
		t.Errorf("reschedule: %d %+v", rec.Code, ev)
	}
	for _, tc := range []struct {
		body, code string
		status     int
	}{
		{`{"not-before": "2026-04-05T00:00:00Z"}`, adminapi.CodeInvalidParameter, 400}, // past the 21-day deadline
		{`{"not-before": "2026-02-05T00:00:00Z"}`, adminapi.CodeInvalidParameter, 400}, // in the past
		{`{"not-before": "tomorrow"}`, adminapi.CodeInvalidParameter, 400},
	} {
		rec := e.do("POST", path+"/events/"+eventID+"/reschedule", tc.body)
		if got := errorCode(t, rec); rec.Code != tc.status || got.Code != tc.code {
			t.Errorf("reschedule %s: %d %+v, want %d %s", tc.body, rec.Code, got, tc.status, tc.code)
		}
	}

	for _, tc := range []struct {
		action string
		status int
		want   adminapi.StateChange
	}{
		{"stop", 200, adminapi.StateChange{InstanceID: "i-0000000000000000a", Previous: "running", Current: "stopping"}},
		{"start", 409, adminapi.StateChange{}},
		{"terminate", 200, adminapi.StateChange{InstanceID: "i-0000000000000000a", Previous: "stopping", Current: "shutting-down"}},
		{"terminate", 200, adminapi.StateChange{InstanceID: "i-0000000000000000a", Previous: "shutting-down", Current: "shutting-down"}},
		{"reboot", 400, adminapi.StateChange{}},
	} {
		rec := e.do("POST", path+"/state", `{"action": "`+tc.action+`"}`)
		if rec.Code != tc.status {
			t.Fatalf("%s: %d %s, want %d", tc.action, rec.Code, rec.Body, tc.status)
		}
		if tc.status == 200 {
			if got := decodeAs[adminapi.StateChange](t, rec); got != tc.want {
				t.Errorf("%s: %+v, want %+v", tc.action, got, tc.want)
			}
		}
	}
	if got := decodeAs[adminapi.InstanceRecord](t, e.do("GET", path, "")); got.State != "shutting-down" {
		t.Errorf("GET state %q, want shutting-down", got.State)
	}
}
