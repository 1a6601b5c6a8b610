package events

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imds/imds/internal/registry"
)

// Clock is the time a Runner fires by; tests drive their own.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the system clock.
var RealClock Clock = realClock{}

// Records calls yield with every instance record the replica serves that
// has a change scheduled (Scheduled), until yield returns false
// (fleet.Snapshot.Records of the current snapshot). Records it leaves out
// have nothing due.
type Records func(yield func(*registry.Instance) bool)

// Runner fires the timed steps of the instances a replica serves when their
// time comes. It needs no leader: several replicas may fire the same step,
// and the store's compare-and-swap lets one write it.
type Runner struct {
	reg     *registry.Registry
	records func() Records
	clock   Clock
	log     *slog.Logger
	wake    chan struct{}
	// next caches each record's next step by revision, so that a change to
	// one instance does not re-read every other one; gen is the Fire call
	// that last saw it.
	next map[string]*cached
	gen  uint64

	written, failed atomic.Int64
}

// Stats count what a runner did since it was made.
type Stats struct {
	// Written is how many records it changed (steps it wrote; a step another
	// replica wrote first is not counted).
	Written int64
	// Failed is how many writes failed (they are retried).
	Failed int64
}

// Stats returns the runner's counts.
func (r *Runner) Stats() Stats { return Stats{r.written.Load(), r.failed.Load()} }

type cached struct {
	rev  int64
	next time.Time
	gen  uint64
}

// NewRunner returns a runner that writes through reg and reads the records
// to watch from records (called again after each Notify).
func NewRunner(reg *registry.Registry, records func() Records, clock Clock, log *slog.Logger) *Runner {
	if clock == nil {
		clock = RealClock
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{reg: reg, records: records, clock: clock, log: log, wake: make(chan struct{}, 1), next: map[string]*cached{}}
}

// Notify tells the runner that the records changed. It never blocks.
func (r *Runner) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// retryAfter is how long the runner waits before it tries a failed write again.
const retryAfter = time.Second

// Run fires steps until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	for {
		next, err := r.Fire(ctx)
		if ctx.Err() != nil {
			return nil
		}
		now := r.clock.Now()
		if err != nil {
			r.log.Warn("event step not written; retrying", "component", "events", "err", err, "retry_in", retryAfter)
			if next.IsZero() || next.After(now.Add(retryAfter)) {
				next = now.Add(retryAfter)
			}
		}
		var timer <-chan time.Time
		if !next.IsZero() {
			timer = r.clock.After(next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-timer:
		}
	}
}

// Fire writes every step due now and returns when the next one is due (zero
// for none). Errors are joined; the steps that could be written are.
func (r *Runner) Fire(ctx context.Context) (time.Time, error) {
	now := r.clock.Now()
	r.gen++
	var (
		next time.Time
		errs []error
		n    int
	)
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	r.records()(func(rec *registry.Instance) bool {
		n++
		id := rec.Spec.InstanceID
		c := r.next[id]
		switch {
		case c == nil:
			c = &cached{rev: rec.Revision, next: Next(rec)}
			r.next[id] = c
		case c.rev != rec.Revision || rec.Revision == 0:
			c.rev, c.next = rec.Revision, Next(rec)
		}
		c.gen = r.gen
		if c.next.IsZero() || c.next.After(now) {
			earliest(c.next)
			return ctx.Err() == nil
		}
		wrote := false
		fresh, err := r.reg.Update(ctx, id, func(in *registry.Instance) error {
			wrote = false // this attempt's; a lost compare-and-swap tries again
			if !Advance(in, now) {
				return registry.ErrUnchanged
			}
			wrote = true
			return nil
		})
		var nf *registry.NotFoundError
		switch {
		case errors.As(err, &nf):
			c.next = time.Time{}
		case err != nil:
			r.failed.Add(1)
			errs = append(errs, err)
		default:
			if wrote {
				r.written.Add(1)
				r.log.Info("event step", "component", "events", "instance", id, "state", fresh.State.Name())
			}
			c.rev, c.next = fresh.Revision, Next(fresh)
			earliest(c.next)
		}
		return ctx.Err() == nil
	})
	if len(r.next) > n { // instances went away
		for id, c := range r.next {
			if c.gen != r.gen {
				delete(r.next, id)
			}
		}
	}
	return next, errors.Join(errs...)
}
