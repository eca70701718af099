package httpcache

import (
	"context"
	"log/slog"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// Option configures a [Cache] in [New]. Every option follows one rule:
// the zero value of its argument means the default, a negative number is
// an error from New naming the option, and a feature that can be switched
// off has an option of its own that does it (WithoutXxx).
type Option interface{ apply(*Cache) }

type optionFunc func(*Cache)

func (f optionFunc) apply(c *Cache) { f(c) }

// Defaults of the options of [New].
const (
	DefaultStoreTimeout    = 100 * time.Millisecond
	DefaultRefreshWorkers  = 16
	DefaultDecodedBytes    = 16 << 20
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = time.Second
	DefaultName            = "readthrough"
)

// WithLocker sets the cross-process lock and fill notifications used to
// collapse misses. Default (and nil): the store itself when it implements
// [storage.Locker], otherwise misses are collapsed only inside the
// process.
func WithLocker(l storage.Locker) Option {
	return optionFunc(func(c *Cache) { c.locker = l })
}

// WithLogger sets the logger for lost locks, store errors and failed
// refreshes. Default (and nil): [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *Cache) { c.log = l })
}

// WithOnError sets a hook called, outside any lock, with every store,
// codec and lock error the cache absorbed by going to the origin. Use it
// for metrics or alerts. Default (and nil): none.
func WithOnError(f func(ctx context.Context, err error)) Option {
	return optionFunc(func(c *Cache) { c.onError = f })
}

// WithPolicyFile applies per-route overrides from a policy file to every
// route declared afterwards; see [policy.File]. Call [Cache.VerifyRoutes]
// once all routes are declared to reject patterns that match none.
// Default (and nil): none.
func WithPolicyFile(f *policy.File) Option {
	return optionFunc(func(c *Cache) { c.file = f })
}

// WithRefreshWorkers bounds the number of background refreshes running at
// once in this process; refreshes beyond it are dropped and counted.
// Default [DefaultRefreshWorkers].
func WithRefreshWorkers(n int) Option {
	return optionFunc(func(c *Cache) { c.refreshWorkers = n })
}

// WithStoreTimeout bounds every store call made while serving a request
// (reads, writes, locks, notifications); past it the request goes on as if
// the store had failed. Default [DefaultStoreTimeout].
func WithStoreTimeout(d time.Duration) Option {
	return optionFunc(func(c *Cache) { c.storeTimeout = d })
}

// WithDecodedCache bounds the memory, in bytes, of the bodies the cache
// keeps decoded for hits whose stored form the client cannot take: entries
// stored with [policy.CompressDictionary], and gzipped entries sent to
// clients that do not accept gzip. A hot entry is then decoded once rather
// than on every hit. It holds no entry of its own: every hit still reads
// the store and matches the stored bytes in full, so purges and refills
// are seen as without it. Default [DefaultDecodedBytes];
// [WithoutDecodedCache] turns it off.
func WithDecodedCache(maxBytes int) Option {
	return optionFunc(func(c *Cache) { c.decodedBytes = maxBytes })
}

// WithoutDecodedCache turns the cache of decoded bodies off: every hit
// that must decode its body decodes it.
func WithoutDecodedCache() Option {
	return optionFunc(func(c *Cache) { c.decodedOff = true })
}

// WithBreaker sets the circuit breaker around the store: after failures
// consecutive store errors or timeouts, requests skip the store for
// cooldown (going straight to the origin, at no timeout cost), then one
// request probes it. Default [DefaultBreakerFailures] and
// [DefaultBreakerCooldown]; [WithoutBreaker] turns it off.
func WithBreaker(failures int, cooldown time.Duration) Option {
	return optionFunc(func(c *Cache) { c.breakerFailures, c.breakerCooldown = failures, cooldown })
}

// WithoutBreaker turns the circuit breaker off: every request tries the
// store, and pays its timeout while it fails.
func WithoutBreaker() Option {
	return optionFunc(func(c *Cache) { c.breakerOff = true })
}

// WithName sets the cache name that starts every Cache-Status header; it
// must be an HTTP token. Default [DefaultName].
func WithName(name string) Option {
	return optionFunc(func(c *Cache) { c.name = name })
}

// WithoutStartupHealthCheck keeps [New] from checking the store's health.
// By default, when the store implements [storage.HealthChecker], New
// runs [Cache.CheckHealth] once in the background, bounded by
// [DefaultHealthCheckTimeout], and logs the findings through the cache's
// logger: a summary line, then one line per finding, warnings and errors
// at their level and the others at Info. [Cache.Close] stops it.
func WithoutStartupHealthCheck() Option {
	return optionFunc(func(c *Cache) { c.healthOff = true })
}

// WithLocalTier keeps copies of the entries of routes whose policy sets
// [policy.Policy].Local in process memory, up to maxBytes of heap (as the
// cache estimates it; the least valuable copies are evicted first), so
// that their hits send no store command. A copy is made when a request
// reads the entry from the store, and served like the stored entry (Age,
// ETag and 304, HEAD, stale windows and refresh-ahead alike), with
// "detail=local" in its Cache-Status.
//
// The store must report its changes ([storage.Tracker]: the Redis store
// does, with CLIENT TRACKING): a copy is dropped as soon as its bucket
// changes in the store, on any instance, by a fill, a refresh, a purge,
// a flush, an expiry or an eviction, and no copy is served while the
// store has not proved within [WithLocalBound] that it reported every
// change. Over a store that cannot report its changes, New returns an
// error, unless [WithUntrackedLocalTier] accepts copies bounded in time
// only. Default size [DefaultLocalBytes]; without this option there is
// no local tier.
func WithLocalTier(maxBytes int64) Option {
	return optionFunc(func(c *Cache) { c.localOn, c.localBytes = true, maxBytes })
}

// WithLocalBound sets how long the local tier may serve copies without
// hearing from the store: with a tracking store, how old the store's
// latest proof that it reported every change may be (it is asked for one
// every quarter of the bound), which bounds how long a copy can outlive a
// change whose report was lost (a dropped connection, a restarted or
// partitioned Redis); without tracking, how long after its store read a
// copy is served. Default [DefaultLocalBound], one second: short enough
// that a lost report is a blip, long enough that four proofs a second per
// Redis node cost nothing noticeable.
func WithLocalBound(d time.Duration) Option {
	return optionFunc(func(c *Cache) { c.localBound = d })
}

// WithUntrackedLocalTier accepts a local tier whose store cannot report
// its changes (miniredis, memcached-like stores, a Redis that refuses
// CLIENT TRACKING): each copy is then served up to [WithLocalBound] after
// it was read, whatever changed in the store meanwhile, other than
// purges made through this cache. Over a store that tracks, the option
// changes nothing.
func WithUntrackedLocalTier() Option {
	return optionFunc(func(c *Cache) { c.localUntracked = true })
}
