package httpcache

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// The hit path: a request the cache handles is keyed, its entry read with
// one store call (lookup) and, while fresh or stale within its windows,
// served (serve.go); a miss goes to fill (miss.go).

// handler serves one cached route.
type handler struct {
	route *route
	next  http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := h.route
	ctx, sp := rt.startSpan(r.Context(), OpLookup) // r.Context() and nil without a tracer
	if reason, ok := rt.bypassReason(r); ok {
		bypassed(sp, reason)
		if reason == bypassMethod && unsafe(r.Method) && rt.key.Routed(r) {
			// A write to a cached URL invalidates what it is cached
			// under (RFC 9111 section 4.4).
			serveInvalidating(w, func(w http.ResponseWriter) { rt.bypass(w, r, reason, h.next) }, func(header http.Header) {
				own := []string{rt.key.Bucket(r)}
				rt.cache.runPurges(r, &rt.stats, rt.cache.targetPurges(r, header, &rt.stats, own))
			})
			return
		}
		rt.bypass(w, r, reason, h.next)
		return
	}
	// The key first: a request that bypasses for its query must not take
	// the breaker's probe, which only a store call can answer.
	k, err := rt.key.Key(r)
	if err != nil {
		bypassed(sp, bypassQuery)
		rt.bypass(w, r, bypassQuery, h.next)
		return
	}
	now := time.Now()
	if k.Digested {
		rt.stats.add(cLongKeys, 1)
	}
	// One allocation for the store read's context and the headers a hit
	// sets, which serving needs anyway.
	hs := new(hitScratch)
	var snap localSnapshot
	if rt.local != nil {
		// Before the breaker: a local copy is served whatever the
		// store's state (the tier's bound covers that), and it must not
		// take the breaker's probe, which only a store call answers.
		if rt.serveLocal(w, r, k, now, sp, hs, h.next) {
			return
		}
		snap = rt.local.snapshot(now)
	}
	if !rt.cache.breaker.allow(now) {
		// The store is failing: skip it entirely rather than pay a timeout.
		bypassed(sp, bypassStore)
		rt.bypass(w, r, bypassStore, h.next)
		return
	}
	e := entryPool.Get().(*storage.Entry)
	var stale *storage.Entry
	if err := rt.lookup(ctx, r, &k, e, now, &hs.ctx); errors.Is(err, errExpired) {
		stale = e // never served; its validators revalidate it
	} else if err == nil && !rt.requestAccepts(r, e, now) {
		stale = e // the client wants it validated: its validators ask the origin
	} else if err == nil {
		switch freshness(e, now) {
		// Counted and refreshed before the body is written, which a slow
		// client may take long to read; taken back in the rare case the
		// body does not decode (the refresh then replaces the entry).
		case stateFresh:
			rt.stats.add(cHits, 1)
			if rt.refreshDue(e, now) {
				refreshing(sp, rt.scheduleRefresh(r, k, e, h.next))
			}
			if rt.serveEntryOwn(w, r, e, now, hitStatus(rt.cache.name, e, now), hs.own[:], rt.local != nil) {
				served(sp, e, OutcomeHit)
				rt.keep(k, e, now, snap)
				return
			}
			rt.stats.add(cHits, -1) // a miss: the entry is deleted
		case stateStale:
			rt.stats.add(cStaleServed, 1)
			refreshing(sp, rt.scheduleRefresh(r, k, e, h.next))
			if rt.serveEntryOwn(w, r, e, now, staleStatus(rt.cache.name, e, now), hs.own[:], rt.local != nil) {
				served(sp, e, OutcomeStale)
				rt.keep(k, e, now, snap)
				return
			}
			rt.stats.add(cStaleServed, -1)
		case stateErrorOnly:
			// Too stale to serve as it is, but still good if the origin
			// fails; it may be shared with waiters, so it leaves the pool.
			stale = e
		}
	}
	if stale == nil {
		putEntry(e)
	}
	rt.stats.add(cMisses, 1)
	endSpan(sp, OutcomeMiss)
	if rt.onlyIfCached(r) {
		// RFC 9111 section 5.2.1.7: no stored response the request
		// accepts, and the origin is not to be asked.
		w.Header()["Cache-Status"] = []string{rt.status("fwd=miss; detail=only-if-cached")}
		http.Error(w, "not cached", http.StatusGatewayTimeout)
		return
	}
	rt.fill(w, r, k, stale, h.next)
}

// requestAccepts reports whether the client's Cache-Control lets the
// stored e be served to it without asking the origin, when the route
// honours request directives (RFC 9111 section 5.2.1): not with no-cache,
// not older than its max-age, and fresh for at least its min-fresh.
func (rt *route) requestAccepts(r *http.Request, e *storage.Entry, now time.Time) bool {
	if !rt.policy.HonorRequestCacheControl {
		return true
	}
	v, ok := r.Header["Cache-Control"]
	if !ok {
		return true
	}
	cc := parseCacheControl(v)
	age := max(now.Sub(e.Stored), 0)
	switch {
	case cc.noCache:
		return false
	case cc.hasMaxAge && age.Truncate(time.Second) > cc.maxAge:
		// A reload (max-age=0) does not revalidate a fresh immutable
		// response (RFC 8246 section 2.1); a forced one (no-cache) does.
		return age < e.Fresh && parseCacheControl(e.Header["Cache-Control"]).immutable
	case cc.hasMinFresh && e.Fresh-age < cc.minFresh:
		return false
	}
	return true
}

// onlyIfCached reports whether r asks for a stored response only
// (only-if-cached) on a route that honours request directives.
func (rt *route) onlyIfCached(r *http.Request) bool {
	if !rt.policy.HonorRequestCacheControl {
		return false
	}
	v, ok := r.Header["Cache-Control"]
	return ok && parseCacheControl(v).onlyIfCached
}

// serveLocal serves r from the local tier's copy of k, and reports
// whether it did. A copy is served as the stored entry would be, fresh or
// within its stale-while-revalidate window; past that, the store decides.
func (rt *route) serveLocal(w http.ResponseWriter, r *http.Request, k keying.Key, now time.Time, sp Span, hs *hitScratch, next http.Handler) bool {
	e := rt.local.get(k, now, rt.localPurged.Load())
	if e == nil || !rt.mayServe(r, e) || !rt.requestAccepts(r, e, now) {
		return false
	}
	var (
		counted counter
		status  string
		outcome Outcome
	)
	switch freshness(e, now) {
	case stateFresh:
		counted, status, outcome = cHits, localHitStatus(rt.cache.name, e, now), OutcomeHit
		if rt.refreshDue(e, now) {
			refreshing(sp, rt.scheduleRefresh(r, k, e, next))
		}
	case stateStale:
		counted, status, outcome = cStaleServed, localStaleStatus(rt.cache.name, e, now), OutcomeStale
		refreshing(sp, rt.scheduleRefresh(r, k, e, next))
	default:
		return false
	}
	// Counted before the body is written, as store hits are (ServeHTTP);
	// taken back when it is not.
	rt.stats.add(counted, 1)
	rt.stats.add(cLocalHits, 1)
	if rt.serveEntryOwn(w, r, e, now, status, hs.own[:], true) {
		served(sp, e, outcome)
		return true
	}
	rt.stats.add(counted, -1)
	rt.stats.add(cLocalHits, -1)
	// The body did not decode for this client (serveEntry reported and
	// deleted it) or decodes too large: the store decides.
	rt.local.dropKey(k)
	return false
}

// keep hands e, served from the store at now, to the local tier of a
// Local route, or back to the pool. An entry stored in the future (by an
// instance whose clock is ahead) was clamped to now for this read, and
// would age from now as a copy while the store's readers see it younger:
// it is kept once its time has come.
func (rt *route) keep(k keying.Key, e *storage.Entry, now time.Time, snap localSnapshot) {
	// A response stored under a secondary key (vary.go) is found through
	// its marker, in the store: it is not kept.
	if rt.local == nil || e.Stored.Equal(now) || isSecondary(k) {
		putEntry(e)
		return
	}
	rt.local.put(k, e, snap)
}

// hitScratch is what a request's hit path allocates: the context of its
// store read, and the backing array of the headers serveEntryOwn sets.
type hitScratch struct {
	ctx valuesCtx
	own [7]string
}

// bypass sends r straight to the origin, counted under reason.
func (rt *route) bypass(w http.ResponseWriter, r *http.Request, reason bypass, next http.Handler) {
	rt.stats.bypass[reason].Add(1)
	w.Header().Set("Cache-Status", rt.cache.name+"; "+bypassDefs[reason].status)
	next.ServeHTTP(w, r)
}

// lookup is the hit path's single store read, decoded into e. Its deadline
// comes from the cache's shared coarse deadline rather than a context of
// its own, which would cost a timer and several allocations per hit; vc
// holds the context of the read, which keeps ctx's values (see
// coarseDeadline).
//
// In standards mode a vary marker in k's field is followed to the
// response stored for r's values (resolveVary), and k becomes the key
// that response is stored under.
func (rt *route) lookup(ctx context.Context, r *http.Request, k *keying.Key, e *storage.Entry, now time.Time, vc *valuesCtx) error {
	raw, err := rt.cache.store.Get(rt.cache.deadline.context(ctx, now, vc), k.Bucket, k.Field)
	rt.cache.observe(err)
	if rt.policy.Standards {
		*k, raw, err = rt.resolveVary(ctx, *k, raw, err, r.Header)
	}
	return rt.decodeInto(ctx, *k, raw, err, e, now)
}

// bypassReason returns why r must go straight to the origin, if it must.
func (rt *route) bypassReason(r *http.Request) (bypass, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return bypassMethod, true
	}
	if !rt.key.Routed(r) {
		rt.cache.logMismatch(r, rt.key.Pattern())
		return bypassRoute, true
	}
	if headerValue(r.Header, "Upgrade") != "" {
		return bypassUpgrade, true
	}
	// A body on a GET or HEAD is not keyed, yet the handler may read it.
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return bypassBody, true
	}
	if !rt.policy.AllowAuthorized {
		// In standards mode Authorization follows RFC 9111 section 3.5
		// (decide and mayServe).
		if _, ok := r.Header["Authorization"]; ok && !rt.policy.Standards {
			return bypassAuthorization, true
		}
		// A proxy's credentials are a client's credentials to a handler
		// that reads them; RFC 9111 says nothing of them: they bypass.
		if _, ok := r.Header["Proxy-Authorization"]; ok {
			return bypassAuthorization, true
		}
		if _, ok := r.Header["Cookie"]; ok {
			return bypassCookie, true
		}
	}
	if cc, ok := r.Header["Cache-Control"]; ok && parseCacheControl(cc).noStore {
		return bypassNoStore, true
	}
	return 0, false
}

// logMismatch logs, at most once a second per declared pattern, a
// request routed by another pattern than the one declared.
func (c *Cache) logMismatch(r *http.Request, declared string) {
	suppressed, ok := c.logLimit.allow("route mismatch "+declared, time.Now())
	if !ok {
		return
	}
	msg := "readthrough: request routed by another pattern than the route was declared with: its path values cannot be trusted: a read bypasses the cache, a write purges whole routes. Declare the route with the whole pattern the router reports (under a chi sub-router or Mount, the parents' parts too)"
	if r.Pattern == "" {
		msg = "readthrough: request reached a declared route without a router setting http.Request.Pattern: its path values cannot be trusted: a read bypasses the cache, a write purges whole routes. Route it with http.ServeMux or chi, or set r.Pattern before the cache"
	}
	c.log.LogAttrs(r.Context(), slog.LevelError, msg,
		slog.String("declared", declared), slog.String("routed", r.Pattern), slog.Int64("suppressed", suppressed))
}

// coarseDeadline hands out contexts whose deadline is between 0.9 and 1
// times timeout away, sharing one deadline among all the calls made within
// a tenth of timeout. The hit path uses it: a context.WithTimeout per hit
// costs a timer and several allocations, which at one Redis round trip per
// hit is a measurable share of the work.
//
// The shared deadline is not derived from the request's context, so a
// client that goes away does not cancel the (bounded) read. The context a
// call gets (a [valuesCtx]) still carries the request's values, such as
// its trace span, so that the store's own instrumentation (go-redis's
// tracing hooks) sees the request's trace on the hit path too.
type coarseDeadline struct {
	timeout time.Duration
	cur     atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // unused: the context ends at its deadline
	made   time.Time
}

// context returns, in vc, a context with the shared deadline and the
// values of ctx.
func (d *coarseDeadline) context(ctx context.Context, now time.Time, vc *valuesCtx) context.Context {
	*vc = valuesCtx{Context: d.shared(now), values: ctx}
	return vc
}

// shared returns the current shared deadline context, made anew once it
// is a tenth of timeout old.
func (d *coarseDeadline) shared(now time.Time) context.Context {
	if c := d.cur.Load(); c != nil && now.Sub(c.made) < d.timeout/10 && !now.Before(c.made) {
		return c.ctx
	}
	// The context cancels itself at its deadline, releasing its timer; it
	// must not be cancelled earlier, since calls may still be using it
	// after it is replaced.
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(d.timeout))
	d.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel, made: now})
	return ctx
}

// valuesCtx is the context of a hit's store read: its Deadline, Done and
// Err are those of the embedded shared deadline context, and its values
// those of values, the request's context, whose cancellation it ignores.
// Value asks the shared context first, which answers only for the
// context package's own key: a context derived from a valuesCtx (a
// store's WithTimeout, say) is then cancelled with the shared deadline
// without a goroutine of its own to watch it.
type valuesCtx struct {
	context.Context
	values context.Context
}

// Value returns the value of key in the request's context.
func (c *valuesCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}
