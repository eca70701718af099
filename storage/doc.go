// Package storage is the contract between a cache and its stores: the
// [Entry] a cache keeps, the options of a write ([SetOptions]), the errors
// callers match, and the one set of interfaces every store implements,
// each documented once, here.
//
// # The contract
//
// [Store] (Get, Set, Delete) is what every store implements and the only
// interface a cache requires. The others are optional capabilities, which
// a cache finds with a type assertion on the store it was given and does
// without when the store lacks them:
//
//   - [Locker] (TryLock, Watch, Publish) collapses concurrent misses across
//     processes: one fills, the others wait for its notification.
//   - [Purger] (PurgeBucket, PurgePrefix, PurgeTag, PurgeAll) invalidates
//     in bulk.
//   - [Fencer] (GetForFill) fences fills against purges, with the purge
//     generation a fenced Set compares ([SetOptions.Fenced]). A store that
//     implements Fencer must also implement Purger, and a Purger should
//     implement Fencer: without fences, a fill that raced a purge may
//     store a response older than the purge.
//   - [DictionaryStore] (Dictionaries, AddDictionary, CurrentDictionary)
//     shares compression dictionaries between instances.
//   - [Sampler] (SampleFields) shows a few fields of a bucket at random,
//     so that a cache can drain dead variants from a full bucket.
//   - [HealthChecker] (CheckHealth) checks how the backend is set up for a
//     cache and says what to change, in a [HealthReport] of [Finding]s.
//   - [Tracker] (Track) reports changes to buckets, by anyone, so that a
//     cache can keep copies of entries in process memory coherent.
//
// The method docs of each interface are the contract: what a store must
// do, what it may leave open, and which error says what. A store's own
// docs say only what the contract leaves open (commands, round trips,
// keys, limits). Every implementation asserts at compile time the
// interfaces it implements, for example
//
//	var _ storage.Locker = (*redisstore.Store)(nil)
//
// and passes the conformance suite of package storage/storetest, which
// checks these interfaces, the optional ones on stores that implement
// them.
//
// # Implementations
//
// Package storage/memstore is the in-process store, for tests and single
// processes; package storage/redisstore is the Redis store (a single
// Redis, Sentinel or Redis Cluster through go-redis). Both implement every
// interface. They live in packages of their own so that code that only
// needs the contract builds without go-redis. Their options follow one
// rule: an option is a WithXxx func; its zero value means the default, a
// negative value makes the constructor return an error naming the option,
// and a feature that can be switched off has a WithoutXxx option of its
// own.
//
// # Entries
//
// An [Entry] is one cached response. A store keeps it as bytes: package
// [github.com/readthrough/readthrough/envelope] turns an Entry into the
// versioned envelope stored as the value of one field of a bucket and
// back (envelope/ENVELOPE.md specifies it byte for byte, so that services
// in other languages can read the same entries), and package
// [github.com/readthrough/readthrough/codec] compresses and decodes its
// body. A store never looks inside a value.
//
// # Errors
//
// Callers match errors with [errors.Is]: [ErrNotFound], [ErrLockHeld],
// [ErrLockLost], [ErrPurged], [ErrRefused], [ErrBucketFull] and
// [ErrWatchUnconfirmed]. A cache treats any other error of a store as a
// miss.
package storage
