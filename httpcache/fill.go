package httpcache

import (
	"bytes"
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
	"github.com/readthrough/readthrough/storage"
)

// maxLeadAttempts bounds how often a request tries to become the filler
// after the previous filler failed, before it fetches its own response.
const maxLeadAttempts = 3

// outcome is how a fill ended, as seen by the requests that waited for it.
type outcome int

const (
	outcomeFailed    outcome = iota // no whole response: a waiter should lead
	outcomeShared                   // entry holds a stored response for everyone
	outcomeNotShared                // the response was not cacheable: fetch your own
)

// fill handles a miss for k: inside the process one request per key leads
// and the others wait for it; the leader collapses with other processes
// through the Locker. stale is an entry past its stale-while-revalidate
// window that may still be served if the origin fails; it may be nil.
func (rt *route) fill(w http.ResponseWriter, r *http.Request, k keying.Key, stale *storage.Entry, next http.Handler) {
	fk := k.Bucket + "\x00" + k.Field
	for attempt := 1; ; attempt++ {
		f, leader := rt.cache.flights.join(fk)
		if leader {
			rt.lead(w, r, k, stale, next, fk, f)
			return
		}
		res, ok := f.wait(r.Context(), rt.policy.LockWait)
		switch {
		case ok && res.outcome == outcomeShared && res.status != "":
			if rt.serveEntry(w, r, res.entry, time.Now(), res.status) {
				rt.stats.staleServed.Add(1)
				return
			}
		case ok && res.outcome == outcomeShared:
			if rt.serveEntry(w, r, res.entry, time.Now(), rt.status("fwd=uri-miss; collapsed")) {
				rt.stats.collapsed.Add(1)
				return
			}
		case ok && res.outcome == outcomeFailed && attempt < maxLeadAttempts:
			continue // the leader failed: one of the waiters leads now
		case r.Context().Err() != nil:
			return // the client went away while waiting
		case !ok && usableOnError(stale, time.Now()):
			if rt.serveEntry(w, r, stale, time.Now(), staleErrorStatus(rt.cache.name, stale, 0, "lock-wait")) {
				rt.stats.staleServed.Add(1)
				return
			}
		}
		// Waited too long, the response is not for sharing, or this
		// client cannot take it: fetch our own.
		rt.originFill(w, r, k, stale, next, &sharing{rt: rt, k: k}, "fwd=uri-miss")
		return
	}
}

// lead fills k for this process: it collapses with other processes through
// the Locker, then runs the origin and hands the result to the waiters of
// flight f.
func (rt *route) lead(w http.ResponseWriter, r *http.Request, k keying.Key, stale *storage.Entry, next http.Handler, fk string, f *flight) {
	sh := &sharing{rt: rt, k: k, flight: f, fk: fk}
	defer sh.shareLocal(flightResult{outcome: outcomeFailed}) // unless shared before

	ctx := r.Context()
	var lock *heldLock
	if l := rt.cache.locker; l != nil && rt.cache.storeHealthy() {
		for attempt := 1; attempt <= maxLeadAttempts; attempt++ {
			fills, unwatch := l.Watch(k.Bucket, k.Field)
			lctx, cancel := rt.cache.storeCtx(ctx)
			lk, err := l.TryLock(lctx, k.Bucket, k.Field, rt.policy.LockTTL)
			cancel()
			rt.cache.observe(err)
			if err == nil {
				unwatch()
				lock = &heldLock{Lock: lk}
				break
			}
			if !errors.Is(err, storage.ErrLockHeld) {
				unwatch()
				rt.reportError(ctx, "take fill lock", err)
				break
			}
			// Another process fills this key: wait for its notification.
			got, fill, ok := rt.awaitRemote(ctx, k, fills)
			unwatch()
			if got != nil {
				sh.shareLocal(flightResult{outcome: outcomeShared, entry: got})
				if rt.serveEntry(w, r, got, time.Now(), rt.status("fwd=uri-miss; collapsed")) {
					rt.stats.collapsed.Add(1)
					return
				}
				break // this client cannot take it: fetch our own
			}
			if ctx.Err() != nil {
				return // client gone; our waiters will lead
			}
			if ok && fill.Failed {
				continue // the other filler failed: try to take over
			}
			if !ok && usableOnError(stale, time.Now()) {
				status := staleErrorStatus(rt.cache.name, stale, 0, "lock-wait")
				sh.shareLocal(flightResult{outcome: outcomeShared, entry: stale, status: status})
				if rt.serveEntry(w, r, stale, time.Now(), status) {
					rt.stats.staleServed.Add(1)
					return
				}
			}
			break // not cacheable, or waited too long: fetch our own
		}
	}
	fwd := "fwd=uri-miss"
	if stale != nil {
		fwd = "fwd=stale"
	}
	if lock == nil {
		rt.originFill(w, r, k, stale, next, sh, fwd)
		return
	}
	sh.lock = lock
	defer sh.publish(ctx, storage.Fill{Failed: true}) // unless published before
	// The fill may have finished between our miss and taking the lock; the
	// same read fences our fill against a purge that comes after it.
	e, fc, err := rt.loadForFill(ctx, k)
	if err == nil && freshness(e, time.Now()) == stateFresh {
		sh.lock = nil
		rt.unlock(ctx, lock, k)
		sh.shareLocal(flightResult{outcome: outcomeShared, entry: e})
		if rt.serveEntry(w, r, e, time.Now(), hitStatus(rt.cache.name, e, time.Now())) {
			return
		}
		sh = &sharing{rt: rt, k: k} // this client cannot take it: fetch our own
	} else {
		sh.fence = fc
	}
	rt.originFill(w, r, k, stale, next, sh, fwd)
}

// awaitRemote waits up to the policy's lock wait for another process's fill
// of k and returns the entry it stored, if it stored one. ok is false when
// no notification came in time. Notifications are the mechanism; as a
// fallback for ones lost while the pub/sub connection was down, the store
// is re-read every recheckInterval, so a lost notification costs a fraction
// of the wait rather than all of it.
func (rt *route) awaitRemote(ctx context.Context, k keying.Key, fills <-chan storage.Fill) (e *storage.Entry, fill storage.Fill, ok bool) {
	t := time.NewTimer(rt.policy.LockWait)
	defer t.Stop()
	recheck := time.NewTicker(recheckInterval(rt.policy.LockWait))
	defer recheck.Stop()
	for waiting := true; waiting; {
		select {
		case fill = <-fills:
			waiting = false
		case <-recheck.C:
			if e, err := rt.load(ctx, k); err == nil && freshness(e, time.Now()) == stateFresh {
				return e, storage.Fill{Stored: true}, true
			}
		case <-t.C:
			return nil, fill, false
		case <-ctx.Done():
			return nil, fill, false
		}
	}
	if !fill.Stored {
		return nil, fill, true
	}
	e, err := rt.load(ctx, k)
	if err != nil || freshness(e, time.Now()) != stateFresh {
		return nil, storage.Fill{Failed: true}, true
	}
	return e, fill, true
}

// recheckInterval is how often a waiter re-reads the store in case a fill
// notification was lost: a tenth of the wait, between 100ms and 1s.
func recheckInterval(wait time.Duration) time.Duration {
	return min(max(wait/10, 100*time.Millisecond), time.Second)
}

// sharing is who one origin call's response is shared with: the requests
// of this process waiting on its flight, and, while it holds the fill
// lock, the requests of other instances waiting for its notification.
// Each is told once: as soon as the response turns out not to be
// shareable, or once it is stored.
type sharing struct {
	rt     *route
	k      keying.Key
	flight *flight // nil: no flight to finish
	fk     string
	lock   *heldLock // nil: no lock to release, no notification to send
	fence  fence     // the bucket's purge generation read before the origin ran

	stopKeep    func()
	localOnce   sync.Once
	publishOnce sync.Once
}

// shareLocal finishes the flight with res, waking this process's waiters.
func (sh *sharing) shareLocal(res flightResult) {
	if sh.flight == nil {
		return
	}
	sh.localOnce.Do(func() { sh.rt.cache.flights.finish(sh.fk, sh.flight, res) })
}

// publish releases the fill lock and then announces f to the waiters of
// every instance. Unlocking comes first: a caller that takes the lock
// after the unlock re-reads the store, while one that found the lock
// held is already watching when the notification goes out. The other
// order lets a caller arriving in between wait for a notification that
// has already gone.
func (sh *sharing) publish(ctx context.Context, f storage.Fill) {
	if sh.lock == nil {
		return
	}
	sh.publishOnce.Do(func() {
		if sh.stopKeep != nil {
			sh.stopKeep()
		}
		sh.rt.unlock(context.WithoutCancel(ctx), sh.lock, sh.k)
		sh.rt.publish(ctx, sh.k, f)
	})
}

// keepLock keeps the lock, if one is held, while the origin runs.
func (sh *sharing) keepLock() {
	if sh.lock != nil && sh.stopKeep == nil {
		sh.stopKeep = sh.rt.keepLock(sh.lock, sh.k)
	}
}

// originFill runs the origin for r with a recorder in front of w, shares
// its response with the requests of sh, stores it when it is cacheable,
// and then sends it to w. It serves stale instead of an origin failure
// when stale allows it.
func (rt *route) originFill(w http.ResponseWriter, r *http.Request, k keying.Key, stale *storage.Entry, next http.Handler, sh *sharing, fwd string) {
	ctx := r.Context()
	if sh.lock != nil {
		sh.keepLock()
	} else if rt.cache.storeHealthy() {
		sh.fence = rt.readFence(ctx, k)
	}
	o := rt.runOrigin(w, r, stale, next, fwd, sh)
	defer o.rec.release()
	switch {
	case o.servedStale:
		sh.shareLocal(flightResult{outcome: outcomeShared, entry: stale, status: o.staleStatus})
	case o.entry != nil:
		// Even when the store write fails, the whole response is good for
		// this process's waiters, who need not wait for the store.
		sh.shareLocal(flightResult{outcome: outcomeShared, entry: o.entry})
		if rt.cache.storeHealthy() {
			rt.store(context.WithoutCancel(ctx), k, o, sh.fence)
		}
	case o.whole:
		sh.shareLocal(flightResult{outcome: outcomeNotShared})
	default:
		sh.shareLocal(flightResult{outcome: outcomeFailed})
	}
	sh.publish(ctx, storage.Fill{Stored: o.stored, Failed: !o.whole && !o.servedStale})
	if o.panicVal != nil && !o.servedStale {
		panic(o.panicVal)
	}
	o.rec.deliver(rt.fwdStatus(fwd, o.rec.status, o.stored))
}

// fwdStatus is the Cache-Status of a response from the origin.
func (rt *route) fwdStatus(fwd string, status int, stored bool) string {
	s := rt.status(fwd + "; fwd-status=" + itoa(status))
	if stored {
		s += "; stored"
	}
	return s
}

// heldLock is a fill lock this request holds; its loss is reported once.
type heldLock struct {
	storage.Lock
	lost atomic.Bool
}

// keepLock extends lock every half of its TTL while a slow origin runs. A
// lost lock is logged, never surfaced: the response still goes out.
func (rt *route) keepLock(lock *heldLock, k keying.Key) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(rt.policy.LockTTL / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), rt.policy.LockTTL/2)
				err := lock.Extend(ctx)
				cancel()
				if err != nil {
					rt.lockLost(lock, k, "extend", err)
					return
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (rt *route) unlock(ctx context.Context, lock *heldLock, k keying.Key) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := lock.Unlock(ctx); err != nil {
		rt.lockLost(lock, k, "unlock", err)
	}
}

func (rt *route) lockLost(lock *heldLock, k keying.Key, op string, err error) {
	if lock.lost.Swap(true) {
		return
	}
	rt.stats.locksLost.Add(1)
	rt.cache.log.Warn("readthrough: fill lock lost", "route", rt.key.Pattern(), "bucket", k.Bucket, "field", k.FieldHex(), "op", op, "err", err)
	if rt.cache.onError != nil {
		rt.cache.onError(context.Background(), fmt.Errorf("httpcache: fill lock %s: %w", op, err))
	}
}

// originResult is what one origin call produced.
type originResult struct {
	rec         *recorder      // the response, held until delivered
	entry       *storage.Entry // the response as an entry, when cacheable and whole
	tags        []string
	whole       bool   // the handler produced a whole response (cacheable or not)
	stored      bool   // set by store
	servedStale bool   // the stale entry went to the client instead
	staleStatus string // its Cache-Status
	panicVal    any
}

// originRequest returns the request the origin is called with for r: a
// copy detached from the client's cancellation, bounded by ctx, with
// conditional and range headers removed so the whole representation comes
// back, and HEAD turned into GET so the entry can serve both.
func originRequest(ctx context.Context, r *http.Request) *http.Request {
	or := r.Clone(ctx)
	if or.Method == http.MethodHead {
		or.Method = http.MethodGet
	}
	for _, h := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		delete(or.Header, h)
	}
	return or
}

// runOrigin calls the origin for r with a recorder in front of w (w may be
// nil for a background refresh), on a copy of r detached from the
// client's cancellation and bounded by the policy's fill timeout (see
// originRequest). A response that turns out not to be storable is
// streamed to w and sh's waiters are released at once; a storable one is
// held in the recorder for the caller to store and deliver. When the
// origin fails before anything reached w and stale is still usable, stale
// is served to w instead of the failure.
func (rt *route) runOrigin(w http.ResponseWriter, r *http.Request, stale *storage.Entry, next http.Handler, fwd string, sh *sharing) *originResult {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), rt.policy.FillTimeout)
	defer cancel()
	or := originRequest(ctx, r)

	rec := newRecorder(w, rt.policy.MaxBodyBytes)
	o := &originResult{rec: rec}
	rec.headOnly = r.Method == http.MethodHead
	// Headers set by outer middleware before the origin ran belong to this
	// response only; they are not stored for others.
	outer := rec.header.Clone()
	rec.holdErrors = w != nil && usableOnError(stale, time.Now())
	var dec decision
	rec.decide = func(status int, h http.Header) bool {
		dec = rt.decide(or, status, h)
		if dec.store {
			// Downstream caches must key on what this cache keys on.
			for _, name := range rt.policy.Vary {
				addVary(h, name, make([]string, 1))
			}
		}
		return dec.store
	}
	rec.onSend = func(h http.Header) {
		delete(h, "Surrogate-Control")
		delete(h, "Surrogate-Key")
		h["Cache-Status"] = []string{rt.fwdStatus(fwd, rec.status, false)}
	}
	rec.onUnshared = func() {
		sh.shareLocal(flightResult{outcome: outcomeNotShared})
		sh.publish(ctx, storage.Fill{})
	}

	start := time.Now()
	o.panicVal = callOrigin(rt, next, rec, or)
	end := time.Now()
	if o.panicVal == nil && rec.status == 0 && !rec.tainted {
		rec.WriteHeader(http.StatusOK) // the handler wrote nothing: an empty 200
	}
	failed := o.panicVal != nil || rec.status >= 500 || ctx.Err() != nil && !rec.complete()
	nothingSent := rec.held || rec.holding || rec.status == 0 && !rec.tainted
	if failed && nothingSent && w != nil && usableOnError(stale, end) {
		rec.holding = false
		h := w.Header()
		clear(h)
		for name, v := range outer {
			h[name] = v
		}
		o.staleStatus = staleErrorStatus(rt.cache.name, stale, rec.status, "stale-if-error")
		if rt.serveEntry(w, r, stale, end, o.staleStatus) {
			rt.stats.staleServed.Add(1)
		} else {
			http.Error(w, "origin failed and the cached entry is unreadable", http.StatusBadGateway)
		}
		o.servedStale = true
		return o
	}
	if rec.held {
		rec.releaseHeld() // the stale entry expired meanwhile: the failure goes out
	}
	o.whole = o.panicVal == nil && !rec.tainted
	if !o.whole || !rec.complete() || (ctx.Err() != nil && rec.status >= 500) {
		return o
	}
	header := storage.StorableHeader(rec.snapshot)
	for name, v := range outer {
		if equalValues(header[name], v) {
			delete(header, name)
		}
	}
	e := &storage.Entry{
		Status:               rec.status,
		Header:               header,
		Stored:               end,
		Fresh:                dec.fresh,
		StaleWhileRevalidate: dec.swr,
		StaleIfError:         dec.sie,
		OriginTime:           end.Sub(start),
		Coding:               dec.coding,
		Body:                 bytes.Clone(rec.buf.Bytes()),
	}
	rt.compress(e)
	o.entry = e
	o.tags = dec.tags
	return o
}

// store writes o's entry, fenced by fc; it reports whether it did, and
// records that in o.
func (rt *route) store(ctx context.Context, k keying.Key, o *originResult, fc fence) bool {
	value := storage.Encode(nil, rt.storedForm(ctx, o.entry))
	sctx, cancel := rt.cache.storeCtx(ctx)
	defer cancel()
	err := rt.cache.store.Set(sctx, k.Bucket, k.Field, value, storage.SetOptions{
		TTL:        o.entry.Lifetime(),
		MaxFields:  rt.policy.MaxFields,
		Tags:       o.tags,
		Fenced:     fc.ok,
		Generation: fc.generation,
	})
	rt.cache.observe(err)
	switch {
	case errors.Is(err, storage.ErrPurged):
		// A purge came while the origin ran: its response may be older than
		// the purge, so it is not stored.
		rt.stats.purgeRaces.Add(1)
		return false
	case errors.Is(err, storage.ErrBucketFull):
		// Variants past the bound are not stored, so that junk variants
		// cannot push out the ones real traffic uses.
		rt.stats.variantsRefused.Add(1)
		if !rt.bucketFullLogged.Swap(true) {
			rt.cache.log.LogAttrs(ctx, slog.LevelWarn, "readthrough: bucket full: new variants of this route are not stored until its variants expire (policy MaxFields)",
				slog.String("route", rt.key.Pattern()), slog.String("bucket", k.Bucket), slog.Int("max_fields", rt.policy.MaxFields))
		}
		return false
	case err != nil:
		rt.reportError(ctx, "store set", err)
		return false
	}
	o.stored = true
	rt.stats.stored.Add(1)
	rt.stats.bytesStored.Add(int64(len(value)))
	return true
}

func callOrigin(rt *route, h http.Handler, rec *recorder, r *http.Request) (panicVal any) {
	defer func() {
		if v := recover(); v != nil {
			panicVal = v
			if v != http.ErrAbortHandler {
				rt.cache.log.Error("readthrough: origin panicked", "route", rt.key.Pattern(), "panic", v, "stack", string(debug.Stack()))
			}
		}
	}()
	h.ServeHTTP(rec, r)
	return nil
}

func equalValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
