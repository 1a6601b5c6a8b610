// Package boltstore is the embedded store: one bbolt file in the data
// directory, fsynced on every write, with watches served in process.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imds/imds/internal/store"
)

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyRev     = []byte("revision")
)

// historyLen is how many recent changes a watch can replay.
const historyLen = 4096

// Store is a store.Store in one file.
type Store struct {
	db *bolt.DB

	mu      sync.Mutex // orders commits and their delivery to watchers
	subs    map[*subscriber]struct{}
	history []store.Event // the last changes, oldest first
}

// Open opens or creates the store file at path. Only one process may have it
// open; a second one waits up to timeout and fails.
func Open(path string, timeout time.Duration) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: another process holds it: %w", path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketKV); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db, subs: map[*subscriber]struct{}{}}, nil
}

// Close closes the file and ends every watch.
func (s *Store) Close() error {
	s.mu.Lock()
	for sub := range s.subs {
		sub.close()
	}
	s.subs = nil
	s.mu.Unlock()
	return s.db.Close()
}

// A value is stored as 8 bytes of revision followed by the value.
func encode(rev int64, v []byte) []byte {
	b := make([]byte, 8+len(v))
	binary.BigEndian.PutUint64(b, uint64(rev))
	copy(b[8:], v)
	return b
}

func decode(key, b []byte) store.Item {
	return store.Item{Key: string(key), Revision: int64(binary.BigEndian.Uint64(b)), Value: bytes.Clone(b[8:])}
}

func currentRev(tx *bolt.Tx) int64 {
	if b := tx.Bucket(bucketMeta).Get(keyRev); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.Item, error) {
	if err := ctx.Err(); err != nil {
		return store.Item{}, err
	}
	var it store.Item
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Get([]byte(key))
		if b == nil {
			return store.ErrNotFound
		}
		it = decode([]byte(key), b)
		return nil
	})
	return it, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Item, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var (
		items []store.Item
		rev   int64
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = currentRev(tx)
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			items = append(items, decode(k, v))
		}
		return nil
	})
	return items, rev, err
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	ev, err := s.write(ctx, key, value, ifRevision, false)
	return ev.Revision, err
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string, ifRevision int64) error {
	_, err := s.write(ctx, key, nil, ifRevision, true)
	return err
}

func (s *Store) write(ctx context.Context, key string, value []byte, ifRevision int64, del bool) (store.Event, error) {
	if err := ctx.Err(); err != nil {
		return store.Event{}, err
	}
	if key == "" {
		return store.Event{}, errors.New("store: empty key")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ev store.Event
	err := s.db.Update(func(tx *bolt.Tx) error {
		kv := tx.Bucket(bucketKV)
		cur := kv.Get([]byte(key))
		switch {
		case del && cur == nil:
			return store.ErrNotFound
		case ifRevision == store.Any:
		case ifRevision == store.Absent && cur != nil:
			return store.ErrConflict
		case ifRevision > 0 && (cur == nil || decode(nil, cur).Revision != ifRevision):
			return store.ErrConflict
		}
		rev := currentRev(tx) + 1
		var rb [8]byte
		binary.BigEndian.PutUint64(rb[:], uint64(rev))
		if err := tx.Bucket(bucketMeta).Put(keyRev, rb[:]); err != nil {
			return err
		}
		ev = store.Event{Item: store.Item{Key: key, Revision: rev}, Deleted: del}
		if del {
			return kv.Delete([]byte(key))
		}
		ev.Value = bytes.Clone(value)
		return kv.Put([]byte(key), encode(rev, value))
	})
	if err != nil {
		return store.Event{}, err
	}
	s.history = append(s.history, ev)
	if len(s.history) > historyLen {
		s.history = s.history[len(s.history)-historyLen:]
	}
	for sub := range s.subs {
		sub.send(ev)
	}
	return ev, nil
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) <-chan store.Event {
	sub := newSubscriber(prefix)
	s.mu.Lock()
	if s.subs == nil { // closed
		s.mu.Unlock()
		sub.close()
		return sub.out
	}
	var rev int64
	_ = s.db.View(func(tx *bolt.Tx) error { rev = currentRev(tx); return nil })
	if afterRev < rev {
		// Replay from history if it reaches back far enough.
		if len(s.history) == 0 || s.history[0].Revision > afterRev+1 {
			s.mu.Unlock()
			sub.close()
			return sub.out
		}
		for _, ev := range s.history {
			if ev.Revision > afterRev {
				sub.send(ev)
			}
		}
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		if s.subs != nil {
			delete(s.subs, sub)
		}
		s.mu.Unlock()
		sub.close()
	}()
	return sub.out
}

// subscriber queues events without bound so that a slow watcher never blocks
// a write.
type subscriber struct {
	prefix string
	out    chan store.Event

	mu     sync.Mutex
	queue  []store.Event
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

func newSubscriber(prefix string) *subscriber {
	s := &subscriber{prefix: prefix, out: make(chan store.Event), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *subscriber) send(ev store.Event) {
	if !strings.HasPrefix(ev.Key, s.prefix) {
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) run() {
	defer close(s.out)
	for range s.wake {
		for {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return
			}
			if len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			ev := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			select {
			case s.out <- ev:
			case <-s.done:
				return
			}
		}
	}
}
