package controlplane

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/store"
)

// The event and instance state APIs driven by the AWS CLI.
func TestEC2EventsAWSCLI(t *testing.T) {
	needAWSCLI(t)
	f, srv := newEC2Server(t)
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	const (
		withEvent = "i-0aaaaaaaaaaaaaaa1"
		eventID   = "instance-event-0aaaaaaaaaaaaaaa1"
		canceled  = "instance-event-0aaaaaaaaaaaaaaa2"
		stopper   = "i-0aaaaaaaaaaaaaaa2"
	)
	for _, spec := range []config.Instance{
		{InstanceID: withEvent, AvailabilityZone: "us-east-1c", Events: []config.MaintenanceEvent{
			{Code: "system-reboot", Description: "scheduled reboot", EventID: eventID, NotBefore: ts(time.Hour), NotAfter: ts(3 * time.Hour), NotBeforeDeadline: ts(72 * time.Hour), State: "active"},
			{Code: "instance-stop", Description: "scheduled stop", EventID: canceled, NotBefore: ts(2 * time.Hour), State: "canceled"},
		}},
		{InstanceID: stopper},
	} {
		if _, err := f.reg.Put(t.Context(), spec, store.Absent, ""); err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, out any, args ...string) {
		t.Helper()
		if stderr, err := awsCLI(t, srv, out, args...); err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
	}
	fails := func(t *testing.T, code string, args ...string) {
		t.Helper()
		stderr, err := awsCLI(t, srv, nil, args...)
		if err == nil || !strings.Contains(stderr, "("+code+")") {
			t.Errorf("aws %s: %v, stderr %q; want error %s", strings.Join(args, " "), err, stderr, code)
		}
	}
	type state struct {
		Code int
		Name string
	}
	type event struct {
		Code, Description, InstanceEventId, NotBefore, NotAfter, NotBeforeDeadline string
	}
	type statusOutput struct {
		InstanceStatuses []struct {
			InstanceId, AvailabilityZone string
			InstanceState                state
			Events                       []event
			InstanceStatus, SystemStatus struct{ Status string }
		}
	}
	iso := func(d time.Duration) string { return now.Add(d).Format("2006-01-02T15:04:05.000Z") }

	t.Run("events", func(t *testing.T) {
		t.Parallel()
		var st statusOutput
		run(t, &st, "ec2", "describe-instance-status", "--instance-ids", withEvent)
		if len(st.InstanceStatuses) != 1 {
			t.Fatalf("describe-instance-status: %+v", st)
		}
		s := st.InstanceStatuses[0]
		want := []event{
			{"system-reboot", "scheduled reboot", eventID, iso(time.Hour), iso(3 * time.Hour), iso(72 * time.Hour)},
			{"instance-stop", "[Canceled] scheduled stop", canceled, iso(2 * time.Hour), iso(4 * time.Hour), ""},
		}
		if s.InstanceId != withEvent || s.AvailabilityZone != "us-east-1c" || s.InstanceState != (state{16, "running"}) ||
			s.InstanceStatus.Status != "ok" || s.SystemStatus.Status != "ok" || len(s.Events) != 2 || s.Events[0] != want[0] || s.Events[1] != want[1] {
			t.Errorf("describe-instance-status:\n got %+v\nwant events %+v", s, want)
		}

		var mod struct{ Event event }
		run(t, &mod, "ec2", "modify-instance-event-start-time", "--instance-id", withEvent,
			"--instance-event-id", eventID, "--not-before", ts(48*time.Hour))
		if w := (event{"system-reboot", "scheduled reboot", eventID, iso(48 * time.Hour), iso(50 * time.Hour), iso(72 * time.Hour)}); mod.Event != w {
			t.Errorf("modify-instance-event-start-time:\n got %+v\nwant %+v", mod.Event, w)
		}
		fails(t, "InvalidInstanceEventIDNotFound", "ec2", "modify-instance-event-start-time", "--instance-id", withEvent,
			"--instance-event-id", "instance-event-0ffffffffffffffff", "--not-before", ts(48*time.Hour))
		fails(t, "InvalidInstanceEventStartTime", "ec2", "modify-instance-event-start-time", "--instance-id", withEvent,
			"--instance-event-id", eventID, "--not-before", ts(73*time.Hour))
		fails(t, "InvalidInstanceEventIDNotFound", "ec2", "modify-instance-event-start-time", "--instance-id", withEvent,
			"--instance-event-id", canceled, "--not-before", ts(3*time.Hour))
		fails(t, "InvalidInstanceID.NotFound", "ec2", "modify-instance-event-start-time", "--instance-id", "i-0ffffffffffffffff",
			"--instance-event-id", eventID, "--not-before", ts(3*time.Hour))
	})

	t.Run("states", func(t *testing.T) {
		t.Parallel()
		type change struct {
			InstanceId                  string
			CurrentState, PreviousState state
		}
		var stop struct{ StoppingInstances []change }
		run(t, &stop, "ec2", "stop-instances", "--instance-ids", stopper)
		if w := (change{stopper, state{64, "stopping"}, state{16, "running"}}); len(stop.StoppingInstances) != 1 || stop.StoppingInstances[0] != w {
			t.Errorf("stop-instances: %+v, want %+v", stop, w)
		}
		var st statusOutput
		run(t, &st, "ec2", "describe-instance-status", "--instance-ids", stopper)
		if len(st.InstanceStatuses) != 0 {
			t.Errorf("describe-instance-status lists a stopping instance without --include-all-instances: %+v", st)
		}
		run(t, &st, "ec2", "describe-instance-status", "--instance-ids", stopper, "--include-all-instances")
		if len(st.InstanceStatuses) != 1 || st.InstanceStatuses[0].InstanceState != (state{64, "stopping"}) || st.InstanceStatuses[0].InstanceStatus.Status != "not-applicable" {
			t.Errorf("describe-instance-status --include-all-instances: %+v", st)
		}
		fails(t, "IncorrectInstanceState", "ec2", "start-instances", "--instance-ids", stopper)

		var term struct{ TerminatingInstances []change }
		run(t, &term, "ec2", "terminate-instances", "--instance-ids", stopper)
		if w := (change{stopper, state{32, "shutting-down"}, state{64, "stopping"}}); len(term.TerminatingInstances) != 1 || term.TerminatingInstances[0] != w {
			t.Errorf("terminate-instances: %+v, want %+v", term, w)
		}
		var desc struct {
			Reservations []struct {
				Instances []struct {
					State       state
					StateReason struct{ Code, Message string }
				}
			}
		}
		run(t, &desc, "ec2", "describe-instances", "--instance-ids", stopper)
		if len(desc.Reservations) != 1 || desc.Reservations[0].Instances[0].State != (state{32, "shutting-down"}) ||
			desc.Reservations[0].Instances[0].StateReason.Code != "Client.UserInitiatedShutdown" {
			t.Errorf("describe-instances after terminate: %+v", desc)
		}
		fails(t, "IncorrectInstanceState", "ec2", "stop-instances", "--instance-ids", stopper)
		fails(t, "InvalidInstanceID.NotFound", "ec2", "stop-instances", "--instance-ids", "i-0ffffffffffffffff")
		fails(t, "DryRunOperation", "ec2", "terminate-instances", "--instance-ids", withEvent, "--dry-run")
	})
}

// The Go SDK's paginator walks DescribeInstanceStatus five at a time.
func TestDescribeInstanceStatusPages(t *testing.T) {
	f, srv := newEC2Server(t)
	for i := range 7 {
		if _, err := f.reg.Put(t.Context(), config.Instance{InstanceID: fmt.Sprintf("i-0c000000000000%03d", i)}, store.Absent, ""); err != nil {
			t.Fatal(err)
		}
	}
	c := sdkClient(srv, testSecret)
	var ids []string
	pages := 0
	p := ec2.NewDescribeInstanceStatusPaginator(c, &ec2.DescribeInstanceStatusInput{MaxResults: aws.Int32(5), IncludeAllInstances: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, s := range page.InstanceStatuses {
			ids = append(ids, aws.ToString(s.InstanceId))
		}
	}
	if pages != 2 || len(ids) != 10 || !slices.IsSorted(ids) {
		t.Errorf("%d pages, ids %v; want 10 sorted ids in 2 pages", pages, ids)
	}
	_, err := c.DescribeInstanceStatus(t.Context(), &ec2.DescribeInstanceStatusInput{MaxResults: aws.Int32(3)})
	if apiCode(err) != "InvalidParameterValue" {
		t.Errorf("MaxResults 3: %v, want InvalidParameterValue", err)
	}
}
