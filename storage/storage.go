package storage

import (
	"context"
	"errors"
	"time"
)

// Errors returned by stores and locks. Callers match them with [errors.Is].
var (
	// ErrNotFound is returned by Get when the field does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrLockHeld is returned by TryLock when another caller holds the lock.
	ErrLockHeld = errors.New("storage: lock held by another caller")
	// ErrLockLost is returned by Extend and Unlock when the lock expired or
	// vanished (Redis flushed, evicted or restarted) before the call.
	ErrLockLost = errors.New("storage: lock lost")
	// ErrCorrupt is returned by Decode for bytes that are not an entry.
	ErrCorrupt = errors.New("storage: corrupt entry")
	// ErrVersion is returned by Decode for an envelope version this code
	// does not know.
	ErrVersion = errors.New("storage: unknown entry version")
	// ErrPurged is returned by a fenced Set when the bucket was purged
	// after the fill read its generation: the response may predate the
	// purge, so it is not stored.
	ErrPurged = errors.New("storage: bucket purged during the fill")
	// ErrRefused is returned by Set when the server answered but refused
	// the write, e.g. Redis out of memory under the noeviction policy. The
	// store is reachable and reads still work, so it is no outage.
	ErrRefused = errors.New("storage: write refused by the server")
	// ErrBucketFull is returned by Set when the bucket already holds
	// SetOptions.MaxFields variants and the field is not one of them: the
	// new variant is not stored, so variants that clients use are never
	// pushed out by junk ones (a flood of crafted query strings). The
	// store is healthy; the request is served from the origin uncached.
	ErrBucketFull = errors.New("storage: bucket full")
)

// SetOptions are the per-write settings of a stored field.
type SetOptions struct {
	// TTL is the Redis lifetime the bucket needs for this field; a store
	// only ever grows a bucket's lifetime, never shortens it.
	TTL time.Duration
	// MaxFields bounds the number of fields (variants) in the bucket; 0
	// means no bound. [GenerationField] never counts. When the bucket
	// already holds MaxFields fields or more and field is not one of them,
	// Set stores nothing (no value, no lifetime, no tags) and returns an
	// error matching [ErrBucketFull]. Overwriting a field the bucket holds
	// is always allowed, and nothing is ever evicted: a bucket over a
	// lowered bound keeps its fields until they are deleted, purged or
	// expire with the bucket. The fence (Fenced) is checked first.
	MaxFields int
	// Tags are surrogate keys the bucket is recorded under.
	Tags []string
	// Fenced makes the write conditional on the bucket's purge generation
	// still being Generation (as returned by GetForFill before the origin
	// ran); otherwise Set writes nothing and returns ErrPurged. This keeps
	// a fill that raced a purge from storing content older than the purge.
	Fenced     bool
	Generation string
}

// Lock is a held fill lock.
type Lock interface {
	// Extend pushes the lock's expiry out by its TTL again. It returns an
	// error matching ErrLockLost when the lock is no longer held.
	Extend(ctx context.Context) error
	// Unlock releases the lock. It returns an error matching ErrLockLost
	// when the lock had expired or vanished before the call.
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

// Store, Locker, Fencer, Purger and DictionaryStore are the contract.
// (Temporary: the storage contract step declares them with their docs.)
type Store interface {
	Get(ctx context.Context, bucket, field string) ([]byte, error)
	Set(ctx context.Context, bucket, field string, value []byte, opt SetOptions) error
	Delete(ctx context.Context, bucket, field string) error
}

type Locker interface {
	TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (Lock, error)
	Watch(bucket, field string) (<-chan Fill, func())
	Publish(ctx context.Context, bucket, field string, f Fill) error
}

type Fencer interface {
	GetForFill(ctx context.Context, bucket, field string) ([]byte, string, error)
}

type Purger interface {
	PurgeBucket(ctx context.Context, bucket string) (int64, error)
	PurgePrefix(ctx context.Context, bucketPrefix string) (int64, error)
	PurgeTag(ctx context.Context, tag string) (int64, error)
	PurgeAll(ctx context.Context) (int64, error)
}

// DictionaryStore keeps the compression dictionaries of routes.
type DictionaryStore interface {
	Dictionaries(ctx context.Context, route string) (current uint32, dicts map[uint32][]byte, err error)
	AddDictionary(ctx context.Context, route string, id uint32, dict []byte) (current uint32, err error)
	CurrentDictionary(ctx context.Context, route string) (uint32, error)
}
