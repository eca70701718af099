package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-redsync/redsync/v4"

	"github.com/readthrough/readthrough/storage"
)

// lockTimeoutFactor bounds each lock command to this fraction of the lock's
// TTL. redsync's default (0.05) gives a 50 ms lock 2.5 ms per command,
// which a loaded machine misses; a lock that takes half its TTL to acquire
// is of little use anyway.
const lockTimeoutFactor = 0.5

// TryLock implements [storage.Locker.TryLock] with a redsync mutex named
// "<prefix>:l:{<bucket>}:<field>", tried once (no retry loop). Each of its
// commands is bounded to half the lock's ttl, which must be at least a
// millisecond; a lock taken too late to be of use is released and
// reported as an error, not as [storage.ErrLockHeld]. Redis errors are
// wrapped as they are, so a Redis that is down is never mistaken for a
// held or lost lock.
func (s *Store) TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (storage.Lock, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("redisstore: lock ttl %v is under a millisecond", ttl)
	}
	m := s.rs.NewMutex(s.lockKey(bucket, field),
		redsync.WithExpiry(ttl),
		redsync.WithTries(1),
		redsync.WithTimeoutFactor(lockTimeoutFactor),
	)
	err := m.TryLockContext(ctx)
	if err == nil {
		return &lock{m: m}, nil
	}
	if _, ok := errors.AsType[*redsync.ErrTaken](err); ok {
		return nil, storage.ErrLockHeld
	}
	if errors.Is(err, redsync.ErrFailed) {
		// Acquired, but too late to be of use; redsync released it.
		return nil, fmt.Errorf("redisstore: lock: took longer than its ttl %v: %w", ttl, err)
	}
	return nil, fmt.Errorf("redisstore: lock: %w", err)
}

var _ storage.Lock = (*lock)(nil)

// lock is a held redsync mutex. redsync's Mutex is not safe for concurrent
// use, so calls are serialised.
type lock struct {
	mu sync.Mutex
	m  *redsync.Mutex
}

// lostOr maps redsync's "no longer ours" errors to storage.ErrLockLost and
// wraps any other error.
func lostOr(op string, err error) error {
	if err == nil {
		// The command answered but the lock was not ours.
		return storage.ErrLockLost
	}
	if _, ok := errors.AsType[*redsync.ErrTaken](err); ok ||
		errors.Is(err, redsync.ErrLockAlreadyExpired) ||
		errors.Is(err, redsync.ErrExtendFailed) {
		return fmt.Errorf("redisstore: %s: %w", op, storage.ErrLockLost)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// Extend implements [storage.Lock.Extend] with redsync's extend script,
// which checks that the lock's key still holds this holder's value.
func (l *lock) Extend(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, err := l.m.ExtendContext(ctx)
	if ok {
		return nil
	}
	return lostOr("extend lock", err)
}

// Unlock implements [storage.Lock.Unlock] with redsync's delete script,
// which checks that the lock's key still holds this holder's value.
func (l *lock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, err := l.m.UnlockContext(ctx)
	if ok {
		return nil
	}
	return lostOr("unlock", err)
}
