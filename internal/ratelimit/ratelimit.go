// Package ratelimit throttles requests per key (the data plane's key is the
// calling instance), as EC2 throttles IMDS per instance: one key's flood
// spends only its own budget.
//
// Each key has a token bucket kept as one atomic integer (the generic cell
// rate algorithm: the time at which the bucket will be full again), so the
// request path takes no lock: a known key costs a sync.Map read and a
// compare-and-swap.
package ratelimit

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter allows each key Rate requests a second on average, and bursts of
// up to Burst. A nil *Limiter allows everything.
type Limiter struct {
	interval int64 // nanoseconds per request at the steady rate
	tol      int64 // how far ahead of now a bucket's full time may run
	start    time.Time
	now      func() time.Time
	buckets  sync.Map // key -> *bucket
}

type bucket struct {
	// full is when, in nanoseconds since Limiter.start, the bucket is full
	// again (the theoretical arrival time of GCRA).
	full atomic.Int64
}

// New returns a limiter of rate requests a second per key, with bursts of
// burst (at least 1). It returns nil, which allows everything, when rate is
// not positive. now may be nil for time.Now.
func New(rate float64, burst int, now func() time.Time) *Limiter {
	if rate <= 0 || math.IsNaN(rate) {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	burst = max(burst, 1)
	interval := int64(math.Max(1, float64(time.Second)/rate))
	return &Limiter{interval: interval, tol: int64(burst-1) * interval, start: now(), now: now}
}

func (l *Limiter) elapsed() int64 { return int64(l.now().Sub(l.start)) }

// Allow reports whether key may make a request now, and counts it if so.
func (l *Limiter) Allow(key string) bool {
	if l == nil {
		return true
	}
	v, ok := l.buckets.Load(key)
	if !ok {
		v, _ = l.buckets.LoadOrStore(key, &bucket{})
	}
	b := v.(*bucket)
	now := l.elapsed()
	for {
		full := b.full.Load()
		next := max(full, now) + l.interval
		if next-now > l.tol+l.interval {
			return false
		}
		if b.full.CompareAndSwap(full, next) {
			return true
		}
	}
}

// Sweep forgets the buckets that are full (idle keys, instances gone): a
// full bucket is the same as none. It returns how many it dropped.
func (l *Limiter) Sweep() int {
	if l == nil {
		return 0
	}
	now := l.elapsed()
	n := 0
	l.buckets.Range(func(k, v any) bool {
		if v.(*bucket).full.Load() <= now {
			// A request racing with the removal may find its bucket gone
			// and start a fresh one: it gains at most one burst.
			l.buckets.CompareAndDelete(k, v)
			n++
		}
		return true
	})
	return n
}

// Run sweeps every interval until ctx ends.
func (l *Limiter) Run(ctx context.Context, every time.Duration) error {
	if l == nil {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.Sweep()
		}
	}
}
