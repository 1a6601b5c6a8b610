package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func allowed(l *Limiter, key string, n int) int {
	got := 0
	for range n {
		if l.Allow(key) {
			got++
		}
	}
	return got
}

func TestBurstThenRate(t *testing.T) {
	var c clock
	l := New(10, 5, c.now)
	if got := allowed(l, "a", 100); got != 5 {
		t.Fatalf("a burst allowed %d, want 5", got)
	}
	// Another key has its own bucket.
	if got := allowed(l, "b", 100); got != 5 {
		t.Fatalf("key b allowed %d after a's burst, want 5", got)
	}
	c.advance(100 * time.Millisecond) // one request's worth at 10/s
	if got := allowed(l, "a", 100); got != 1 {
		t.Fatalf("after 100ms: %d allowed, want 1", got)
	}
	c.advance(time.Hour) // a full bucket, not more
	if got := allowed(l, "a", 100); got != 5 {
		t.Fatalf("after an hour: %d allowed, want 5", got)
	}
}

func TestNilAllowsEverything(t *testing.T) {
	for _, rate := range []float64{0, -1} {
		l := New(rate, 10, nil)
		if l != nil || !l.Allow("a") || l.Sweep() != 0 {
			t.Errorf("New(%v): %v, want a nil limiter that allows", rate, l)
		}
	}
}

// TestFloodDoesNotStarveOthers: while many goroutines flood one key, every
// request of another key within its budget is allowed, and the flood gets
// exactly its own budget.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	var c clock
	l := New(100, 50, c.now)
	var flooded atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10_000 {
				if l.Allow("flood") {
					flooded.Add(1)
				}
			}
		})
	}
	quiet := allowed(l, "quiet", 50)
	wg.Wait()
	if quiet != 50 {
		t.Errorf("the quiet key got %d of its 50", quiet)
	}
	if got := flooded.Load(); got != 50 {
		t.Errorf("the flood got %d, want exactly its burst of 50", got)
	}
}

func TestSweep(t *testing.T) {
	var c clock
	l := New(10, 2, c.now)
	for i := range 100 {
		l.Allow(fmt.Sprint(i))
	}
	if n := l.Sweep(); n != 0 {
		t.Errorf("swept %d busy buckets", n)
	}
	c.advance(time.Second)
	if n := l.Sweep(); n != 100 {
		t.Errorf("swept %d idle buckets, want 100", n)
	}
	if got := allowed(l, "0", 10); got != 2 {
		t.Errorf("a swept key allowed %d, want a fresh burst of 2", got)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(1e12, 1, nil) // never refuses: measures the check itself
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprintf("i-%017x", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}
