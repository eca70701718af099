// Package httpcache is readthrough's HTTP read-through caching middleware.
//
// A [Cache] wraps the handlers of chosen routes. Each route declares a
// [policy.Policy]; responses are stored as compact entries in buckets of a
// [Store] (a Redis hash per bucket with the storage/redisstore package),
// served from there while fresh, refreshed in the background before they
// expire, and served stale when the origin fails. Concurrent misses for one
// key are collapsed into one origin call, inside the process and, with a
// [Locker], across every instance of the service.
//
// The cache never makes the service less available: any store error means
// "go to the origin", reported through [WithOnError] and the logger.
//
// Responses carry a Cache-Status header (RFC 9211) saying what the cache
// did, for example:
//
//	Cache-Status: readthrough; hit; ttl=42
//	Cache-Status: readthrough; fwd=uri-miss; stored
//	Cache-Status: readthrough; fwd=uri-miss; collapsed
//	Cache-Status: readthrough; hit; ttl=-3; detail=stale-while-revalidate
//	Cache-Status: readthrough; fwd=stale; fwd-status=503; ttl=-3; detail=stale-if-error
//	Cache-Status: readthrough; fwd=bypass; detail=authorization
package httpcache
