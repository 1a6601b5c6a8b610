package events

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
)

// listRecords reads the records straight from the registry: what a
// replica's fleet snapshot holds once it has caught up.
func listRecords(t *testing.T, reg *registry.Registry) func() Records {
	return func() Records {
		all, err := reg.Instances(context.Background())
		if err != nil {
			t.Error(err)
		}
		return func(yield func(*registry.Instance) bool) {
			for _, in := range all {
				if !yield(in) {
					return
				}
			}
		}
	}
}

func openRegistry(t *testing.T) *registry.Registry {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "imds.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return registry.New(st, nil)
}

// Two replicas fire the same Spot interruption on a shared store: the
// instance goes through shutting-down to terminated at the right moments,
// and the maintenance window that ends in between moves to history.
func TestRunnersFireOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := openRegistry(t)
		ctx := t.Context()
		start := time.Now()
		spec := config.Instance{
			InstanceID: "i-0123456789abcdef0",
			Spot:       &config.SpotAction{Action: "terminate", Time: format(start.Add(2 * time.Minute))},
			Events: []config.MaintenanceEvent{{Code: "system-reboot", EventID: "instance-event-0aaaaaaaaaaaaaaaa",
				NotBefore: format(start.Add(time.Minute)), NotAfter: format(start.Add(90 * time.Second)), State: "active"}},
		}
		if _, err := reg.Put(ctx, spec, store.Absent, ""); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var runners []*Runner
		for range 2 {
			r := NewRunner(reg, listRecords(t, reg), nil, nil)
			runners = append(runners, r)
			go r.Run(ctx)
		}
		check := func(at time.Duration, wantState metadata.State, wantEvent string) {
			t.Helper()
			time.Sleep(time.Until(start.Add(at)))
			synctest.Wait()
			in, err := reg.Instance(ctx, spec.InstanceID)
			if err != nil {
				t.Fatal(err)
			}
			if in.State.Name() != wantState.Name() || in.Spec.Events[0].State != wantEvent {
				t.Errorf("at %v: state %q, event %q; want %q, %q", at, in.State.Name(), in.Spec.Events[0].State, wantState.Name(), wantEvent)
			}
		}
		check(89*time.Second, metadata.Running, "active")
		check(90*time.Second, metadata.Running, "completed")
		check(2*time.Minute-time.Second, metadata.Running, "completed")
		check(2*time.Minute, metadata.ShuttingDown, "completed")
		check(2*time.Minute+TransitionTime-time.Second, metadata.ShuttingDown, "completed")
		check(2*time.Minute+TransitionTime, metadata.Terminated, "completed")
		// Three steps, each written once between the two runners.
		if w := runners[0].Stats().Written + runners[1].Stats().Written; w != 3 {
			t.Errorf("%d steps written, want 3", w)
		}
		cancel()
		synctest.Wait()
	})
}
