package imdstest

import (
	"time"

	"github.com/imds/imds/internal/config"
)

// Spot interruption actions, as spot/instance-action spells them.
const (
	SpotTerminate = "terminate"
	SpotStop      = "stop"
	SpotHibernate = "hibernate"
)

// MaintenanceEvent is a scheduled event of events/maintenance/.
type MaintenanceEvent struct {
	Code        string // e.g. system-reboot, instance-retirement
	Description string
	EventID     string // default: derived from the instance and the event
	NotBefore   time.Time
	NotAfter    time.Time // optional
	State       string    // "active" (default), "canceled" or "completed"
}

// SetSpotInterruption serves a Spot interruption notice for action
// (SpotTerminate, SpotStop or SpotHibernate) at the given time:
// spot/instance-action, and spot/termination-time for terminate. When that
// time arrives (by the system clock) the instance goes away as on EC2: it
// stops or terminates and its metadata answers 403. Give a time in the
// future to keep the notice served.
func (i *Instance) SetSpotInterruption(action string, at time.Time) {
	i.s.t.Helper()
	i.update("SetSpotInterruption", func(in *config.Instance) {
		in.Spot = &config.SpotAction{Action: action, Time: rfc3339(at)}
	})
}

// SetRebalanceRecommendation serves events/recommendations/rebalance with
// the given notice time.
func (i *Instance) SetRebalanceRecommendation(at time.Time) {
	i.s.t.Helper()
	i.update("SetRebalanceRecommendation", func(in *config.Instance) { in.Rebalance = rfc3339(at) })
}

// AddMaintenanceEvent adds a scheduled maintenance event.
func (i *Instance) AddMaintenanceEvent(e MaintenanceEvent) {
	i.s.t.Helper()
	i.update("AddMaintenanceEvent", func(in *config.Instance) {
		me := config.MaintenanceEvent{Code: e.Code, Description: e.Description, EventID: e.EventID,
			NotBefore: rfc3339(e.NotBefore), State: e.State}
		if !e.NotAfter.IsZero() {
			me.NotAfter = rfc3339(e.NotAfter)
		}
		in.Events = append(in.Events, me)
	})
}

// ClearEvents withdraws the Spot interruption notice, the rebalance
// recommendation and every maintenance event.
func (i *Instance) ClearEvents() {
	i.s.t.Helper()
	i.update("ClearEvents", func(in *config.Instance) {
		in.Spot, in.Rebalance, in.Events = nil, "", nil
	})
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
