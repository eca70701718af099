// Package memstore is the in-process store of readthrough: a mutex around
// maps that implements every interface of the storage contract
// ([storage.Store], [storage.Locker], [storage.Fencer], [storage.Purger],
// [storage.Sampler], [storage.DictionaryStore], [storage.HealthChecker]
// and [storage.Tracker]) and passes the same conformance suite as the
// Redis store (package storage/storetest).
//
// Unit tests and single-process services use it to run the cache without
// Redis. Several caches sharing one [Store] behave like several processes
// sharing one Redis: they share entries, fill locks, fill notifications,
// purges and compression dictionaries, and each cache that calls
// [Store.Track] is told of every change to a bucket, whichever cache made
// it, so that it can keep copies of entries in its own memory. The store
// notices that a bucket expired lazily, when a call touches it or a sweep
// drops it, as Redis does.
//
// Time is read with [time.Now], so inside a [testing/synctest] bubble the
// store follows the bubble's fake clock: lifetimes, lock expiry and purge
// tombstones can be tested without waiting. [Store.Flush] drops
// everything, as FLUSHALL would drop a Redis, to test what a cache does
// when its locks and entries vanish.
package memstore
