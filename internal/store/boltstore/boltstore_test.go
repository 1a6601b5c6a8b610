package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/storetest"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, filepath.Join(t.TempDir(), "imds.db"))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopenKeepsDataAndRevisions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imds.db")
	s := open(t, path)
	rev, err := s.Put(t.Context(), "k", []byte("v"), store.Absent)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	it, err := s.Get(t.Context(), "k")
	if err != nil || string(it.Value) != "v" || it.Revision != rev {
		t.Fatalf("after reopen: %+v, %v; want v at %d", it, err, rev)
	}
	if r2, _ := s.Put(t.Context(), "k2", nil, store.Any); r2 <= rev {
		t.Errorf("revision after reopen %d, want > %d", r2, rev)
	}
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imds.db")
	s := open(t, path)
	defer s.Close()
	if _, err := Open(path, 50*time.Millisecond); err == nil {
		t.Fatal("a second Open of the same file succeeded")
	}
}

func TestWatchTooOldCloses(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "imds.db"))
	defer s.Close()
	for range historyLen + 2 {
		if _, err := s.Put(t.Context(), "k", nil, store.Any); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ch := s.Watch(ctx, "", 1)
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("watch from a revision older than the history sent an event; want it closed")
		}
	case <-ctx.Done():
		t.Fatal(errors.New("watch neither closed nor sent"))
	}
}
