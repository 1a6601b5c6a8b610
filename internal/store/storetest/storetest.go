// Package storetest is the contract every store.Store implementation passes.
// Call Run from the implementation's tests with a function that returns a new,
// empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imds/imds/internal/store"
)

// Run runs the contract against stores made by open. Each subtest gets its
// own store; keys are prefixed so that a shared backend would also do.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutConditions", testPutConditions},
		{"DeleteConditions", testDeleteConditions},
		{"ListPrefix", testListPrefix},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"ValuesAreCopied", testValuesAreCopied},
		{"WatchSeesChangesInOrder", testWatch},
		{"WatchReplaysFromRevision", testWatchReplay},
		{"WatchEndsWithContext", testWatchEnds},
		{"NoLostUpdates", testNoLostUpdates},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s store.Store, key, val string, ifRev int64) int64 {
	t.Helper()
	rev, err := s.Put(ctx(t), key, []byte(val), ifRev)
	if err != nil {
		t.Fatalf("Put(%q, %q, %d): %v", key, val, ifRev, err)
	}
	return rev
}

func testGetMissing(t *testing.T, s store.Store) {
	if _, err := s.Get(ctx(t), "c/missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get missing: %v, want ErrNotFound", err)
	}
}

func testPutConditions(t *testing.T, s store.Store) {
	r1 := mustPut(t, s, "c/k", "v1", store.Absent)
	if r1 <= 0 {
		t.Fatalf("revision %d, want > 0", r1)
	}
	if _, err := s.Put(ctx(t), "c/k", []byte("x"), store.Absent); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Put Absent on existing key: %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx(t), "c/k", []byte("x"), r1+1000); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Put with wrong revision: %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx(t), "c/other", []byte("x"), 5); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Put with a revision on a missing key: %v, want ErrConflict", err)
	}
	r2 := mustPut(t, s, "c/k", "v2", r1)
	if r2 <= r1 {
		t.Errorf("revision after update %d, want > %d", r2, r1)
	}
	r3 := mustPut(t, s, "c/k", "v3", store.Any)
	it, err := s.Get(ctx(t), "c/k")
	if err != nil || string(it.Value) != "v3" || it.Revision != r3 || it.Key != "c/k" {
		t.Errorf("Get = %+v, %v; want v3 at revision %d", it, err, r3)
	}
}

func testDeleteConditions(t *testing.T, s store.Store) {
	if err := s.Delete(ctx(t), "c/k", store.Any); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete missing: %v, want ErrNotFound", err)
	}
	r := mustPut(t, s, "c/k", "v", store.Absent)
	if err := s.Delete(ctx(t), "c/k", r+1000); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Delete with wrong revision: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx(t), "c/k", r); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx(t), "c/k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	mustPut(t, s, "c/k", "again", store.Absent)
}

func testListPrefix(t *testing.T, s store.Store) {
	for _, k := range []string{"c/b/2", "c/a", "c/b/1", "c/bb", "d/x"} {
		mustPut(t, s, k, "v-"+k, store.Any)
	}
	items, rev, err := s.List(ctx(t), "c/b/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key)
		if string(it.Value) != "v-"+it.Key {
			t.Errorf("List value of %s = %q", it.Key, it.Value)
		}
	}
	if fmt.Sprint(keys) != "[c/b/1 c/b/2]" {
		t.Errorf("List(c/b/) keys %v, want [c/b/1 c/b/2]", keys)
	}
	if rev <= 0 {
		t.Errorf("List revision %d, want > 0", rev)
	}
	all, _, _ := s.List(ctx(t), "c/")
	if len(all) != 4 {
		t.Errorf("List(c/) gave %d items, want 4", len(all))
	}
}

func testRevisionsIncrease(t *testing.T, s store.Store) {
	a := mustPut(t, s, "c/a", "1", store.Any)
	b := mustPut(t, s, "c/b", "1", store.Any)
	c := mustPut(t, s, "c/a", "2", store.Any)
	if !(a < b && b < c) {
		t.Errorf("revisions %d, %d, %d: want increasing across keys", a, b, c)
	}
	_, rev, _ := s.List(ctx(t), "c/")
	if rev < c {
		t.Errorf("List revision %d, want >= %d", rev, c)
	}
}

func testValuesAreCopied(t *testing.T, s store.Store) {
	v := []byte("value")
	mustPut(t, s, "c/k", string(v), store.Any)
	it, _ := s.Get(ctx(t), "c/k")
	it.Value[0] = 'X'
	again, _ := s.Get(ctx(t), "c/k")
	if string(again.Value) != "value" {
		t.Errorf("changing a returned value changed the store: %q", again.Value)
	}
}

func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("no event within 10s")
	}
	return store.Event{}
}

func testWatch(t *testing.T, s store.Store) {
	mustPut(t, s, "c/w/old", "x", store.Any)
	_, rev, err := s.List(ctx(t), "c/w/")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx(t), "c/w/", rev)
	r1 := mustPut(t, s, "c/w/a", "1", store.Any)
	mustPut(t, s, "c/other", "ignored", store.Any)
	r2 := mustPut(t, s, "c/w/a", "2", r1)
	if err := s.Delete(ctx(t), "c/w/old", store.Any); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		key, val string
		rev      int64
		del      bool
	}{{"c/w/a", "1", r1, false}, {"c/w/a", "2", r2, false}, {"c/w/old", "", 0, true}} {
		ev := next(t, ch)
		if ev.Key != want.key || ev.Deleted != want.del || (!want.del && (string(ev.Value) != want.val || ev.Revision != want.rev)) {
			t.Errorf("event %+v (deleted %v), want %s=%q rev %d deleted %v", ev.Item, ev.Deleted, want.key, want.val, want.rev, want.del)
		}
	}
}

func testWatchReplay(t *testing.T, s store.Store) {
	r1 := mustPut(t, s, "c/r/a", "1", store.Any)
	mustPut(t, s, "c/r/b", "2", store.Any)
	mustPut(t, s, "c/r/c", "3", store.Any)
	ch := s.Watch(ctx(t), "c/r/", r1)
	for _, want := range []string{"c/r/b", "c/r/c"} {
		if ev := next(t, ch); ev.Key != want {
			t.Errorf("replayed %s, want %s", ev.Key, want)
		}
	}
}

func testWatchEnds(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(t.Context())
	_, rev, _ := s.List(ctx(t), "c/")
	ch := s.Watch(c, "c/", rev)
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch still open 10s after its context ended")
		}
	}
}

func testNoLostUpdates(t *testing.T, s store.Store) {
	const workers, each = 4, 10
	mustPut(t, s, "c/counter", "0", store.Absent)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					it, err := s.Get(ctx(t), "c/counter")
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(it.Value))
					_, err = s.Put(ctx(t), "c/counter", []byte(strconv.Itoa(n+1)), it.Revision)
					if errors.Is(err, store.ErrConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	it, _ := s.Get(ctx(t), "c/counter")
	if string(it.Value) != strconv.Itoa(workers*each) {
		t.Errorf("counter %s after %d increments", it.Value, workers*each)
	}
}
