package httpcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// handler serves one cached route.
type handler struct {
	route *route
	next  http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := h.route
	if reason, ok := rt.bypassReason(r); ok {
		rt.bypass(w, r, reason, h.next)
		return
	}
	now := time.Now()
	if !rt.cache.breaker.allow(now) {
		// The store is failing: skip it entirely rather than pay a timeout.
		rt.bypass(w, r, bypassStore, h.next)
		return
	}
	k, err := rt.key.Key(r)
	if err != nil {
		rt.bypass(w, r, bypassQuery, h.next)
		return
	}
	if k.Digested {
		rt.stats.longKeys.Add(1)
	}
	e := entryPool.Get().(*storage.Entry)
	var stale *storage.Entry
	if err := rt.lookup(r.Context(), k, e, now); err == nil {
		switch freshness(e, now) {
		// Counted and refreshed before the body is written, which a slow
		// client may take long to read; taken back in the rare case the
		// body does not decode (the refresh then replaces the entry).
		case stateFresh:
			rt.stats.hits.Add(1)
			if rt.refreshDue(e, now) {
				rt.scheduleRefresh(r, k, h.next)
			}
			if rt.serveEntry(w, r, e, now, hitStatus(rt.cache.name, e, now)) {
				putEntry(e)
				return
			}
			rt.stats.hits.Add(-1) // a miss: the entry is deleted
		case stateStale:
			rt.stats.staleServed.Add(1)
			rt.scheduleRefresh(r, k, h.next)
			if rt.serveEntry(w, r, e, now, staleStatus(rt.cache.name, e, now)) {
				putEntry(e)
				return
			}
			rt.stats.staleServed.Add(-1)
		case stateErrorOnly:
			// Too stale to serve as it is, but still good if the origin
			// fails; it may be shared with waiters, so it leaves the pool.
			stale = e
		}
	}
	if stale == nil {
		putEntry(e)
	}
	rt.stats.misses.Add(1)
	rt.fill(w, r, k, stale, h.next)
}

// bypass sends r straight to the origin, counted under reason.
func (rt *route) bypass(w http.ResponseWriter, r *http.Request, reason bypass, next http.Handler) {
	rt.stats.bypass[reason].Add(1)
	w.Header().Set("Cache-Status", rt.cache.name+"; "+bypassStatus[reason])
	next.ServeHTTP(w, r)
}

// entryPool recycles the entries fresh and stale hits decode into: their
// header map is reused by the next decode.
var entryPool = sync.Pool{New: func() any { return new(storage.Entry) }}

func putEntry(e *storage.Entry) {
	h := e.Header
	*e = storage.Entry{Header: h}
	entryPool.Put(e)
}

// lookup is the hit path's single store read, decoded into e. Its deadline
// comes from the cache's shared coarse deadline rather than a context of
// its own, which would cost a timer and several allocations per hit.
func (rt *route) lookup(ctx context.Context, k keying.Key, e *storage.Entry, now time.Time) error {
	raw, err := rt.cache.store.Get(rt.cache.deadline.context(ctx, now), k.Bucket, k.Field)
	rt.cache.observe(err)
	return rt.decodeInto(ctx, k, raw, err, e, now)
}

// bypassReason returns why r must go straight to the origin, if it must.
func (rt *route) bypassReason(r *http.Request) (bypass, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return bypassMethod, true
	}
	if !rt.key.Routed(r) {
		rt.routeMismatch(r)
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
		if _, ok := r.Header["Authorization"]; ok {
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

// routeMismatch logs, at most once a second per route, a request routed
// by another pattern than the route was declared with.
func (rt *route) routeMismatch(r *http.Request) {
	c := rt.cache
	suppressed, ok := c.logLimit.allow("route mismatch "+rt.key.Pattern(), time.Now())
	if !ok {
		return
	}
	msg := "readthrough: request routed by another pattern than the cached route was declared with; it bypasses the cache. Declare the route with the whole pattern the router reports (under a chi sub-router or Mount, the parents' parts too)"
	if r.Pattern == "" {
		msg = "readthrough: request reached a cached route without a router setting http.Request.Pattern; it bypasses the cache. Route it with http.ServeMux or chi, or set r.Pattern before the cache"
	}
	c.log.LogAttrs(r.Context(), slog.LevelError, msg,
		slog.String("declared", rt.key.Pattern()), slog.String("routed", r.Pattern), slog.Int64("suppressed", suppressed))
}

// load reads and decodes the entry of k. Undecodable entries are misses:
// they are deleted and reported, never served.
func (rt *route) load(ctx context.Context, k keying.Key) (*storage.Entry, error) {
	sctx, cancel := rt.cache.storeCtx(ctx)
	raw, err := rt.cache.store.Get(sctx, k.Bucket, k.Field)
	cancel()
	rt.cache.observe(err)
	e := new(storage.Entry)
	if err := rt.decodeInto(ctx, k, raw, err, e, time.Now()); err != nil {
		return nil, err
	}
	return e, nil
}

// loadForFill is load plus the bucket's purge generation, read in the same
// round trip when the store supports fencing. The miss path uses it right
// before running the origin.
func (rt *route) loadForFill(ctx context.Context, k keying.Key) (*storage.Entry, fence, error) {
	fr, ok := rt.cache.store.(fillReader)
	if !ok {
		e, err := rt.load(ctx, k)
		return e, fence{}, err
	}
	sctx, cancel := rt.cache.storeCtx(ctx)
	raw, gen, err := fr.GetForFill(sctx, k.Bucket, k.Field)
	cancel()
	rt.cache.observe(err)
	var fc fence
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		fc = fence{generation: gen, ok: true}
	}
	e := new(storage.Entry)
	if err := rt.decodeInto(ctx, k, raw, err, e, time.Now()); err != nil {
		return nil, fc, err
	}
	return e, fc, nil
}

// readFence reads only the bucket's purge generation, for a fill that did
// not read the store after its miss; stores that cannot fence cost nothing.
func (rt *route) readFence(ctx context.Context, k keying.Key) fence {
	if _, ok := rt.cache.store.(fillReader); !ok {
		return fence{}
	}
	_, fc, _ := rt.loadForFill(ctx, k)
	return fc
}

// decodeInto decodes a store read into e. A read error other than a miss
// is reported (unless the client went away); an undecodable entry is
// reported and deleted; a dead one is deleted: all three are misses. An
// entry of an envelope version this release does not know, or in a
// content coding it cannot decode, is a quiet miss and stays: a newer
// release wrote it and can still read it, and the fill replaces it.
func (rt *route) decodeInto(ctx context.Context, k keying.Key, raw []byte, err error, e *storage.Entry, now time.Time) error {
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) && ctx.Err() == nil {
			rt.reportError(ctx, "store get", err)
		}
		return err
	}
	switch err := storage.Decode(raw, e); {
	case errors.Is(err, storage.ErrVersion):
		return err
	case err != nil:
		rt.stats.entriesRejected.Add(1)
		rt.reportError(ctx, "decode entry", err)
		rt.dropField(ctx, k)
		return err
	}
	// The store is not trusted with time either: no window outlasts the
	// route's MaxTTL, and a stored time in the future is now when it is
	// within the clock skew between instances, and a refused entry past
	// it (clamped at every read, such an entry would never age).
	if e.Stored.After(now) {
		if e.Stored.Sub(now) > maxClockSkew {
			rt.stats.entriesRejected.Add(1)
			rt.reportError(ctx, "decode entry", fmt.Errorf("%w: stored %v in the future", storage.ErrCorrupt, e.Stored.Sub(now)))
			rt.dropField(ctx, k)
			return storage.ErrCorrupt
		}
		e.Stored = now
	}
	e.Fresh = min(e.Fresh, rt.policy.MaxTTL)
	e.StaleWhileRevalidate = min(e.StaleWhileRevalidate, rt.policy.MaxTTL)
	e.StaleIfError = min(e.StaleIfError, rt.policy.MaxTTL)
	if freshness(e, now) == stateDead {
		rt.dropField(ctx, k) // dead fields in a live bucket are removed when read
		return storage.ErrNotFound
	}
	if e.Coding == storage.DictionaryCoding {
		return rt.decodeDictionary(ctx, k, e, now)
	}
	if !storage.SupportedCoding(e.Coding) {
		// Written by another writer (a newer release, say) in a coding
		// this one cannot decode: a miss, never sent as it is. It is left
		// for the fill to replace, since its writer can still read it.
		return fmt.Errorf("%w: entry in content coding %q, which this release cannot decode", storage.ErrNotFound, e.Coding)
	}
	return nil
}

// decodeDictionary decodes a dictionary-compressed entry in place. An
// entry whose dictionary cannot be loaded is a miss and is left for the
// fill to replace; one that does not decode is reported and deleted.
func (rt *route) decodeDictionary(ctx context.Context, k keying.Key, e *storage.Entry, now time.Time) error {
	err := errUnknownDictionary
	if rt.dicts != nil { // else the route's policy changed since
		err = rt.dicts.decode(ctx, e)
	}
	switch {
	case err == nil:
		rt.dicts.used(now)
	case errors.Is(err, errUnknownDictionary):
		rt.stats.dictMisses.Add(1)
	default:
		rt.reportError(ctx, "decode entry", err)
		rt.dropField(ctx, k)
	}
	return err
}

func (rt *route) dropField(ctx context.Context, k keying.Key) {
	sctx, cancel := rt.cache.storeCtx(ctx)
	err := rt.cache.store.Delete(sctx, k.Bucket, k.Field)
	cancel()
	rt.cache.observe(err)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		rt.reportError(ctx, "store delete", err)
	}
}

// maxClockSkew is how far in the future an entry's stored time may be:
// the clocks of the instances sharing a store differ by that much at most.
const maxClockSkew = time.Minute

type entryState int

const (
	stateFresh     entryState = iota
	stateStale                // past fresh, inside stale-while-revalidate
	stateErrorOnly            // past stale-while-revalidate, inside stale-if-error
	stateDead
)

func freshness(e *storage.Entry, now time.Time) entryState {
	age := now.Sub(e.Stored)
	switch {
	case age < e.Fresh:
		return stateFresh
	case age < e.Fresh+e.StaleWhileRevalidate:
		return stateStale
	case age < e.Fresh+e.StaleIfError:
		return stateErrorOnly
	}
	return stateDead
}

// usableOnError reports whether e may be served because the origin failed.
func usableOnError(e *storage.Entry, now time.Time) bool {
	return e != nil && now.Sub(e.Stored) < e.Fresh+e.StaleIfError
}
