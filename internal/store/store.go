// Package store is the small key-value interface that holds the fleet: instances,
// roles, images, account defaults, relays and the token key ring. It has two
// implementations, boltstore (one file, the default) and etcdstore (fleets and
// HA), and one contract test suite (storetest) that both pass.
package store

import (
	"context"
	"errors"
)

var (
	// ErrNotFound: no value at the key.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a conditional write found another revision than expected.
	ErrConflict = errors.New("store: revision conflict")
	// ErrUnavailable: the backend could not be reached in time. The data plane
	// keeps serving its last snapshot.
	ErrUnavailable = errors.New("store: unavailable")
)

// Revision conditions for Put and Delete.
const (
	// Any writes whatever the current revision.
	Any int64 = -1
	// Absent writes only if the key does not exist.
	Absent int64 = 0
)

// Item is a value and the revision of its last change. Revisions increase
// across the whole store, so a larger revision is a later change.
type Item struct {
	Key      string
	Value    []byte
	Revision int64
}

// Event is one change seen by a watch. Deleted events carry no value.
type Event struct {
	Item
	Deleted bool
}

// Store is a durable, strongly consistent key-value store.
//
// Every method honours ctx's deadline; an implementation returns an error
// wrapping ErrUnavailable when its backend does not answer in time.
// A write that returns nil is durable: it survives a crash of the process.
type Store interface {
	// Get returns the item at key, or ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// List returns every item whose key starts with prefix, in key order, and
	// the store revision it reflects (pass it to Watch to miss nothing).
	List(ctx context.Context, prefix string) ([]Item, int64, error)
	// Put writes value at key if the key's current revision is ifRevision
	// (Any: whatever it is; Absent: the key must not exist), else returns
	// ErrConflict. It returns the new revision.
	Put(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error)
	// Delete removes key under the same condition as Put; ErrNotFound when
	// there is nothing to delete.
	Delete(ctx context.Context, key string, ifRevision int64) error
	// Watch sends, in order, every change under prefix made after revision
	// afterRev, until ctx ends; then it closes the channel. If the backend
	// loses events (compaction, a long outage) it closes the channel early and
	// the caller lists again.
	Watch(ctx context.Context, prefix string, afterRev int64) <-chan Event
	// Close releases the store.
	Close() error
}
