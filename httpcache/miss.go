package httpcache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// The miss path: inside the process one request per key leads (a flight)
// and the others wait for it; across processes the leader takes the fill
// lock, and the others wait for its notification. The leader runs the
// origin (origin.go) and shares what it produced with everyone waiting.

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

// fill handles a miss for k. stale is an entry past its
// stale-while-revalidate window that may still be served if the origin
// fails; it may be nil.
func (rt *route) fill(w http.ResponseWriter, r *http.Request, k keying.Key, stale *storage.Entry, next http.Handler) {
	if stale != nil && !rt.canServe(r, stale) {
		// Neither served on an error nor revalidated for this client,
		// which the origin then answers in full.
		stale = nil
	}
	fk := k.Bucket + "\x00" + k.Field
	r, sp := rt.traceRequest(r, OpFill) // the origin and store calls nest under the fill's span
	own := &fillCall{w: w, r: r, k: k, stale: stale, next: next, fwd: "fwd=uri-miss", sh: &sharing{rt: rt, k: k}, span: sp}
	defer own.endSpan()
	if _, auth := r.Header["Authorization"]; auth && rt.policy.Standards {
		// An authenticated request neither waits for another client's
		// response nor has its own shared before it is judged: it
		// fetches its own, stored when it says a shared cache may
		// (RFC 9111 section 3.5).
		rt.originFill(own)
		return
	}
	for attempt := 1; ; attempt++ {
		f, leader := rt.cache.flights.join(fk)
		if leader {
			rt.lead(own, fk, f)
			return
		}
		ws := rt.startWait(r.Context(), "flight")
		res, ok := f.wait(r.Context(), rt.policy.LockWait)
		ws.end(flightOutcome(r.Context(), res, ok))
		switch {
		case ok && res.outcome == outcomeShared && !rt.varyMatch(res.entry, res.header, r.Header):
			// The response varies on a header this request does not
			// share with the one it answered: fetch our own.
		case ok && res.outcome == outcomeShared && res.status != "":
			if rt.serveEntry(w, r, res.entry, time.Now(), res.status) {
				rt.stats.add(cStaleServed, 1)
				own.outcome = OutcomeStale
				return
			}
		case ok && res.outcome == outcomeShared:
			if rt.serveEntry(w, r, res.entry, time.Now(), rt.status("fwd=uri-miss; collapsed")) {
				rt.stats.add(cCollapsed, 1)
				own.outcome = OutcomeCollapsed
				return
			}
		case ok && res.outcome == outcomeFailed && attempt < maxLeadAttempts:
			continue // the leader failed: one of the waiters leads now
		case r.Context().Err() != nil:
			own.outcome = OutcomeCanceled
			return // the client went away while waiting
		case !ok && usableOnError(stale, time.Now()):
			if rt.serveEntry(w, r, stale, time.Now(), staleErrorStatus(rt.cache.name, stale, 0, "lock-wait")) {
				rt.stats.add(cStaleServed, 1)
				own.outcome = OutcomeStale
				return
			}
		}
		// Waited too long, the response is not for sharing, or this
		// client cannot take it: fetch our own.
		rt.originFill(own)
		return
	}
}

// lead fills call.k for this process: it collapses with other processes
// through the Locker, then runs the origin and hands the result to the
// waiters of flight f.
func (rt *route) lead(call *fillCall, fk string, f *flight) {
	w, r, k, stale := call.w, call.r, call.k, call.stale
	sh := &sharing{rt: rt, k: k, flight: f, fk: fk, hdr: r.Header}
	defer sh.shareLocal(flightResult{outcome: outcomeFailed}) // unless shared before
	call.sh = sh
	if stale != nil {
		call.fwd = "fwd=stale"
	}

	ctx := r.Context()
	l := rt.cache.locker
	if l == nil || !rt.cache.storeHealthy() {
		rt.originFill(call)
		return
	}
	for attempt := 1; attempt <= maxLeadAttempts; attempt++ {
		// Watching before the lock attempt: a notification sent between
		// the two is not missed. A watch Redis has not confirmed may never
		// fire, which awaitRemote's re-reads of the store make up for.
		wctx, cancel := rt.cache.storeCtx(ctx)
		fills, unwatch, _ := l.Watch(wctx, k.Bucket, k.Field)
		cancel()
		lock, err := rt.tryLock(ctx, k)
		if err == nil {
			unwatch()
			e, done := rt.afterLock(ctx, sh, lock, r.Header, func(e *storage.Entry) bool {
				return isFresh(e) && rt.requestAccepts(r, e, time.Now())
			})
			if !done && call.stale == nil {
				call.stale = e // stored since the miss, and stale: its validators
			}
			if done {
				sh.shareLocal(flightResult{outcome: outcomeShared, entry: e})
				if rt.serveEntry(w, r, e, time.Now(), hitStatus(rt.cache.name, e, time.Now())) {
					call.outcome = OutcomeHit // filled between the miss and the lock
					return
				}
				call.sh = &sharing{rt: rt, k: k} // this client cannot take it: fetch our own
			}
			rt.originFill(call)
			return
		}
		if !errors.Is(err, storage.ErrLockHeld) {
			unwatch()
			rt.reportError(ctx, "take fill lock", err)
			break
		}
		// Another process fills this key: wait for its notification.
		ws := rt.startWait(ctx, "lock")
		got, fill, ok := rt.awaitRemote(ctx, k, r.Header, fills)
		ws.end(remoteOutcome(ctx, got, fill, ok))
		unwatch()
		if got != nil {
			sh.shareLocal(flightResult{outcome: outcomeShared, entry: got})
			if rt.serveEntry(w, r, got, time.Now(), rt.status("fwd=uri-miss; collapsed")) {
				rt.stats.add(cCollapsed, 1)
				call.outcome = OutcomeCollapsed
				return
			}
			break // this client cannot take it: fetch our own
		}
		if ctx.Err() != nil {
			call.outcome = OutcomeCanceled
			return // client gone; our waiters will lead
		}
		if ok && fill.Failed {
			continue // the other filler failed: try to take over
		}
		if !ok && usableOnError(stale, time.Now()) {
			status := staleErrorStatus(rt.cache.name, stale, 0, "lock-wait")
			sh.shareLocal(flightResult{outcome: outcomeShared, entry: stale, status: status})
			if rt.serveEntry(w, r, stale, time.Now(), status) {
				rt.stats.add(cStaleServed, 1)
				call.outcome = OutcomeStale
				return
			}
		}
		break // not cacheable, or waited too long: fetch our own
	}
	rt.originFill(call)
}

// isFresh reports whether a fill finds e fresh and need not run.
func isFresh(e *storage.Entry) bool { return freshness(e, time.Now()) == stateFresh }

// tryLock takes the fill lock of k without waiting, within the store
// timeout.
func (rt *route) tryLock(ctx context.Context, k keying.Key) (*heldLock, error) {
	lctx, cancel := rt.cache.storeCtx(ctx)
	lk, err := rt.cache.locker.TryLock(lctx, k.Bucket, k.Field, rt.policy.LockTTL)
	cancel()
	rt.cache.observe(err)
	if err != nil {
		return nil, err
	}
	return &heldLock{Lock: lk}, nil
}

// afterLock is what a fill or a refresh does first once it holds the fill
// lock of sh's key: it re-reads the entry, since another caller may have
// filled it between the miss and the lock. When done says the entry read
// makes the fill unnecessary, it releases the lock and returns the entry.
// Otherwise sh takes the lock, with the bucket's purge generation the same
// read returned, which fences the fill against a purge that comes after
// it; sh releases the lock when it publishes. It then returns the entry
// read, if any (a stale or expired one, for revalidation).
func (rt *route) afterLock(ctx context.Context, sh *sharing, lock *heldLock, hdr http.Header, done func(*storage.Entry) bool) (*storage.Entry, bool) {
	e, fc, err := rt.loadForFill(ctx, sh.k, hdr)
	if err == nil && done(e) {
		rt.unlock(ctx, lock, sh.k)
		return e, true
	}
	sh.lock, sh.fence = lock, fc
	return e, false // the entry there is, if any, for its validators
}

// awaitRemote waits up to the policy's lock wait for another process's fill
// of k and returns the entry it stored, if it stored one. ok is false when
// no notification came in time. Notifications are the mechanism; as a
// fallback for ones lost while the pub/sub connection was down, the store
// is re-read every recheckInterval, so a lost notification costs a fraction
// of the wait rather than all of it.
func (rt *route) awaitRemote(ctx context.Context, k keying.Key, hdr http.Header, fills <-chan storage.Fill) (e *storage.Entry, fill storage.Fill, ok bool) {
	t := time.NewTimer(rt.policy.LockWait)
	defer t.Stop()
	recheck := time.NewTicker(recheckInterval(rt.policy.LockWait))
	defer recheck.Stop()
	for waiting := true; waiting; {
		select {
		case fill = <-fills:
			waiting = false
		case <-recheck.C:
			if e, err := rt.load(ctx, k, hdr); err == nil && isFresh(e) {
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
	e, err := rt.load(ctx, k, hdr)
	if err != nil || !isFresh(e) {
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
	lock   *heldLock   // nil: no lock to release, no notification to send
	fence  fence       // the bucket's purge generation read before the origin ran
	hdr    http.Header // the leading request's header, for waiters' vary match

	stopKeep    func()
	localOnce   sync.Once
	publishOnce sync.Once
}

// awaited reports whether requests of this process wait for the fill.
func (sh *sharing) awaited() bool {
	return sh.flight != nil && sh.flight.waiters.Load() > 0
}

// shareLocal finishes the flight with res, waking this process's waiters.
func (sh *sharing) shareLocal(res flightResult) {
	if sh.flight == nil {
		return
	}
	res.header = sh.hdr
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
		ctx := context.WithoutCancel(ctx)
		sh.rt.unlock(ctx, sh.lock, sh.k)
		pctx, cancel := sh.rt.cache.storeCtx(ctx)
		err := sh.rt.cache.locker.Publish(pctx, sh.k.Bucket, sh.k.Field, f)
		cancel()
		sh.rt.cache.observe(err)
		if err != nil {
			sh.rt.reportError(ctx, "publish fill", err)
		}
	})
}

// keepLock keeps the lock, if one is held, while the origin runs.
func (sh *sharing) keepLock() {
	if sh.lock != nil && sh.stopKeep == nil {
		sh.stopKeep = sh.rt.keepLock(sh.lock, sh.k)
	}
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
	rt.stats.add(cLocksLost, 1)
	rt.cache.log.Warn("readthrough: fill lock lost", "route", rt.key.Pattern(), "bucket", k.Bucket, "field", k.FieldHex(), "op", op, "err", err)
	if rt.cache.onError != nil {
		rt.cache.onError(context.Background(), fmt.Errorf("httpcache: fill lock %s: %w", op, err))
	}
}
