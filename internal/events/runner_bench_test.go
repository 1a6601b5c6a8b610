package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/registry"
)

// BenchmarkFireNothingDue is what a replica pays on each snapshot change of a
// fleet of 100,000 instances, one in ten with a future Spot time: the scan
// with every record's next step cached.
func BenchmarkFireNothingDue(b *testing.B) {
	recs := make([]*registry.Instance, 100_000)
	for i := range recs {
		spec := config.Instance{InstanceID: fmt.Sprintf("i-%017x", i)}
		if i%10 == 0 {
			spec.Spot = &config.SpotAction{Action: "terminate", Time: format(t0.Add(time.Hour))}
		}
		recs[i] = &registry.Instance{Spec: spec, Revision: int64(i + 1)}
	}
	records := func() Records {
		return func(yield func(*registry.Instance) bool) {
			for _, r := range recs {
				if !yield(r) {
					return
				}
			}
		}
	}
	r := NewRunner(nil, records, fixedClock(t0), nil)
	for b.Loop() {
		if next, err := r.Fire(b.Context()); err != nil || !next.Equal(t0.Add(time.Hour)) {
			b.Fatalf("next %v, err %v", next, err)
		}
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time                     { return time.Time(c) }
func (fixedClock) After(time.Duration) <-chan time.Time { return nil }
