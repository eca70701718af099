package memstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// TryLock implements [storage.Locker.TryLock]. Any positive ttl is
// accepted.
func (s *Store) TryLock(_ context.Context, bucket, field string, ttl time.Duration) (storage.Lock, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("memstore: lock ttl %v is not positive", ttl)
	}
	if err := checkBrace("bucket", bucket); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.noteWrite(now)
	k := key{bucket, field}
	if s.lock(k, now) != nil {
		return nil, storage.ErrLockHeld
	}
	l := &memLock{expires: now.Add(ttl)}
	s.locks[k] = l
	return &lock{store: s, key: k, held: l, ttl: ttl}, nil
}

// lock is a lock taken with TryLock. Ownership is the identity of the
// *memLock in the store's map: once it expired, was flushed or purged, or
// was replaced by another holder's, the lock is lost.
type lock struct {
	store *Store
	key   key
	held  *memLock
	ttl   time.Duration
}

var _ storage.Lock = (*lock)(nil)

func (l *lock) Extend(context.Context) error {
	s := l.store
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.lock(l.key, now) != l.held {
		return storage.ErrLockLost
	}
	l.held.expires = now.Add(l.ttl)
	return nil
}

func (l *lock) Unlock(context.Context) error {
	s := l.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock(l.key, time.Now()) != l.held {
		return storage.ErrLockLost
	}
	delete(s.locks, l.key)
	return nil
}

// Watch implements [storage.Locker.Watch]. It never waits and never fails:
// ctx is not used, and the error is always nil. A [Store.Publish] that
// starts after Watch returns is delivered.
func (s *Store) Watch(_ context.Context, bucket, field string) (<-chan storage.Fill, func(), error) {
	w := &waiter{ch: make(chan storage.Fill, 1)}
	k := key{bucket, field}
	s.mu.Lock()
	set := s.waiters[k]
	if set == nil {
		set = make(map[*waiter]struct{})
		s.waiters[k] = set
	}
	set[w] = struct{}{}
	s.mu.Unlock()
	return w.ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if set := s.waiters[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(s.waiters, k)
			}
		}
	}, nil
}

// Publish implements [storage.Locker.Publish]. Delivery is synchronous:
// when Publish returns, every watcher's channel holds f. It never fails.
func (s *Store) Publish(_ context.Context, bucket, field string, f storage.Fill) error {
	k := key{bucket, field}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.waiters[k] {
		// Each waiter is removed on delivery, so its one-slot buffer is
		// always free here.
		w.ch <- f
	}
	delete(s.waiters, k)
	return nil
}

// checkBrace rejects a bucket or route name with a brace, which the Redis
// store refuses (its Cluster hash tag), so that every store accepts the
// same names.
func checkBrace(what, name string) error {
	if strings.ContainsAny(name, "{}") {
		return fmt.Errorf("memstore: %s %q contains a brace", what, name)
	}
	return nil
}
