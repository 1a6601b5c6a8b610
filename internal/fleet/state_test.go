package fleet

import (
	"net/netip"
	"testing"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
)

// A stopped or terminated instance is out of the data plane's reach (by
// address, id and as the default) while its record stays for the APIs.
func TestGoneInstancesAreNotServed(t *testing.T) {
	for _, st := range []metadata.State{metadata.Running, metadata.Pending, metadata.Stopping, metadata.ShuttingDown, metadata.Stopped, metadata.Terminated} {
		t.Run(string(st), func(t *testing.T) {
			b := NewBuilder(nil, nil, nil)
			b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}}, State: st, Revision: 1})
			s := b.Snapshot(Settings{DefaultInstance: "i-0000000000000000a"})
			served := s.ByID("i-0000000000000000a") != nil
			byAddr := s.ByAddr(netip.MustParseAddr("10.0.0.1")) != nil
			def := s.Default() != nil
			if want := !st.Gone(); served != want || byAddr != want || def != want {
				t.Errorf("served by id %v, by address %v, as default %v; want %v", served, byAddr, def, want)
			}
			if gone := s.GoneAt(netip.MustParseAddr("10.0.0.1")) != nil; gone != st.Gone() {
				t.Errorf("GoneAt: %v, want %v", gone, st.Gone())
			}
		})
	}
}

func TestLifecycleLeaves(t *testing.T) {
	now := time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)
	b := NewBuilder(nil, nil, func() time.Time { return now })
	b.PutInstance(&registry.Instance{Spec: config.Instance{
		InstanceID:           "i-0000000000000000a",
		TargetLifecycleState: "Terminated",
		Events: []config.MaintenanceEvent{
			{Code: "system-reboot", Description: "scheduled reboot", EventID: "instance-event-0aaaaaaaaaaaaaaaa", NotBefore: "2026-03-01T09:00:00Z", NotAfter: "2026-03-01T10:00:00Z", State: "completed"},
			{Code: "instance-stop", Description: "scheduled stop", EventID: "instance-event-0bbbbbbbbbbbbbbbb", NotBefore: "2026-03-04T09:00:00Z", State: "canceled"},
		},
	}, Revision: 1})
	s := b.Snapshot(Settings{})
	tree := s.ByID("i-0000000000000000a").Tree
	for path, want := range map[string]string{
		"meta-data/autoscaling/target-lifecycle-state": "Terminated",
		"meta-data/events/maintenance/scheduled":       "[]",
	} {
		n, ok := tree.Lookup(path)
		if !ok {
			t.Errorf("%s: missing", path)
			continue
		}
		body, _ := n.Body(metadataRequest())
		if string(body) != want {
			t.Errorf("%s = %q, want %q", path, body, want)
		}
	}
	hn, ok := tree.Lookup("meta-data/events/maintenance/history")
	if !ok {
		t.Fatal("meta-data/events/maintenance/history: missing")
	}
	hist, _ := hn.Body(metadataRequest())
	for _, want := range []string{`"Description" : "[Completed] scheduled reboot"`, `"State" : "completed"`, `"Description" : "[Canceled] scheduled stop"`, `"State" : "canceled"`, `"NotBefore" : "1 Mar 2026 09:00:00 GMT"`} {
		if !contains(hist, want) {
			t.Errorf("history lacks %s:\n%s", want, hist)
		}
	}
}

// The snapshot keeps the records the events runner needs, those with a
// change scheduled, and no other.
func TestRecordsAreThoseWithScheduledChanges(t *testing.T) {
	b := NewBuilder(nil, nil, nil)
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000a"}, Revision: 1})
	b.PutInstance(&registry.Instance{Spec: config.Instance{InstanceID: "i-0000000000000000b", Spot: &config.SpotAction{Action: "stop", Time: "2026-03-01T10:00:00Z"}}, Revision: 2})
	var ids []string
	b.Snapshot(Settings{}).Records(func(rec *registry.Instance) bool { ids = append(ids, rec.Spec.InstanceID); return true })
	if len(ids) != 1 || ids[0] != "i-0000000000000000b" {
		t.Errorf("Records yielded %v, want only the instance with a Spot interruption", ids)
	}
}
