package memstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// The interfaces of the storage contract that a Store implements.
var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Locker          = (*Store)(nil)
	_ storage.Fencer          = (*Store)(nil)
	_ storage.Purger          = (*Store)(nil)
	_ storage.Sampler         = (*Store)(nil)
	_ storage.DictionaryStore = (*Store)(nil)
)

// Store is an in-process store. It implements [storage.Store],
// [storage.Locker], [storage.Fencer], [storage.Purger], [storage.Sampler],
// [storage.DictionaryStore], [storage.HealthChecker] and
// [storage.Tracker]; the method docs say only what those leave open. It is
// safe for concurrent use, and every cache given the same Store sees the
// same entries, locks, notifications and dictionaries, and is told of the
// changes the others make ([Store.Track]).
//
// Purges leave tombstones that fence fills in flight, as the Redis
// store's do: every bucket carries a purge generation, which
// [Store.GetForFill] returns and a fenced [Store.Set] compares. A purge
// replaces the bucket with an empty one whose generation is one higher,
// in decimal, and which lives for the fence TTL ([WithFenceTTL]).
//
// The zero value is not usable; call [New].
type Store struct {
	mu       sync.Mutex
	fenceTTL time.Duration
	buckets  map[string]*memBucket
	tags     map[string]*memTag
	locks    map[key]*memLock
	waiters  map[key]map[*waiter]struct{}
	// dicts holds the compression dictionaries of each route; they do
	// not expire.
	dicts map[string]*routeDicts
	// writes counts writes since the last sweep of expired items.
	writes int
	// trackers are the registrations of Track; every change to a bucket
	// is queued for each of them before s.mu is released.
	trackers map[*tracker]struct{}
}

// key names one field of one bucket.
type key struct{ bucket, field string }

// memBucket is one bucket. A bucket with a generation but no fields is a
// purge tombstone.
type memBucket struct {
	fields  map[string][]byte
	gen     uint64    // purge generation; 0: never purged
	expires time.Time // zero: no expiry
}

// generation is the bucket's purge generation as GetForFill reports it:
// "" for a bucket that was never purged, else the decimal number, as in the
// Redis store. b may be nil.
func (b *memBucket) generation() string {
	if b == nil || b.gen == 0 {
		return ""
	}
	return strconv.FormatUint(b.gen, 10)
}

// field returns the value of f in a bucket that may be nil.
func (b *memBucket) field(f string) ([]byte, bool) {
	if b == nil {
		return nil, false
	}
	v, ok := b.fields[f]
	return v, ok
}

// memTag is the buckets recorded under one tag.
type memTag struct {
	buckets map[string]struct{}
	expires time.Time // zero: no expiry
}

// memLock is a fill lock in the store's map; its identity is the lock's
// ownership.
type memLock struct {
	expires time.Time
}

type waiter struct {
	ch chan storage.Fill
}

// Option configures a [Store] in [New].
type Option interface {
	apply(*options)
}

type options struct {
	fenceTTL time.Duration
}

type fenceTTLOption time.Duration

func (d fenceTTLOption) apply(o *options) { o.fenceTTL = time.Duration(d) }

// WithFenceTTL sets how long the store's purge tombstones live: a fill
// that read a bucket's generation before a purge is refused by its fenced
// Set only while the tombstone (or a bucket refilled after it) lives, so d
// must exceed the longest fill. Default [storage.DefaultFenceTTL]; zero
// means the default; negative is an error.
func WithFenceTTL(d time.Duration) Option { return fenceTTLOption(d) }

// New returns an empty store. It returns an error for an invalid option.
func New(opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	switch {
	case o.fenceTTL < 0:
		return nil, fmt.Errorf("memstore: WithFenceTTL(%v) is negative", o.fenceTTL)
	case o.fenceTTL == 0:
		o.fenceTTL = storage.DefaultFenceTTL
	}
	return &Store{
		fenceTTL: o.fenceTTL,
		buckets:  make(map[string]*memBucket),
		tags:     make(map[string]*memTag),
		locks:    make(map[key]*memLock),
		waiters:  make(map[key]map[*waiter]struct{}),
		dicts:    make(map[string]*routeDicts),
		trackers: make(map[*tracker]struct{}),
	}, nil
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

func (t *memTag) expiry() time.Time  { return t.expires }
func (l *memLock) expiry() time.Time { return l.expires }

// bucket returns the live bucket, or nil. A bucket found expired is
// dropped and reported to the trackers. The caller holds s.mu.
func (s *Store) bucket(name string, now time.Time) *memBucket {
	b, ok := s.buckets[name]
	if ok && expired(b.expires, now) {
		delete(s.buckets, name)
		s.changed(name)
		return nil
	}
	return b
}

// tag returns the live tag set, or nil. The caller holds s.mu.
func (s *Store) tag(name string, now time.Time) *memTag {
	t, _ := live(s.tags, name, now)
	return t
}

// lock returns the live lock, or nil. The caller holds s.mu.
func (s *Store) lock(k key, now time.Time) *memLock {
	l, _ := live(s.locks, k, now)
	return l
}

// noteWrite sweeps expired items once the number of writes since the last
// sweep reaches the number of items, which keeps the sweep's cost amortised
// constant per write while bounding the memory held by items nobody reads.
// The caller holds s.mu.
func (s *Store) noteWrite(now time.Time) {
	s.writes++
	if s.writes < 64 || s.writes < len(s.buckets)+len(s.tags)+len(s.locks) {
		return
	}
	s.writes = 0
	for name, b := range s.buckets {
		if expired(b.expires, now) {
			delete(s.buckets, name)
			s.changed(name)
		}
	}
	for name, t := range s.tags {
		if expired(t.expires, now) {
			delete(s.tags, name)
		}
	}
	for k, l := range s.locks {
		if expired(l.expires, now) {
			delete(s.locks, k)
		}
	}
}

// Get implements [storage.Store.Get]. The value is a copy.
func (s *Store) Get(_ context.Context, bucket, field string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.bucket(bucket, time.Now()).field(field)
	if !ok {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// GetForFill implements [storage.Fencer.GetForFill]. The generation is ""
// or the bucket's purge count in decimal.
func (s *Store) GetForFill(_ context.Context, bucket, field string) ([]byte, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(bucket, time.Now())
	v, ok := b.field(field)
	if !ok {
		return nil, b.generation(), storage.ErrNotFound
	}
	return append([]byte(nil), v...), b.generation(), nil
}

// Set implements [storage.Store.Set]. It stores everything (value,
// lifetime and tags) at once, so an error means nothing was stored, and it
// never returns [storage.ErrRefused]. Generations live outside the field
// maps, but [storage.GenerationField] is refused as in every store.
func (s *Store) Set(_ context.Context, bucket, field string, value []byte, opt storage.SetOptions) error {
	if err := checkBrace("bucket", bucket); err != nil {
		return err
	}
	if field == storage.GenerationField {
		return fmt.Errorf("memstore: field %q is reserved", field)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	b := s.bucket(bucket, now)
	if opt.Fenced && b.generation() != opt.Generation {
		return storage.ErrPurged
	}
	if opt.MaxFields > 0 && b != nil && len(b.fields) >= opt.MaxFields {
		if _, ok := b.fields[field]; !ok {
			return storage.ErrBucketFull
		}
	}
	s.noteWrite(now)
	if b == nil {
		b = &memBucket{fields: make(map[string][]byte)}
		s.buckets[bucket] = b
	}
	b.fields[field] = append([]byte(nil), value...)
	b.expires = grow(b.expires, now, opt.TTL)
	for _, name := range opt.Tags {
		t := s.tag(name, now)
		if t == nil {
			t = &memTag{buckets: make(map[string]struct{})}
			s.tags[name] = t
		}
		t.buckets[bucket] = struct{}{}
		t.expires = grow(t.expires, now, opt.TTL)
	}
	s.changed(bucket)
	return nil
}

// Delete implements [storage.Store.Delete]. A bucket left with no fields
// is dropped unless it holds a purge generation, which stays until the
// bucket expires, as the Redis hash keeps its generation field.
func (s *Store) Delete(_ context.Context, bucket, field string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(bucket, time.Now())
	if _, ok := b.field(field); !ok {
		return nil
	}
	delete(b.fields, field)
	if len(b.fields) == 0 && b.gen == 0 {
		delete(s.buckets, bucket)
	}
	s.changed(bucket)
	return nil
}

// SampleFields returns up to n fields of bucket with copies of their
// values, in the map's random order; never [storage.GenerationField].
func (s *Store) SampleFields(_ context.Context, bucket string, n int) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, min(max(n, 0), 64))
	b := s.bucket(bucket, time.Now())
	if b == nil {
		return out, nil
	}
	for f, v := range b.fields {
		if len(out) >= n {
			break
		}
		out[f] = append([]byte(nil), v...)
	}
	return out, nil
}

// Close does nothing and returns nil: a Store holds no connections, and
// its only goroutines are those of [Store.Track], which their stop funcs
// end. It exists so that a Store can stand in for the Redis store where
// the code closes its store.
func (s *Store) Close() error { return nil }

// Flush drops every entry, tag, lock and compression dictionary, like
// FLUSHALL on Redis. Locks held at that moment are lost: their Extend and
// Unlock return [storage.ErrLockLost]. Watchers stay registered, as a
// Redis subscription survives FLUSHALL, and so do trackers, whose next
// report has All set. Tests use it to simulate a flushed or restarted
// Redis.
func (s *Store) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.buckets)
	clear(s.tags)
	clear(s.locks)
	clear(s.dicts)
	s.writes = 0
	s.flushed()
}
