package storage

import (
	"context"
	"time"
)

// Store is the interface every store implements: the values of the fields
// of buckets. A bucket groups the variants of responses that are stored,
// expire and are purged together (a Redis hash in package redisstore); a
// field names one variant inside it.
//
// Store is the only interface a cache requires. [Locker], [Fencer],
// [Purger] and [DictionaryStore] are optional capabilities: a cache finds
// them with a type assertion on the Store it was given, and does without
// what the store lacks (collapsing misses only inside the process,
// refusing purges, storing fills unfenced, refusing dictionary
// compression).
//
// A Store must be safe for concurrent use. Several Store values may share
// one backend, as several processes share one Redis or several caches
// share one memstore.Store: every promise below then holds across them,
// so that a value one of them sets is the value the others get.
//
// Names: a bucket never contains '{' or '}' (the Redis store keeps the
// braces for its Cluster hash tag), and Set and TryLock return an error
// for one that does. A field may be any bytes, including none and NUL,
// except [GenerationField], which is reserved.
//
// Errors: an error that is none of those named below (a backend down, a
// context that ended) is the backend's, and a cache treats it as a miss.
// A store wraps it with a prefix naming the store, and converts its
// backend's "no such key" (redis.Nil) into [ErrNotFound], so that no
// backend error type leaves the store.
//
// The conformance suite [github.com/readthrough/readthrough/storage/storetest]
// checks a store against this contract: a store runs it in its tests.
type Store interface {
	// Get returns the value of field in bucket, or an error matching
	// [ErrNotFound] when the bucket or the field does not exist, or the
	// bucket has expired. [GenerationField] is never found, and a purge
	// tombstone (see [Purger]) holds no fields. The returned bytes
	// belong to the caller: the store keeps no reference to them.
	//
	// Get is the only store call on a fresh hit, so it should cost one
	// round trip to the backend and nothing else.
	Get(ctx context.Context, bucket, field string) ([]byte, error)

	// Set stores a copy of value as field of bucket, replacing the value
	// the field had, with the settings of opt:
	//
	//   - The bucket lives at least opt.TTL from now. Set only ever
	//     grows a bucket's lifetime, never shortens it; a TTL of zero
	//     leaves it as it is (and a new bucket without one lives until
	//     it is deleted, purged or flushed).
	//   - The bucket is recorded under each of opt.Tags, for
	//     [Purger.PurgeTag], for at least opt.TTL.
	//   - With opt.Fenced, Set first compares the bucket's purge
	//     generation with opt.Generation (see [Fencer]) and, when they
	//     differ, stores nothing and returns an error matching
	//     [ErrPurged]. A cache sets Fenced only on a store that
	//     implements Fencer; others may ignore it.
	//   - Then, when opt.MaxFields is positive, the bucket already holds
	//     that many fields or more and field is not one of them, Set
	//     stores nothing (no value, no lifetime, no tags) and returns an
	//     error matching [ErrBucketFull]. Overwriting a field the bucket
	//     holds is always allowed, and Set never evicts a field.
	//
	// A bucket with a brace and the field [GenerationField] are errors.
	// When the backend answers but refuses the write (out of memory),
	// the error matches [ErrRefused]. After an error matching none of
	// ErrPurged, ErrBucketFull and ErrRefused the value may or may not
	// have been stored (the Redis store stores the value, then records
	// the tags in a second round trip).
	Set(ctx context.Context, bucket, field string, value []byte, opt SetOptions) error

	// Delete removes field from bucket. Deleting a field or a bucket that
	// does not exist is not an error. Deleting every field of a bucket
	// leaves its purge generation as it is, and deleting
	// [GenerationField] does nothing.
	Delete(ctx context.Context, bucket, field string) error
}

// Locker collapses concurrent misses of one key (bucket and field) across
// every instance that shares the backend: the caller that takes the key's
// fill lock runs the origin and then publishes a [Fill]; the others watch
// for that notification instead of calling the origin themselves.
//
// Locker is optional. A cache uses the store's when the store implements
// it (a cache may also be given a Locker of its own); without one, misses
// are collapsed only inside the process. A Locker must be safe for
// concurrent use, and its promises hold across every Locker that shares
// its backend.
type Locker interface {
	// TryLock takes the fill lock of field in bucket for ttl with one
	// attempt: it never waits for a held lock, and returns an error
	// matching [ErrLockHeld] when another caller, through this Locker or
	// any other sharing the backend, holds it. The lock expires ttl
	// after it was taken unless the holder extends it. A ttl that is not
	// positive (or below the store's resolution) and a bucket with a
	// brace are errors. Locks of other fields and buckets are
	// independent.
	//
	// A lock vanishes when it expires, when the backend is flushed or
	// restarted, and on [Purger.PurgeAll]; the holder learns it from the
	// [ErrLockLost] of Extend or Unlock, and a late Unlock never releases
	// a lock another caller took since.
	TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (Lock, error)

	// Watch registers interest in the next fill notification of field in
	// bucket. It returns a channel that receives exactly one [Fill], the
	// first one published for the key after the registration, and a func
	// that unregisters the watcher. The channel is never closed. The func
	// is never nil, may be called any number of times, and is to be
	// called once the caller stops waiting, whether or not a
	// notification arrived and whether or not Watch returned an error.
	//
	// A nil error is a promise: while the backend works, a Publish of
	// the key that starts after Watch returned, through any Locker
	// sharing the backend, is delivered on the channel. Watch may wait
	// to keep that promise (the Redis store waits for its subscription
	// to be confirmed), but never past ctx. When ctx ends first, or the
	// store knows it cannot keep the promise (its notifications are
	// down, or it is closed), Watch returns an error matching
	// [ErrWatchUnconfirmed], which also matches ctx.Err() when ctx ended.
	// The watcher is registered all the same: the channel may still
	// receive a notification if the store recovers, and a caller treats
	// it as a channel that may never fire, falling back on its own wait
	// bound. A store that registers without waiting may ignore ctx.
	//
	// Notifications that one Locker delivers arrive in the order the
	// backend received their Publish calls.
	Watch(ctx context.Context, bucket, field string) (<-chan Fill, func(), error)

	// Publish delivers f to every watcher of field in bucket, through
	// every Locker sharing the backend, and unregisters them: each
	// watcher receives one notification only. A watcher registered after
	// Publish started may or may not receive it. Delivery is best effort:
	// a notification lost while the backend's connection was down is
	// not retried, so waiters bound their wait.
	Publish(ctx context.Context, bucket, field string, f Fill) error
}

// Lock is a fill lock held by the caller of [Locker.TryLock].
type Lock interface {
	// Extend pushes the lock's expiry out by its TTL again, from now. It
	// returns an error matching ErrLockLost when the lock is no longer
	// held (expired, flushed, purged, unlocked, or taken by another
	// caller since), and the backend's error, matching neither, when it
	// could not tell.
	Extend(ctx context.Context) error
	// Unlock releases the lock. It returns an error matching ErrLockLost
	// when the lock had expired or vanished before the call (a second
	// Unlock included); it never releases a lock another caller holds.
	Unlock(ctx context.Context) error
}

// Fill is a fill notification: another caller finished filling a field.
type Fill struct {
	// Stored says whether the fill left an entry in the store. When false
	// the response was not cacheable or the fill failed, and waiters must
	// fetch their own.
	Stored bool
	// Failed says the filler gave up before it had a whole response
	// (origin panic, timeout): one of the waiters should take the lock and
	// fill instead.
	Failed bool
}

// Fencer reads a field together with its bucket's purge generation, so
// that a fill can store its response only if no purge of the bucket came
// between its read and its write: a response that may predate a purge
// never lands after it.
//
// Fencer is optional, and a store that implements it must also implement
// [Purger] and honour [SetOptions.Fenced] in [Store.Set]. A cache that
// finds it reads with GetForFill before running the origin and writes with
// SetOptions{Fenced: true, Generation: generation}.
//
// A bucket's generation is an opaque string, "" for a bucket that was
// never purged (or whose tombstone expired). Every purge of a bucket, by
// any [Purger] method, replaces the bucket with a tombstone: an empty
// bucket whose generation differs from every one the bucket had while it
// lived (the stores here count up in decimal), which lives for the
// store's fence TTL ([DefaultFenceTTL] unless configured). A fenced Set
// that expects the new generation stores into the tombstone, which then
// keeps the generation as long as the bucket lives; one that expects an
// older generation is refused with [ErrPurged]. The fence TTL must exceed
// the longest fill, or a fill slower than it may store a response older
// than the purge.
type Fencer interface {
	// GetForFill is [Store.Get] for the miss path: it also returns the
	// bucket's purge generation, in one round trip. When the field does
	// not exist the value is nil, the error matches [ErrNotFound], and the
	// generation is still returned.
	GetForFill(ctx context.Context, bucket, field string) (value []byte, generation string, err error)
}

// Sampler is implemented by stores that can show a few fields of a
// bucket at random. Dead variants are only removed from a bucket when a
// cache reads them, so junk variants nobody reads again would keep a
// bucket at its MaxFields bound, refusing new variants (see
// [ErrBucketFull]), for as long as its live variants keep it alive; a
// cache whose write a full bucket refused samples it and deletes what
// is dead, as Redis samples keys to expire them.
type Sampler interface {
	// SampleFields returns up to n distinct fields of bucket, chosen at
	// random, with copies of their values; never [GenerationField]. A
	// bucket that does not exist gives an empty map.
	SampleFields(ctx context.Context, bucket string, n int) (map[string][]byte, error)
}

// Purger invalidates in bulk: one bucket, every bucket of a route (by
// bucket name prefix), every bucket recorded under a tag, or everything
// the store holds for the cache. A cache that finds it offers purges;
// without one it refuses them.
//
// Purger is optional. A store that implements it should also implement
// [Fencer]: then every purge leaves tombstones that fence the fills in
// flight, as Fencer describes, and the counts below never count a
// tombstone that is purged again.
//
// Purges must never stop the backend from serving others for long: a
// purge of many buckets works in bounded batches (never KEYS or another
// unbounded command), and buckets written while it runs may survive it.
// On error, a purge returns how many buckets it counted so far.
//
// No purge removes compression dictionaries ([DictionaryStore]): they are
// not cached responses, and instances that hold one in memory keep writing
// entries with it, which other instances could not read once it was gone.
// Watchers ([Locker.Watch]) stay registered through every purge.
type Purger interface {
	// PurgeBucket removes every field of bucket. It returns 1 when the
	// bucket held at least one field and 0 otherwise. A store that is a
	// Fencer leaves its tombstone even when the bucket did not exist, so
	// that a first fill in flight is fenced too.
	PurgeBucket(ctx context.Context, bucket string) (int64, error)

	// PurgePrefix removes every bucket whose name starts with
	// bucketPrefix, for example every bucket of one route, and returns how
	// many of them held at least one field. The prefix is matched byte
	// for byte: no character of it is a pattern. A store that is a Fencer
	// also leaves a tombstone for each bucket under the prefix that does
	// not exist but whose fill lock is held (a first fill in flight); the
	// locks themselves stay.
	PurgePrefix(ctx context.Context, bucketPrefix string) (int64, error)

	// PurgeTag removes every bucket recorded under tag, then the tag, and
	// returns how many of the buckets held at least one field. A bucket
	// is recorded under a tag only once a Set stored it, so a first fill
	// in flight is not fenced by PurgeTag.
	PurgeTag(ctx context.Context, tag string) (int64, error)

	// PurgeAll removes every bucket, tag and fill lock the store holds
	// for the cache (everything under its key prefix, in the Redis
	// store), but no compression dictionary. Held locks are lost. A
	// store that is a Fencer leaves tombstones for the buckets, and for
	// those of the held locks. It returns the number of buckets that
	// held at least one field plus the number of tags and locks it
	// removed.
	PurgeAll(ctx context.Context) (int64, error)
}

// DictionaryStore keeps the compression dictionaries of routes whose
// policy asks for dictionary compression, so that every instance of a
// service can decode the entries the others compressed. A route is named
// by its bucket prefix (keying.Route.BucketPrefix) and keeps up to
// [MaxDictionaries] dictionaries, one of which is its current one, which
// every instance compresses new entries with. Ids are not zero (0 stands
// for "none").
//
// DictionaryStore is optional: declaring a route that asks for dictionary
// compression over a store without it is an error. Every method returns
// an error for a route with a brace, and AddDictionary for the id 0 and
// an empty dictionary: [CheckDictionary] is the check. A store may let
// the dictionaries of a route that nobody reads expire (the Redis store
// does after a month), and a flushed backend loses them: a cache checks
// the current id now and then and publishes its own again.
type DictionaryStore interface {
	// Dictionaries returns copies of every dictionary stored for route,
	// by id, and the id of the route's current one (0 when it has none,
	// or its dictionary is no longer stored). The map is never nil, even
	// for a route without dictionaries. A cache reads them to decode
	// entries compressed with any of them and to compress new entries
	// with the current one.
	Dictionaries(ctx context.Context, route string) (current uint32, dicts map[uint32][]byte, err error)

	// AddDictionary stores a copy of dict as dictionary id of route,
	// replacing the bytes of an id that exists, and makes it the route's
	// current one unless the route already has a current one whose
	// dictionary is stored. It returns the current id after the call.
	// When the route would then hold more than [MaxDictionaries], it
	// removes others, lowest ids first, but never the current one or id.
	// It is atomic against other instances adding theirs: the first
	// dictionary added to a route wins, and every instance learns which.
	AddDictionary(ctx context.Context, route string, id uint32, dict []byte) (current uint32, err error)

	// CurrentDictionary returns the id of route's current dictionary, or
	// 0 when it has none (or its dictionary is no longer stored): the
	// cheap check a cache makes to notice that another instance chose a
	// dictionary, before it reads them all with Dictionaries.
	CurrentDictionary(ctx context.Context, route string) (uint32, error)
}
