package nth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/events"
	"github.com/imds/imds/internal/events/eventstest"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/server"
	"github.com/imds/imds/internal/store/etcdstore"
	"github.com/imds/imds/internal/store/etcdstore/etcdtest"
)

const spotID = "i-0a000000000000001"

func writeConfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "imds.yaml")
	if err := os.WriteFile(p, []byte(fleetConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An event injected through one replica reaches the other through the
// store, and its steps fire there too: no replica leads, and both data
// planes agree at each moment.
func TestReplicasFireEvents(t *testing.T) {
	needLoopbackRange(t)
	member := etcdtest.Start(t)
	cfg := writeConfig(t)
	clk := eventstest.NewClock(t0)
	var rs []*env
	for i := range 2 {
		e, _ := launch(t, clk, server.Options{ConfigPath: cfg, DataDir: filepath.Join(t.TempDir(), "replica", string(rune('a'+i))),
			Store: "etcd", Etcd: etcdstore.Options{Endpoints: []string{member.ClientURL}}})
		rs = append(rs, e)
	}
	if _, err := rs[0].admin.AddEvent(t.Context(), spotID, adminapi.EventRequest{Type: adminapi.EventSpot, In: "2m"}); err != nil {
		t.Fatal(err)
	}
	notice := t0.Add(2 * time.Minute)
	for _, e := range rs {
		a := newAgent(e.base, addrOf(spotID))
		e.eventually("the other replica serves the notice", func() bool { return a.poll(t.Context()) == nil && len(a.seen("SPOT_ITN")) == 1 })
	}
	rs[0].advance(notice)
	for _, e := range rs {
		e.eventually("shutting down on both replicas", func() bool { return e.state(spotID) == metadata.ShuttingDown })
	}
	rs[0].advance(notice.Add(events.TransitionTime))
	for _, e := range rs {
		a := newAgent(e.base, addrOf(spotID))
		e.eventually("gone on both replicas", func() bool {
			err := a.poll(t.Context())
			return err != nil && strings.Contains(err.Error(), "status 403")
		})
	}
}

// A step that falls due while the server is down fires when it is back, at
// its own time: the events are in the store.
func TestEventsSurviveRestart(t *testing.T) {
	needLoopbackRange(t)
	cfg := writeConfig(t)
	data := filepath.Join(t.TempDir(), "data")
	clk := eventstest.NewClock(t0)
	e, stop := launch(t, clk, server.Options{ConfigPath: cfg, DataDir: data})
	if _, err := e.admin.AddEvent(t.Context(), spotID, adminapi.EventRequest{Type: adminapi.EventSpot, Action: "stop", In: "2m"}); err != nil {
		t.Fatal(err)
	}
	stop()
	clk.Advance(10 * time.Minute)
	e, _ = launch(t, clk, server.Options{ConfigPath: cfg, DataDir: data})
	e.eventually("stopped after the restart", func() bool { return e.state(spotID) == metadata.Stopped })
	in, err := e.srv.Registry().Instance(t.Context(), spotID)
	if err != nil {
		t.Fatal(err)
	}
	if in.StateReason != events.ReasonSpotShutdown {
		t.Errorf("state reason %q, want %q", in.StateReason, events.ReasonSpotShutdown)
	}
	a := newAgent(e.base, addrOf(spotID))
	if err := a.poll(t.Context()); err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Errorf("metadata of the stopped instance: %v, want 403", err)
	}
	// Started again, it runs without the interruption of its last run.
	if _, err := e.admin.ChangeState(t.Context(), spotID, adminapi.StateStart); err != nil {
		t.Fatal(err)
	}
	e.advance(clk.Now().Add(events.TransitionTime))
	e.eventually("running again", func() bool { return e.state(spotID) == metadata.Running })
	e.eventually("served without the notice", func() bool {
		a := newAgent(e.base, addrOf(spotID))
		return a.poll(t.Context()) == nil && len(a.seen("SPOT_ITN")) == 0
	})
}
