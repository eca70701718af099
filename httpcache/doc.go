// Package httpcache is readthrough's HTTP read-through caching middleware.
//
// A [Cache] wraps the handlers of chosen routes. Each route declares a
// [policy.Policy] with the whole pattern it is routed by; responses are
// stored as compact entries in buckets of a [storage.Store] (a Redis hash
// per bucket with package storage/redisstore, or package storage/memstore
// in one process), served from there while fresh, refreshed in the
// background before they expire, and served stale when the origin fails.
// Concurrent misses for one key are collapsed into one origin call, inside
// the process and, with a [storage.Locker], across every instance of the
// service. Operators purge and inspect entries from code or through
// [Cache.AdminHandler], and read the counters of [Cache.Stats].
//
// The cache never makes the service less available: any store error means
// "go to the origin", reported through [WithOnError] and the logger, and a
// circuit breaker skips a failing store. A response one client gets is the
// one the origin would give it: the key holds everything the handler sees
// that is declared to matter (see the README's security model), requests
// the cache cannot key bypass it, and entries read from the store are held
// to the rules entries are stored by.
//
// A route's policy decides how long its responses are kept, unless the
// route is in standards mode (policy.Policy.Standards), where it is an
// RFC 9111 shared cache in front of its handler, as a proxy cache is: the
// response's headers decide, responses that vary on request headers the
// route does not key on are stored per variant, and single ranges are
// answered from stored responses (the README's "Standards mode").
//
// Responses carry a Cache-Status header (RFC 9211) saying what the cache
// did, for example:
//
//	Cache-Status: readthrough; hit; ttl=42
//	Cache-Status: readthrough; fwd=uri-miss; fwd-status=200; stored
//	Cache-Status: readthrough; fwd=uri-miss; collapsed
//	Cache-Status: readthrough; hit; ttl=-3; detail=stale-while-revalidate
//	Cache-Status: readthrough; fwd=stale; fwd-status=503; ttl=-3; detail=stale-if-error
//	Cache-Status: readthrough; fwd=bypass; detail=authorization
//	Cache-Status: readthrough; fwd=miss; detail=only-if-cached
//
// The source is arranged by the path of a request: hit.go, entry.go and
// serve.go for a hit, miss.go and origin.go for a miss; architecture.md at
// the root of the repository draws the whole house.
package httpcache
