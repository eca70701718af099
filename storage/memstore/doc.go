// Package memstore is the in-process store of readthrough: a mutex around
// maps that implements every interface of the storage contract
// ([storage.Store], [storage.Locker], [storage.Fencer], [storage.Purger],
// [storage.Sampler], [storage.DictionaryStore] and
// [storage.HealthChecker]) and passes the same conformance suite as
// the Redis store (package storage/storetest).
//
// Unit tests and single-process services use it to run the cache without
// Redis. Several caches sharing one [Store] behave like several processes
// sharing one Redis: they share entries, fill locks, fill notifications,
// purges and compression dictionaries.
//
// Time is read with [time.Now], so inside a [testing/synctest] bubble the
// store follows the bubble's fake clock: lifetimes, lock expiry and purge
// tombstones can be tested without waiting. [Store.Flush] drops
// everything, as FLUSHALL would drop a Redis, to test what a cache does
// when its locks and entries vanish.
package memstore
