package storage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// MemoryStore is an in-process store: a mutex around maps. It implements the
// same methods as the Redis store (values, bucket expiry, field bounds, tags,
// locks, fill notifications and purges), so unit tests and single-process
// services can run the middleware without Redis. Several middleware instances
// sharing one MemoryStore behave like several processes sharing one Redis.
//
// Time is read with [time.Now], so inside a [testing/synctest] bubble the
// store follows the bubble's fake clock. The zero value is not usable; call
// [NewMemoryStore].
type MemoryStore struct {
	mu      sync.Mutex
	buckets map[string]*memBucket
	tags    map[string]*memTag
	locks   map[memKey]*memLock
	waiters map[memKey]map[*memWaiter]struct{}
	// writes counts writes since the last sweep of expired items.
	writes int
}

// memKey names one field of one bucket.
type memKey struct{ bucket, field string }

type memBucket struct {
	fields  map[string][]byte
	expires time.Time // zero: no expiry
}

type memTag struct {
	buckets map[string]struct{}
	expires time.Time // zero: no expiry
}

type memLock struct {
	expires time.Time
}

type memWaiter struct {
	ch chan Fill
}

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		buckets: make(map[string]*memBucket),
		tags:    make(map[string]*memTag),
		locks:   make(map[memKey]*memLock),
		waiters: make(map[memKey]map[*memWaiter]struct{}),
	}
}

// expired reports whether an expiry time has passed; zero never expires.
func expired(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

// grow returns the later of the current expiry and now+ttl. A zero current
// expiry (none) gets one; a ttl of zero or less leaves it unchanged.
func grow(expires, now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return expires
	}
	if e := now.Add(ttl); expires.IsZero() || e.After(expires) {
		return e
	}
	return expires
}

// bucket returns the live bucket, dropping it if it has expired. The caller
// holds m.mu.
func (m *MemoryStore) bucket(name string, now time.Time) *memBucket {
	b, ok := m.buckets[name]
	if !ok {
		return nil
	}
	if expired(b.expires, now) {
		delete(m.buckets, name)
		return nil
	}
	return b
}

// tag returns the live tag set, dropping it if it has expired. The caller
// holds m.mu.
func (m *MemoryStore) tag(name string, now time.Time) *memTag {
	t, ok := m.tags[name]
	if !ok {
		return nil
	}
	if expired(t.expires, now) {
		delete(m.tags, name)
		return nil
	}
	return t
}

// lock returns the live lock, dropping it if it has expired. The caller
// holds m.mu.
func (m *MemoryStore) lock(k memKey, now time.Time) *memLock {
	l, ok := m.locks[k]
	if !ok {
		return nil
	}
	if expired(l.expires, now) {
		delete(m.locks, k)
		return nil
	}
	return l
}

// noteWrite sweeps expired items once the number of writes since the last
// sweep reaches the number of items, which keeps the sweep's cost amortised
// constant per write while bounding the memory held by items nobody reads.
// The caller holds m.mu.
func (m *MemoryStore) noteWrite(now time.Time) {
	m.writes++
	if m.writes < 64 || m.writes < len(m.buckets)+len(m.tags)+len(m.locks) {
		return
	}
	m.writes = 0
	for name, b := range m.buckets {
		if expired(b.expires, now) {
			delete(m.buckets, name)
		}
	}
	for name, t := range m.tags {
		if expired(t.expires, now) {
			delete(m.tags, name)
		}
	}
	for k, l := range m.locks {
		if expired(l.expires, now) {
			delete(m.locks, k)
		}
	}
}

// Get returns a copy of the value of field in bucket, or an error matching
// [ErrNotFound] when the bucket or the field does not exist.
func (m *MemoryStore) Get(_ context.Context, bucket, field string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bucket(bucket, time.Now())
	if b == nil {
		return nil, ErrNotFound
	}
	v, ok := b.fields[field]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// Set stores a copy of value as field of bucket. It grows the bucket's
// lifetime to at least opt.TTL (never shortens it), evicts other fields when
// the bucket holds more than opt.MaxFields, and records the bucket under each
// of opt.Tags.
func (m *MemoryStore) Set(_ context.Context, bucket, field string, value []byte, opt SetOptions) error {
	if strings.ContainsAny(bucket, "{}") {
		return fmt.Errorf("storage: bucket %q contains a brace", bucket)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.noteWrite(now)
	b := m.bucket(bucket, now)
	if b == nil {
		b = &memBucket{fields: make(map[string][]byte)}
		m.buckets[bucket] = b
	}
	b.fields[field] = append([]byte(nil), value...)
	b.expires = grow(b.expires, now, opt.TTL)
	if opt.MaxFields > 0 {
		// Map iteration order is unspecified, which makes this an
		// arbitrary choice of victims, like the Redis store's random one.
		for f := range b.fields {
			if len(b.fields) <= opt.MaxFields {
				break
			}
			if f != field {
				delete(b.fields, f)
			}
		}
	}
	for _, name := range opt.Tags {
		t := m.tag(name, now)
		if t == nil {
			t = &memTag{buckets: make(map[string]struct{})}
			m.tags[name] = t
		}
		t.buckets[bucket] = struct{}{}
		t.expires = grow(t.expires, now, opt.TTL)
	}
	return nil
}

// Delete removes field from bucket. Deleting a missing field is not an
// error.
func (m *MemoryStore) Delete(_ context.Context, bucket, field string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bucket(bucket, time.Now())
	if b == nil {
		return nil
	}
	delete(b.fields, field)
	if len(b.fields) == 0 {
		delete(m.buckets, bucket)
	}
	return nil
}

// TryLock takes the fill lock of field in bucket for ttl, without waiting.
// It returns an error matching [ErrLockHeld] when another caller, in this
// process or through another instance sharing the store, holds it.
func (m *MemoryStore) TryLock(_ context.Context, bucket, field string, ttl time.Duration) (Lock, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("storage: lock ttl %v is not positive", ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.noteWrite(now)
	k := memKey{bucket, field}
	if m.lock(k, now) != nil {
		return nil, ErrLockHeld
	}
	l := &memLock{expires: now.Add(ttl)}
	m.locks[k] = l
	return &memoryLock{store: m, key: k, lock: l, ttl: ttl}, nil
}

// memoryLock is a held lock of a MemoryStore. Ownership is the identity of
// the *memLock in the store's map: once it expired, was flushed or was
// replaced by another holder's, the lock is lost.
type memoryLock struct {
	store *MemoryStore
	key   memKey
	lock  *memLock
	ttl   time.Duration
}

func (l *memoryLock) Extend(context.Context) error {
	m := l.store
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.lock(l.key, now) != l.lock {
		return ErrLockLost
	}
	l.lock.expires = now.Add(l.ttl)
	return nil
}

func (l *memoryLock) Unlock(context.Context) error {
	m := l.store
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock(l.key, time.Now()) != l.lock {
		return ErrLockLost
	}
	delete(m.locks, l.key)
	return nil
}

// Watch registers interest in the next fill notification of field in
// bucket. The returned channel receives exactly one [Fill] and is never
// closed; the returned func unregisters the watcher and may be called any
// number of times. A [MemoryStore.Publish] that happens after Watch returns
// is delivered.
func (m *MemoryStore) Watch(bucket, field string) (<-chan Fill, func()) {
	w := &memWaiter{ch: make(chan Fill, 1)}
	k := memKey{bucket, field}
	m.mu.Lock()
	set := m.waiters[k]
	if set == nil {
		set = make(map[*memWaiter]struct{})
		m.waiters[k] = set
	}
	set[w] = struct{}{}
	m.mu.Unlock()
	return w.ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if set := m.waiters[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(m.waiters, k)
			}
		}
	}
}

// Publish delivers f to every current watcher of field in bucket, including
// those registered through other middleware instances sharing this store.
func (m *MemoryStore) Publish(_ context.Context, bucket, field string, f Fill) error {
	k := memKey{bucket, field}
	m.mu.Lock()
	defer m.mu.Unlock()
	for w := range m.waiters[k] {
		// Each waiter is removed on delivery, so its one-slot buffer is
		// always free here.
		w.ch <- f
	}
	delete(m.waiters, k)
	return nil
}

// Close does nothing and returns nil: a MemoryStore holds no connections or
// goroutines. It exists so a MemoryStore can stand in for the Redis store.
func (m *MemoryStore) Close() error { return nil }

// Flush drops every entry, tag and lock, like FLUSHALL on Redis. Locks held
// at that moment are lost: their Extend and Unlock return [ErrLockLost].
// Watchers stay registered. Tests use it to simulate a flushed or restarted
// Redis.
func (m *MemoryStore) Flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.buckets)
	clear(m.tags)
	clear(m.locks)
	m.writes = 0
}

// PurgeBucket removes bucket with all its fields. It returns 1 when the
// bucket existed and 0 otherwise.
func (m *MemoryStore) PurgeBucket(_ context.Context, bucket string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bucket(bucket, time.Now()) == nil {
		return 0, nil
	}
	delete(m.buckets, bucket)
	return 1, nil
}

// PurgePrefix removes every bucket whose name starts with bucketPrefix, for
// example every bucket of one route, and returns how many it removed.
func (m *MemoryStore) PurgePrefix(_ context.Context, bucketPrefix string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var n int64
	for name, b := range m.buckets {
		if !strings.HasPrefix(name, bucketPrefix) {
			continue
		}
		delete(m.buckets, name)
		if !expired(b.expires, now) {
			n++
		}
	}
	return n, nil
}

// PurgeTag removes every bucket recorded under tag, then the tag itself,
// and returns how many buckets it removed.
func (m *MemoryStore) PurgeTag(_ context.Context, tag string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	t := m.tag(tag, now)
	if t == nil {
		return 0, nil
	}
	var n int64
	for name := range t.buckets {
		if m.bucket(name, now) != nil {
			delete(m.buckets, name)
			n++
		}
	}
	delete(m.tags, tag)
	return n, nil
}

// PurgeAll removes every bucket, tag and lock, and returns how many of them
// it removed (the number of keys a Redis store would remove). Locks held at
// that moment are lost. Watchers stay registered.
func (m *MemoryStore) PurgeAll(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var n int64
	for _, b := range m.buckets {
		if !expired(b.expires, now) {
			n++
		}
	}
	for _, t := range m.tags {
		if !expired(t.expires, now) {
			n++
		}
	}
	for _, l := range m.locks {
		if !expired(l.expires, now) {
			n++
		}
	}
	clear(m.buckets)
	clear(m.tags)
	clear(m.locks)
	m.writes = 0
	return n, nil
}
