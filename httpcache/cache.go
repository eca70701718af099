package httpcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// Store is where entries live: one bucket per group of responses that are
// invalidated together, one field per variant. Values are encoded entries
// (see [storage.Encode]). [storage.MemoryStore] and the storage/redisstore
// package implement it.
type Store interface {
	// Get returns the value of field in bucket, or an error matching
	// [storage.ErrNotFound]. It is the only store call on a fresh hit.
	Get(ctx context.Context, bucket, field string) ([]byte, error)
	// Set stores value as field of bucket and keeps the bucket alive at
	// least opt.TTL.
	Set(ctx context.Context, bucket, field string, value []byte, opt storage.SetOptions) error
	// Delete removes field from bucket.
	Delete(ctx context.Context, bucket, field string) error
}

// Locker collapses concurrent misses across processes: the caller that
// takes a key's lock fills it and publishes a notification that wakes the
// callers waiting for it. The Redis store implements it with redsync and
// one pub/sub subscription per process.
type Locker interface {
	// TryLock takes the fill lock of a key without waiting, or returns an
	// error matching [storage.ErrLockHeld].
	TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (storage.Lock, error)
	// Watch registers interest in the next fill notification of a key.
	// The channel receives at most one value; the func unregisters.
	Watch(bucket, field string) (<-chan storage.Fill, func())
	// Publish announces that a fill of a key finished.
	Publish(ctx context.Context, bucket, field string, f storage.Fill) error
}

// Option configures a [Cache] in [New].
type Option interface{ apply(*Cache) }

type optionFunc func(*Cache)

func (f optionFunc) apply(c *Cache) { f(c) }

// WithLocker sets the cross-process lock and fill notifications used to
// collapse misses. Default: the store itself when it implements [Locker],
// otherwise misses are collapsed only inside the process.
func WithLocker(l Locker) Option {
	return optionFunc(func(c *Cache) { c.locker = l; c.lockerSet = true })
}

// WithLogger sets the logger for lost locks, store errors and failed
// refreshes. Default: [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *Cache) { c.log = l })
}

// WithOnError sets a hook called, outside any lock, with every store,
// codec and lock error the cache absorbed by going to the origin. Use it
// for metrics or alerts. Default: none.
func WithOnError(f func(ctx context.Context, err error)) Option {
	return optionFunc(func(c *Cache) { c.onError = f })
}

// WithPolicyFile applies per-route overrides from a policy file to every
// route declared afterwards; see [policy.File]. Call [Cache.VerifyRoutes]
// once all routes are declared to reject patterns that match none.
// Default: none.
func WithPolicyFile(f *policy.File) Option {
	return optionFunc(func(c *Cache) { c.file = f })
}

// WithRefreshWorkers bounds the number of background refreshes running at
// once in this process; refreshes beyond it are dropped and counted.
// Default 16.
func WithRefreshWorkers(n int) Option {
	return optionFunc(func(c *Cache) { c.refreshWorkers = n })
}

// WithStoreTimeout bounds every store call made while serving a request
// (reads, writes, locks, notifications); past it the request goes on as if
// the store had failed. Default 100ms.
func WithStoreTimeout(d time.Duration) Option {
	return optionFunc(func(c *Cache) { c.storeTimeout = d })
}

// WithDecodedCache bounds the memory, in bytes, of the bodies the cache
// keeps decoded for hits whose stored form the client cannot take: entries
// stored with [policy.CompressDictionary], and gzipped entries sent to
// clients that do not accept gzip. A hot entry is then decoded once rather
// than on every hit. It holds no entry of its own: every hit still reads
// the store and matches the stored bytes in full, so purges and refills
// are seen as without it. 0 turns it off. Default 16 MiB.
func WithDecodedCache(maxBytes int) Option {
	return optionFunc(func(c *Cache) { c.decodedBytes = maxBytes })
}

// WithBreaker sets the circuit breaker around the store: after failures
// consecutive store errors or timeouts, requests skip the store for
// cooldown (going straight to the origin, at no timeout cost), then one
// request probes it. failures 0 disables the breaker. Default 5 and 1s.
func WithBreaker(failures int, cooldown time.Duration) Option {
	return optionFunc(func(c *Cache) { c.breakerFailures, c.breakerCooldown = failures, cooldown })
}

// WithName sets the cache name that starts every Cache-Status header.
// Default "readthrough".
func WithName(name string) Option {
	return optionFunc(func(c *Cache) { c.name = name })
}

// Cache is the read-through caching middleware. Create it with [New],
// wrap routes with [Cache.Route], [Cache.MustRoute] or [Cache.Handler],
// and stop it with [Cache.Close]. It is safe for concurrent use.
type Cache struct {
	store          Store
	locker         Locker
	lockerSet      bool
	log            *slog.Logger
	onError        func(context.Context, error)
	file           *policy.File
	name           string
	refreshWorkers int

	storeTimeout    time.Duration
	breakerFailures int
	breakerCooldown time.Duration
	breaker         *breaker
	deadline        coarseDeadline

	flights flights
	refresh *refresher

	mu     sync.Mutex
	routes map[string]*route

	logLimit logLimiter

	dictCheckInterval time.Duration
	decodedBytes      int
	decoded           *decodedCache

	bgMu   sync.Mutex
	closed bool           // no background work starts once set
	bg     sync.WaitGroup // background work Close waits for
}

// New returns a Cache over store. It returns an error for a nil store or an
// invalid option.
func New(store Store, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, errors.New("httpcache: nil store")
	}
	c := &Cache{
		store:           store,
		log:             slog.Default(),
		name:            "readthrough",
		refreshWorkers:  16,
		routes:          map[string]*route{},
		storeTimeout:    100 * time.Millisecond,
		breakerFailures: 5,
		breakerCooldown: time.Second,

		dictCheckInterval: defaultDictCheckInterval,
		decodedBytes:      defaultDecodedCacheBytes,
	}
	for _, o := range opts {
		o.apply(c)
	}
	if !c.lockerSet {
		if l, ok := store.(Locker); ok {
			c.locker = l
		}
	}
	if c.log == nil {
		return nil, errors.New("httpcache: nil logger")
	}
	if c.refreshWorkers < 1 {
		return nil, fmt.Errorf("httpcache: refresh workers must be at least 1, got %d", c.refreshWorkers)
	}
	if !validToken(c.name) {
		return nil, fmt.Errorf("httpcache: cache name %q is not an HTTP token", c.name)
	}
	if c.storeTimeout <= 0 {
		return nil, fmt.Errorf("httpcache: store timeout must be positive, got %v", c.storeTimeout)
	}
	if c.breakerFailures < 0 || (c.breakerFailures > 0 && c.breakerCooldown <= 0) {
		return nil, fmt.Errorf("httpcache: breaker needs failures >= 0 and a positive cooldown, got %d and %v", c.breakerFailures, c.breakerCooldown)
	}
	if c.decodedBytes < 0 {
		return nil, fmt.Errorf("httpcache: decoded cache size must not be negative, got %d", c.decodedBytes)
	}
	c.decoded = newDecodedCache(c.decodedBytes)
	c.breaker = newBreaker(c.breakerFailures, c.breakerCooldown)
	c.deadline.timeout = c.storeTimeout
	c.refresh = newRefresher(c.refreshWorkers, c.recoverTask)
	return c, nil
}

// Route compiles the policy p for the route declared with pattern (a
// ServeMux or chi pattern, exactly as registered) and returns the
// middleware that caches it. Overrides from the policy file, if any, are
// applied first. An invalid policy is an error naming the route and the
// field, so a service fails at start-up rather than caching wrongly.
func (c *Cache) Route(pattern string, p policy.Policy) (func(http.Handler) http.Handler, error) {
	p, _, err := c.file.Apply(pattern, p)
	if err != nil {
		return nil, err
	}
	rt, err := keying.Compile(pattern, p)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.routes[pattern]; dup {
		return nil, fmt.Errorf("httpcache: route %q declared twice", pattern)
	}
	r := &route{cache: c, key: rt, policy: p.WithDefaults()}
	if r.policy.Compression == policy.CompressDictionary {
		ds, ok := c.store.(DictionaryStore)
		if !ok {
			return nil, &policy.FieldError{Route: pattern, Field: "Compression",
				Reason: fmt.Sprintf("the store (%T) does not keep dictionaries: it does not implement httpcache.DictionaryStore", c.store)}
		}
		r.dicts = newDictionaries(r, ds)
	}
	c.routes[pattern] = r
	return func(next http.Handler) http.Handler {
		return &handler{route: r, next: next}
	}, nil
}

// MustRoute is like [Cache.Route] but panics on an invalid policy, for
// route tables declared at start-up (like [regexp.MustCompile]).
func (c *Cache) MustRoute(pattern string, p policy.Policy) func(http.Handler) http.Handler {
	mw, err := c.Route(pattern, p)
	if err != nil {
		panic(err)
	}
	return mw
}

// Handler returns next wrapped in the cache for the route declared with
// pattern; it panics on an invalid policy like [http.ServeMux.Handle] does
// on an invalid pattern.
func (c *Cache) Handler(pattern string, p policy.Policy, next http.Handler) http.Handler {
	return c.MustRoute(pattern, p)(next)
}

// VerifyRoutes reports the patterns of the policy file that no declared
// route matches: a typo there would otherwise silently leave a route on its
// Go defaults. Call it once every route is declared.
func (c *Cache) VerifyRoutes() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, pattern := range c.file.Patterns() {
		if _, ok := c.routes[pattern]; !ok {
			errs = append(errs, fmt.Errorf("policy: route %q in the policy file matches no declared route", pattern))
		}
	}
	return errors.Join(errs...)
}

// Close stops background work from starting (refreshes, and the training
// and checks of compression dictionaries) and waits for the work in
// flight until ctx ends, like [http.Server.Shutdown]. It is idempotent;
// the middleware keeps serving after it, without refresh-ahead, and
// dictionary routes keep the dictionary they have.
func (c *Cache) Close(ctx context.Context) error {
	c.bgMu.Lock()
	c.closed = true
	c.bgMu.Unlock()
	err := c.refresh.close(ctx)
	done := make(chan struct{})
	go func() {
		c.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// background runs f in a goroutine that Close waits for, and reports
// whether it did: once the cache is closed it does not. A panic in f is
// recovered (see recoverTask).
func (c *Cache) background(f func()) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed {
		return false
	}
	c.bg.Go(func() {
		defer c.recoverTask("background task")
		f()
	})
	return true
}

// recoverTask, deferred at the top of a goroutine the cache starts, turns
// a panic there into a log line and a reported error instead of a crash.
// Such goroutines run compression libraries on bytes read from the store
// (dictionaries, entries); the service must outlive a fault in them.
func (c *Cache) recoverTask(what string) {
	v := recover()
	if v == nil {
		return
	}
	c.log.Error("readthrough: "+what+" panicked", "panic", v, "stack", string(debug.Stack()))
	if c.onError != nil {
		c.onError(context.Background(), fmt.Errorf("httpcache: %s panicked: %v", what, v))
	}
}

// route is one declared route: its compiled key and effective policy.
type route struct {
	cache  *Cache
	key    *keying.Route
	policy policy.Policy
	stats  counters
	dicts  *dictionaries // with policy.CompressDictionary only

	// bucketFullLogged is set once a full bucket of the route was logged.
	bucketFullLogged atomic.Bool
}

// compress compresses a new entry's body into the form it is served in to
// the fill's waiters: gzip routes gzip it (gzip clients take it as it is);
// dictionary routes keep it as it is, since no client could take it
// compressed with the dictionary, and compress only what they store (see
// storedForm).
func (rt *route) compress(e *storage.Entry) {
	if rt.policy.Compression == policy.CompressGzip {
		storage.Compress(e)
	}
}

// storedForm returns the entry e as it is stored: e itself, or on
// dictionary routes a copy compressed with the route's dictionary.
func (rt *route) storedForm(ctx context.Context, e *storage.Entry) *storage.Entry {
	if rt.dicts == nil {
		return e
	}
	c := *e
	rt.dicts.compress(ctx, &c)
	return &c
}

// reportError counts an error the route absorbed by going to the origin,
// logs it at most once per second per kind (an outage must not flood the
// logs) and passes it to the OnError hook.
func (rt *route) reportError(ctx context.Context, msg string, err error) {
	rt.stats.storeErrors.Add(1)
	c := rt.cache
	if suppressed, ok := c.logLimit.allow(msg, time.Now()); ok {
		c.log.LogAttrs(ctx, slog.LevelWarn, "readthrough: "+msg, slog.String("route", rt.key.Pattern()),
			slog.Any("err", err), slog.Int64("suppressed", suppressed))
	}
	if c.onError != nil {
		c.onError(ctx, fmt.Errorf("httpcache: %s: %w", msg, err))
	}
}

// logLimiter lets one log line per kind through per second and counts the
// ones it held back.
type logLimiter struct {
	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	last       time.Time
	suppressed int64
}

func (l *logLimiter) allow(kind string, now time.Time) (suppressed int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = map[string]*logKind{}
	}
	k := l.kinds[kind]
	if k == nil {
		k = &logKind{}
		l.kinds[kind] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < time.Second {
		k.suppressed++
		return 0, false
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	return suppressed, true
}

// storeCtx bounds one store call by the store timeout.
func (c *Cache) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.storeTimeout)
}

// storeHealthy reports whether the last store calls succeeded. Once a call
// failed, the rest of a request skips the store (lock, fence, write) rather
// than pay its timeout again and again.
func (c *Cache) storeHealthy() bool {
	return c.breaker.threshold <= 0 || c.breaker.healthy.Load()
}

// observe feeds a store call's outcome to the breaker and logs transitions.
func (c *Cache) observe(err error) {
	if err == nil && c.breaker.healthy.Load() {
		return // the hit path: no clock read, no lock
	}
	opened, closed := c.breaker.record(err, time.Now())
	switch {
	case opened:
		c.log.Warn("readthrough: store circuit open: requests go to the origin without the cache", "err", err, "cooldown", c.breakerCooldown)
	case closed:
		c.log.Info("readthrough: store circuit closed: the cache is back")
	}
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch >= 0x7f || ch == ';' || ch == ',' || ch == '=' || ch == '"' {
			return false
		}
	}
	return true
}
