// Package storetest is a conformance suite for readthrough stores: every
// store the middleware can use (the in-process [storage.MemoryStore], the
// Redis store on a single node, on Redis Cluster or on miniredis) must pass
// [Run], so the middleware behaves the same on all of them.
//
// Besides the [Store] methods, [Run] checks purges on stores that implement
// [Purger], and purge fences (GetForFill, fenced writes, tombstones and
// their expiry) on stores that implement both [Purger] and [Fencer], and
// shared compression dictionaries on stores that implement [Dictionaries]
// (that purges keep them, on those that also implement [Purger]).
//
// The suite runs in real time with short lifetimes (tens of milliseconds),
// because it must also run against a real Redis server, whose clock a test
// cannot control.
package storetest
