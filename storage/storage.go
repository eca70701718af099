package storage

import (
	"errors"
	"time"
)

// Errors returned by stores and locks. Callers match them with
// [errors.Is]; stores wrap them with a prefix of their own.
var (
	// ErrNotFound is returned by Get and GetForFill when the field does
	// not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrLockHeld is returned by TryLock when another caller holds the lock.
	ErrLockHeld = errors.New("storage: lock held by another caller")
	// ErrLockLost is returned by Extend and Unlock when the lock expired or
	// vanished (Redis flushed, evicted or restarted, or a PurgeAll) before
	// the call.
	ErrLockLost = errors.New("storage: lock lost")
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
	// ErrWatchUnconfirmed is returned by Watch when it cannot promise
	// that a notification published after it returns will be delivered:
	// its context ended first, or the store's notifications are down or
	// closed. The watcher is registered all the same (see
	// [Locker.Watch]).
	ErrWatchUnconfirmed = errors.New("storage: watch not confirmed")
)

// GenerationField is the reserved field under which the Redis store keeps a
// bucket's purge generation inside the bucket's hash (see [Fencer]).
// Fields written by a cache are 16-byte digests and never equal it; every
// store refuses to Set it, reports it missing on Get and ignores it on
// Delete, whether or not it keeps generations in the bucket, so that all
// stores accept the same fields.
const GenerationField = "\x00g"

// DefaultFenceTTL is the default lifetime of a purge tombstone: how long
// after a purge a fill that started before it can still be refused (see
// [Fencer] and [SetOptions.Fenced]). It must exceed the longest fill
// (origin time plus the time to store the response). Stores take another
// through an option of their own.
const DefaultFenceTTL = 2 * time.Minute

// SetOptions are the per-write settings of a stored field; [Store.Set]
// states what a store does with each.
type SetOptions struct {
	// TTL is the lifetime the bucket needs for this field; a store only
	// ever grows a bucket's lifetime, never shortens it, and zero leaves
	// it as it is.
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
