package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GenerationField is the reserved field under which the Redis store keeps a
// bucket's purge generation inside the bucket's hash. Fields written by the
// middleware are 16-byte digests and never equal it; stores refuse to Set
// it and report it as missing on Get. The [MemoryStore] keeps generations
// outside its field maps but reserves the same name, so both stores accept
// the same fields.
const GenerationField = "\x00g"

// DefaultFenceTTL is the default lifetime of a purge tombstone: how long
// after a purge a fill that started before it can still be refused (see
// [SetOptions].Fenced). It must exceed the longest fill (origin time plus
// the time to store the response).
const DefaultFenceTTL = 2 * time.Minute

// MemoryStore is an in-process store: a mutex around maps. It implements the
// same methods as the Redis store (values, bucket expiry, field bounds, tags,
// locks, fill notifications, purges and compression dictionaries), so unit
// tests and single-process services can run the middleware without Redis.
// Several middleware instances sharing one MemoryStore behave like several
// processes sharing one Redis.
//
// Purges leave tombstones that fence fills in flight, as the Redis store's
// do: every bucket carries a purge generation, which
// [MemoryStore.GetForFill] returns and a fenced [MemoryStore.Set] compares.
// A purge replaces the bucket with an empty one whose generation is one
// higher and which lives for the fence TTL ([WithFenceTTL]).
//
// Time is read with [time.Now], so inside a [testing/synctest] bubble the
// store follows the bubble's fake clock. The zero value is not usable; call
// [NewMemoryStore].
type MemoryStore struct {
	mu       sync.Mutex
	fenceTTL time.Duration
	buckets  map[string]*memBucket
	tags     map[string]*memTag
	locks    map[memKey]*memLock
	waiters  map[memKey]map[*memWaiter]struct{}
	// dicts holds the compression dictionaries of each route; they do
	// not expire.
	dicts map[string]*memDicts
	// writes counts writes since the last sweep of expired items.
	writes int
}

// memKey names one field of one bucket.
type memKey struct{ bucket, field string }

// memBucket is one bucket. A bucket with a generation but no fields is a
// purge tombstone.
type memBucket struct {
	fields  map[string][]byte
	gen     uint64    // purge generation; 0: never purged
	expires time.Time // zero: no expiry
}

// generation is the bucket's purge generation as GetForFill reports it:
// "" for a bucket that was never purged, else the decimal number, as in the
// Redis store.
func (b *memBucket) generation() string {
	if b == nil || b.gen == 0 {
		return ""
	}
	return strconv.FormatUint(b.gen, 10)
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

// MemoryOption configures a [MemoryStore] in [NewMemoryStore].
type MemoryOption interface {
	apply(*MemoryStore)
}

type fenceTTLOption time.Duration

func (d fenceTTLOption) apply(m *MemoryStore) {
	if d > 0 {
		m.fenceTTL = time.Duration(d)
	}
}

// WithFenceTTL sets how long a [MemoryStore]'s purge tombstones live: a
// fill that read a bucket's generation before a purge is refused by its
// fenced Set only while the tombstone (or a bucket refilled after it)
// lives, so d must exceed the longest fill. The default is
// [DefaultFenceTTL]; zero or less keeps it.
func WithFenceTTL(d time.Duration) MemoryOption { return fenceTTLOption(d) }

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	m := &MemoryStore{
		fenceTTL: DefaultFenceTTL,
		buckets:  make(map[string]*memBucket),
		tags:     make(map[string]*memTag),
		locks:    make(map[memKey]*memLock),
		waiters:  make(map[memKey]map[*memWaiter]struct{}),
		dicts:    make(map[string]*memDicts),
	}
	for _, o := range opts {
		o.apply(m)
	}
	return m
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

// live returns the item of m under k unless it has expired, dropping it
// from m if it has. The caller holds the store's mutex.
func live[K comparable, V interface{ expiry() time.Time }](m map[K]V, k K, now time.Time) (V, bool) {
	v, ok := m[k]
	if ok && expired(v.expiry(), now) {
		delete(m, k)
		var zero V
		return zero, false
	}
	return v, ok
}

func (b *memBucket) expiry() time.Time { return b.expires }
func (t *memTag) expiry() time.Time    { return t.expires }
func (l *memLock) expiry() time.Time   { return l.expires }

// bucket returns the live bucket, or nil. The caller holds m.mu.
func (m *MemoryStore) bucket(name string, now time.Time) *memBucket {
	b, _ := live(m.buckets, name, now)
	return b
}

// tag returns the live tag set, or nil. The caller holds m.mu.
func (m *MemoryStore) tag(name string, now time.Time) *memTag {
	t, _ := live(m.tags, name, now)
	return t
}

// lock returns the live lock, or nil. The caller holds m.mu.
func (m *MemoryStore) lock(k memKey, now time.Time) *memLock {
	l, _ := live(m.locks, k, now)
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
// [ErrNotFound] when the bucket or the field does not exist. A purge
// tombstone holds no fields, and [GenerationField] is never found.
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

// GetForFill is Get for the miss path: it also returns the bucket's purge
// generation, "" when the bucket was never purged (or its tombstone
// expired), which the fill passes to its fenced [MemoryStore.Set]. When the
// field does not exist the value is nil, the error matches [ErrNotFound]
// and the generation is still returned.
func (m *MemoryStore) GetForFill(_ context.Context, bucket, field string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bucket(bucket, time.Now())
	v, ok := b.field(field)
	if !ok {
		return nil, b.generation(), ErrNotFound
	}
	return append([]byte(nil), v...), b.generation(), nil
}

// field returns the value of field in a bucket that may be nil.
func (b *memBucket) field(f string) ([]byte, bool) {
	if b == nil {
		return nil, false
	}
	v, ok := b.fields[f]
	return v, ok
}

// Set stores a copy of value as field of bucket. It grows the bucket's
// lifetime to at least opt.TTL (never shortens it) and records the bucket
// under each of opt.Tags. With opt.Fenced it first compares the bucket's
// purge generation with opt.Generation and, when they differ, stores
// nothing and returns an error matching [ErrPurged]. Then, when
// opt.MaxFields is positive, the bucket already holds that many fields or
// more (the purge generation is not a field and does not count) and field
// is not one of them, it stores nothing (no value, lifetime or tags) and
// returns an error matching [ErrBucketFull]; overwriting a field the
// bucket holds is always allowed, and no field is ever evicted. Setting
// [GenerationField] is an error.
func (m *MemoryStore) Set(_ context.Context, bucket, field string, value []byte, opt SetOptions) error {
	if strings.ContainsAny(bucket, "{}") {
		return fmt.Errorf("storage: bucket %q contains a brace", bucket)
	}
	if field == GenerationField {
		return fmt.Errorf("storage: field %q is reserved", field)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	b := m.bucket(bucket, now)
	if opt.Fenced && b.generation() != opt.Generation {
		return ErrPurged
	}
	if opt.MaxFields > 0 && b != nil && len(b.fields) >= opt.MaxFields {
		if _, ok := b.fields[field]; !ok {
			return ErrBucketFull
		}
	}
	m.noteWrite(now)
	if b == nil {
		b = &memBucket{fields: make(map[string][]byte)}
		m.buckets[bucket] = b
	}
	b.fields[field] = append([]byte(nil), value...)
	b.expires = grow(b.expires, now, opt.TTL)
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
// error. The bucket's purge generation stays until the bucket expires.
func (m *MemoryStore) Delete(_ context.Context, bucket, field string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bucket(bucket, time.Now())
	if b == nil {
		return nil
	}
	delete(b.fields, field)
	if len(b.fields) == 0 && b.gen == 0 {
		// A purged bucket keeps its generation until it expires, as
		// the Redis hash keeps its generation field.
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

// Flush drops every entry, tag, lock and compression dictionary, like
// FLUSHALL on Redis. Locks held at that moment are lost: their Extend and
// Unlock return [ErrLockLost]. Watchers stay registered. Tests use it to
// simulate a flushed or restarted Redis.
func (m *MemoryStore) Flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.buckets)
	clear(m.tags)
	clear(m.locks)
	clear(m.dicts)
	m.writes = 0
}

// tombstone replaces bucket, live or not, with a purge tombstone: no
// fields, the generation one higher than the live bucket's (or 1), and a
// lifetime of the fence TTL. It reports whether the bucket held at least
// one field. The caller holds m.mu.
func (m *MemoryStore) tombstone(bucket string, now time.Time) bool {
	var (
		gen  uint64
		full bool
	)
	if b := m.bucket(bucket, now); b != nil {
		gen, full = b.gen, len(b.fields) > 0
	}
	m.buckets[bucket] = &memBucket{
		fields:  make(map[string][]byte),
		gen:     gen + 1,
		expires: now.Add(m.fenceTTL),
	}
	return full
}

// PurgeBucket removes every field of bucket and leaves a tombstone in its
// place (even when the bucket did not exist), so that a fill that read the
// bucket's generation before the purge cannot store its response after it.
// It returns 1 when the bucket held at least one field and 0 otherwise (a
// missing bucket, or a tombstone of an earlier purge).
func (m *MemoryStore) PurgeBucket(_ context.Context, bucket string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tombstone(bucket, time.Now()) {
		return 1, nil
	}
	return 0, nil
}

// PurgePrefix replaces every bucket whose name starts with bucketPrefix,
// for example every bucket of one route, with a tombstone, as does
// [MemoryStore.PurgeBucket], and returns how many of them held at least
// one field. Buckets that do not exist but have a fill lock held (a first
// fill in flight) get a tombstone too, so that fill is fenced as well.
func (m *MemoryStore) PurgePrefix(_ context.Context, bucketPrefix string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	purge := make(map[string]struct{})
	for name := range m.buckets {
		if strings.HasPrefix(name, bucketPrefix) && m.bucket(name, now) != nil {
			purge[name] = struct{}{}
		}
	}
	for k := range m.locks {
		if strings.HasPrefix(k.bucket, bucketPrefix) && m.lock(k, now) != nil {
			purge[k.bucket] = struct{}{}
		}
	}
	var n int64
	for name := range purge {
		if m.tombstone(name, now) {
			n++
		}
	}
	return n, nil
}

// PurgeTag replaces every bucket recorded under tag with a tombstone, as
// does [MemoryStore.PurgeBucket], then removes the tag, and returns how
// many of the buckets held at least one field.
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
		if m.tombstone(name, now) {
			n++
		}
	}
	delete(m.tags, tag)
	return n, nil
}

// PurgeAll replaces every bucket with a tombstone, as does
// [MemoryStore.PurgeBucket] (including the buckets of held fill locks),
// and removes every tag and lock. It returns the number of buckets that
// held at least one field plus the number of tags and locks it removed:
// what the Redis store counts. Locks held at that moment are lost.
// Watchers stay registered. Compression dictionaries are kept: they are
// not cached responses, and instances that hold one in memory keep
// writing entries with it, which other instances could not read once it
// was gone.
func (m *MemoryStore) PurgeAll(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	purge := make(map[string]struct{}, len(m.buckets))
	for name := range m.buckets {
		if m.bucket(name, now) != nil {
			purge[name] = struct{}{}
		}
	}
	var n int64
	for _, t := range m.tags {
		if !expired(t.expires, now) {
			n++
		}
	}
	for k, l := range m.locks {
		if !expired(l.expires, now) {
			n++
			purge[k.bucket] = struct{}{}
		}
	}
	for name := range purge {
		if m.tombstone(name, now) {
			n++
		}
	}
	clear(m.tags)
	clear(m.locks)
	return n, nil
}
