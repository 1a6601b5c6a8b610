package etcdstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/etcdstore/etcdtest"
)

// slack is what a failing call may take beyond its request timeout.
const slack = 2 * time.Second

// TestCluster runs a three-member cluster through the loss of one member
// (quorum kept), of two (quorum lost) and their return.
func TestCluster(t *testing.T) {
	c := etcdtest.StartCluster(t, 3, etcdtest.Config{})
	const timeout = 2 * time.Second
	opts := Options{Endpoints: c.ClientURLs(), RequestTimeout: timeout, DialTimeout: timeout}
	s := open(t, opts)
	ctx := t.Context()

	r1, err := s.Put(ctx, "k", []byte("1"), store.Absent)
	if err != nil {
		t.Fatal(err)
	}
	_, listRev, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx, "", listRev)

	// One member down, the leader: the other two keep a quorum.
	first := c.Members[leader(t, s, c)]
	first.Kill()
	c.WaitHealthy(t, 30*time.Second)
	r2 := eventually(t, func() (int64, error) { return s.Put(ctx, "k", []byte("2"), r1) })
	if it, err := s.Get(ctx, "k"); err != nil || string(it.Value) != "2" || it.Revision != r2 {
		t.Errorf("Get after losing one member = %+v, %v; want 2 at revision %d", it, err, r2)
	}
	expect(t, w, "k", "2", r2)

	// A client whose endpoints start with the dead member still works.
	alive := slices.DeleteFunc(slices.Clone(c.Members), func(m *etcdtest.Member) bool { return m == first })
	o2 := opts
	o2.Endpoints = []string{first.ClientURL, alive[0].ClientURL, alive[1].ClientURL}
	s2 := open(t, o2)
	r3, err := s2.Put(ctx, "k2", []byte("3"), store.Absent)
	if err != nil {
		t.Fatalf("Put through a client listing the dead member: %v", err)
	}
	if items, _, err := s2.List(ctx, ""); err != nil || len(items) != 2 {
		t.Errorf("List through a client listing the dead member = %v, %v; want 2 items", items, err)
	}
	expect(t, w, "k2", "3", r3)

	// Two members down: no quorum. Every call fails within its deadline with
	// ErrUnavailable, and the watch closes.
	second := alive[0]
	second.Kill()
	for name, call := range map[string]func() error{
		"Get":    func() error { _, err := s.Get(ctx, "k"); return err },
		"List":   func() error { _, _, err := s.List(ctx, ""); return err },
		"Put":    func() error { _, err := s.Put(ctx, "k", []byte("x"), store.Any); return err },
		"Delete": func() error { return s.Delete(ctx, "k2", store.Any) },
		"Open": func() error {
			s, err := Open(ctx, opts)
			if err == nil {
				s.Close()
			}
			return err
		},
	} {
		start := time.Now()
		err := call()
		d := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s without quorum: %v, want ErrUnavailable", name, err)
		}
		if d > timeout+slack {
			t.Errorf("%s without quorum took %v, timeout %v", name, d, timeout)
		}
	}
	closed(t, w, 30*time.Second)

	// Both come back: the cluster recovers with its data, and the clients
	// reconnect by themselves.
	first.Restart(t)
	second.Restart(t)
	c.WaitHealthy(t, 30*time.Second)
	for _, cl := range []*Store{s, s2} {
		it := eventually(t, func() (store.Item, error) { return cl.Get(ctx, "k") })
		if string(it.Value) != "2" || it.Revision != r2 {
			t.Errorf("Get after recovery = %+v; want 2 at revision %d", it, r2)
		}
	}
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	w = s.Watch(ctx, "", rev)
	r4, err := s2.Put(ctx, "k", []byte("4"), r2)
	if err != nil {
		t.Fatalf("Put after recovery: %v", err)
	}
	expect(t, w, "k", "4", r4)
}

// leader returns the index of the cluster's leader.
func leader(t *testing.T, s *Store, c *etcdtest.Cluster) int {
	t.Helper()
	for i, m := range c.Members {
		st, err := s.cli.Status(t.Context(), m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.MemberId == st.Leader {
			return i
		}
	}
	t.Fatal("no member is the leader")
	return -1
}

// eventually retries call while it fails with ErrUnavailable, for a while: a
// cluster that just lost or regained members may need an election first.
func eventually[T any](t *testing.T, call func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := call()
		if err == nil {
			return v
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // paces retries; the result is checked, not the time
	}
}

func expect(t *testing.T, w <-chan store.Event, key, val string, rev int64) {
	t.Helper()
	select {
	case ev, ok := <-w:
		if !ok {
			t.Fatalf("watch closed; want %s=%s", key, val)
		}
		if ev.Key != key || string(ev.Value) != val || ev.Revision != rev || ev.Deleted {
			t.Errorf("event %+v (deleted %v), want %s=%s at revision %d", ev.Item, ev.Deleted, key, val, rev)
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatalf("no event within 10s; want %s=%s", key, val)
	}
}

func closed(t *testing.T, w <-chan store.Event, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	for {
		select {
		case ev, ok := <-w:
			if !ok {
				return
			}
			t.Errorf("event %+v from a cluster without quorum", ev)
		case <-ctx.Done():
			t.Fatalf("watch still open %v after the cluster lost its quorum", within)
		}
	}
}
