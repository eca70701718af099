package httpcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// Cache is the read-through caching middleware. Create it with [New],
// wrap routes with [Cache.Route], [Cache.MustRoute] or [Cache.Handler],
// and stop it with [Cache.Close]. It is safe for concurrent use.
type Cache struct {
	store   storage.Store
	locker  storage.Locker
	log     *slog.Logger
	onError func(context.Context, error)
	tracer  Tracer // nil: no tracing (see trace.go)
	file    *policy.File
	name    string

	refreshWorkers  int
	storeTimeout    time.Duration
	breakerFailures int
	breakerCooldown time.Duration
	breakerOff      bool
	decodedBytes    int
	decodedOff      bool
	healthOff       bool
	localOn         bool
	localUntracked  bool
	localBytes      int64
	localBound      time.Duration

	breaker  *breaker
	deadline coarseDeadline
	decoded  *codec.DecodedCache
	flights  flights
	refresh  *refresher
	logLimit logLimiter
	// history is the admin API's recent window (history.go).
	history history
	health  *healthRun // the start-up health check; nil when none runs
	local   *localTier // nil without WithLocalTier (local.go)

	// dictCheckInterval is how often dictionary routes check the store's
	// current dictionary; 0 is the codec's default. Tests shorten it.
	dictCheckInterval time.Duration

	mu     sync.Mutex
	routes map[string]*route
	// writes holds the counters of the write routes, by pattern.
	writes      map[string]*counters
	writeRoutes []*writeRoute
}

// New returns a Cache over store. It returns an error for a nil store or an
// invalid option.
func New(store storage.Store, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, errors.New("httpcache: nil store")
	}
	c := &Cache{store: store, routes: map[string]*route{}, writes: map[string]*counters{}}
	for _, o := range opts {
		o.apply(c)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("httpcache: "+format, args...)) }
	if c.refreshWorkers < 0 {
		bad("WithRefreshWorkers: %d workers", c.refreshWorkers)
	}
	if c.storeTimeout < 0 {
		bad("WithStoreTimeout: negative timeout %v", c.storeTimeout)
	}
	if c.decodedBytes < 0 {
		bad("WithDecodedCache: negative size %d", c.decodedBytes)
	}
	if c.breakerFailures < 0 || c.breakerCooldown < 0 {
		bad("WithBreaker: negative failures %d or cooldown %v", c.breakerFailures, c.breakerCooldown)
	}
	if c.localBytes < 0 || c.localBound < 0 {
		bad("WithLocalTier or WithLocalBound: negative size %d or bound %v", c.localBytes, c.localBound)
	}
	if c.name != "" && !validToken(c.name) {
		bad("WithName: cache name %q is not an HTTP token", c.name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.locker == nil {
		c.locker, _ = store.(storage.Locker)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.name = orDefault(c.name, DefaultName)
	c.refreshWorkers = orDefault(c.refreshWorkers, DefaultRefreshWorkers)
	c.storeTimeout = orDefault(c.storeTimeout, DefaultStoreTimeout)
	c.breakerFailures = orDefault(c.breakerFailures, DefaultBreakerFailures)
	c.breakerCooldown = orDefault(c.breakerCooldown, DefaultBreakerCooldown)
	if c.breakerOff {
		c.breakerFailures = 0
	}
	if !c.decodedOff {
		c.decoded = codec.NewDecodedCache(orDefault(c.decodedBytes, DefaultDecodedBytes))
	}
	if err := c.setupLocal(); err != nil {
		return nil, err
	}
	c.breaker = newBreaker(c.breakerFailures, c.breakerCooldown)
	c.deadline.timeout = c.storeTimeout
	c.refresh = newRefresher(c.refreshWorkers, c.recoverTask)
	c.startHealthCheck()
	return c, nil
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Route compiles the policy p for the route declared with pattern (a
// ServeMux or chi pattern: the whole pattern the request is routed by, see
// the README's "Router nesting") and returns the middleware that caches
// it. Overrides from the policy file, if any, are applied first. An
// invalid policy is an error naming the route and the field, so a service
// fails at start-up rather than caching wrongly.
func (c *Cache) Route(pattern string, p policy.Policy) (func(http.Handler) http.Handler, error) {
	p, _, err := c.file.Apply(pattern, p)
	if err != nil {
		return nil, err
	}
	kr, err := keying.Compile(pattern, p)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.routes[pattern]; dup {
		return nil, fmt.Errorf("httpcache: route %q declared twice", pattern)
	}
	rt := &route{cache: c, key: kr, policy: p.WithDefaults()}
	if p.Local {
		if c.local == nil {
			return nil, &policy.FieldError{Route: pattern, Field: "Local",
				Reason: "the cache has no local tier: create it with httpcache.WithLocalTier"}
		}
		rt.local = c.local
	}
	if rt.codec, err = c.newCodec(rt); err != nil {
		return nil, err
	}
	c.routes[pattern] = rt
	return func(next http.Handler) http.Handler {
		return &handler{route: rt, next: next}
	}, nil
}

// newCodec returns the codec of rt's policy.Compression.
func (c *Cache) newCodec(rt *route) (codec.Codec, error) {
	switch rt.policy.Compression {
	case policy.CompressNone:
		return codec.Identity(), nil
	case policy.CompressDictionary:
		ds, ok := c.store.(storage.DictionaryStore)
		if !ok {
			return nil, &policy.FieldError{Route: rt.key.Pattern(), Field: "Compression",
				Reason: fmt.Sprintf("the store (%T) does not keep dictionaries: it does not implement storage.DictionaryStore", c.store)}
		}
		return codec.NewDictionary(ds, rt.key.BucketPrefix(),
			codec.WithMaxBody(rt.policy.MaxBodyBytes),
			codec.WithDecodedCache(c.decoded),
			codec.WithCheckInterval(c.dictCheckInterval),
			codec.WithStoreTimeout(c.storeTimeout),
			codec.WithLogger(c.log),
			codec.WithRouteName(rt.key.Pattern()),
			codec.WithEvents(codec.Events{
				Trained: func() { rt.stats.add(cDictsTrained, 1) },
				Loaded:  func(n int) { rt.stats.add(cDictsLoaded, int64(n)) },
				Error:   rt.reportError,
			}))
	}
	return codec.Gzip(), nil
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
// route matches (a typo there would otherwise silently leave a route on
// its Go defaults), and the purges of write routes ([Cache.Writes]) that
// name no declared cached route or cannot work on it. Call it once every
// route is declared.
func (c *Cache) VerifyRoutes() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, pattern := range c.file.Patterns() {
		if _, ok := c.routes[pattern]; !ok {
			errs = append(errs, fmt.Errorf("policy: route %q in the policy file matches no declared route", pattern))
		}
	}
	errs = append(errs, c.verifyWrites()...)
	return errors.Join(errs...)
}

// Close stops background work from starting (refreshes, and the training
// and checks of compression dictionaries), cancels the start-up health
// check (without waiting for it: it only reads, and a Redis command it
// sent ends by its own one-second bound), and waits for the other work in
// flight until ctx ends, like [http.Server.Shutdown]. It is idempotent;
// the middleware keeps serving after it, without refresh-ahead, and
// dictionary routes keep the dictionary they have.
func (c *Cache) Close(ctx context.Context) error {
	c.history.close() // the recent window's sampling, if an admin handler started it
	if c.local != nil {
		c.local.close()
	}
	err := c.refresh.close(ctx)
	c.stopHealthCheck()
	for _, rt := range c.routeList() {
		if cerr := rt.codec.Close(ctx); err == nil {
			err = cerr
		}
	}
	return err
}

// routeList returns the declared routes.
func (c *Cache) routeList() []*route {
	c.mu.Lock()
	defer c.mu.Unlock()
	routes := make([]*route, 0, len(c.routes))
	for _, rt := range c.routes {
		routes = append(routes, rt)
	}
	return routes
}

// recoverTask, deferred at the top of a goroutine the cache starts, turns
// a panic there into a log line and a reported error instead of a crash.
func (c *Cache) recoverTask(what string) {
	v := recover()
	if v == nil {
		return
	}
	c.log.Error("readthrough: "+what+" panicked", "panic", v, "stack", stack())
	if c.onError != nil {
		c.onError(context.Background(), fmt.Errorf("httpcache: %s panicked: %v", what, v))
	}
}

// route is one declared route: its compiled key, effective policy, codec
// and counters.
type route struct {
	cache  *Cache
	key    *keying.Route
	policy policy.Policy
	codec  codec.Codec
	stats  counters
	local  *localTier // the cache's local tier for a Local route, or nil
	// localPurged is the local tier's seq at the last purge of the route
	// made through this cache: copies read before are not served.
	localPurged atomic.Uint64

	// bucketFullLogged is set once a full bucket of the route was logged.
	bucketFullLogged atomic.Bool
	// lastDrain is when a full bucket of the route was last sampled for
	// dead variants, in Unix nanoseconds (see drain).
	lastDrain atomic.Int64
}

// reportError counts an error the route absorbed by going to the origin,
// logs it at most once per second per kind (an outage must not flood the
// logs) and passes it to the OnError hook.
func (rt *route) reportError(ctx context.Context, msg string, err error) {
	rt.stats.add(cStoreErrors, 1)
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
