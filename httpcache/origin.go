package httpcache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// The origin call: the handler runs behind a recorder (recorder.go), its
// response is judged storable or not (decide.go), shared with the
// requests waiting for it (miss.go), stored, and then sent to the client
// that made the call.

// fillCall is one origin call, made for a miss or a background refresh.
type fillCall struct {
	w     http.ResponseWriter // the client; nil for a refresh
	r     *http.Request
	k     keying.Key
	stale *storage.Entry // served instead of an origin failure while usable; may be nil
	next  http.Handler   // the origin
	fwd   string         // the Cache-Status fwd parameter of the response
	sh    *sharing       // who the response is shared with
	// unconditional: the origin is not asked to revalidate stale (its
	// 304 did not select it)
	unconditional bool
	span          Span    // the fill's or refresh's span; nil when not traced
	outcome       Outcome // what the call came to, for span
}

// originResult is what one origin call produced.
type originResult struct {
	rec         *recorder      // the response, held until delivered
	entry       *storage.Entry // the response as its waiters are served it, when cacheable and whole
	storeAs     *storage.Entry // the entry as it is stored
	tags        []string
	whole       bool   // the handler produced a whole response (cacheable or not)
	stored      bool   // set by store
	servedStale bool   // the stale entry went to the client instead
	staleStatus string // its Cache-Status
	notModified bool   // the origin answered the revalidation with 304: entry is the stale one, updated
	private     bool   // entry is for this client only: a 304 that made it not storable
	retryFull   bool   // the 304 did not select the stale entry: ask again, unconditionally
	outer       http.Header
	panicVal    any
	storedBytes int   // the size of the value stored, once stored
	storeErr    error // why a cacheable response was not stored, if the write failed
	// vary are the unkeyed request headers the entry varies on
	// (standards mode): it is stored under the secondary key of the
	// request's values, and a vary marker in the primary field.
	vary []string
}

// storeKey is where o's entry is stored for a fill of k: k's primary
// key, or the secondary key of the request's values of the headers the
// entry varies on.
func (o *originResult) storeKey(k keying.Key, r *http.Request) keying.Key {
	if len(o.vary) == 0 {
		return primaryKey(k)
	}
	return secondaryKey(k, o.vary, r.Header)
}

// originFill runs the origin for call, shares its response with the
// requests of call.sh, stores it when it is cacheable, and then sends it
// to the client, if there is one. It serves stale instead of an origin
// failure when stale allows it. A panic of the origin is re-raised once
// everything is released, unless stale was served instead or no client
// waits (a refresh).
func (rt *route) originFill(call *fillCall) *originResult {
	sh := call.sh
	ctx := call.r.Context()
	if sh.lock != nil {
		sh.keepLock()
	} else if rt.cache.storeHealthy() {
		sh.fence = rt.readFence(ctx, call.k)
	}
	o := rt.runOrigin(call)
	if o.notModified && call.w != nil && !rt.canServe(call.r, o.entry) {
		// The 304 validated an entry this client cannot be served (a
		// stale entry met again after the lock): ask for the whole
		// response instead.
		o.retryFull, call.stale = true, nil
	}
	if o.retryFull {
		o.rec.release()
		if call.w != nil {
			restore(call.w.Header(), o.outer) // the 304's headers were never sent
		}
		call.unconditional = true
		o = rt.runOrigin(call)
	}
	defer o.rec.release()
	switch {
	case o.servedStale:
		sh.shareLocal(flightResult{outcome: outcomeShared, entry: call.stale, status: o.staleStatus})
	case o.private:
		sh.shareLocal(flightResult{outcome: outcomeNotShared})
	case o.entry != nil:
		// Even when the store write fails, the whole response is good for
		// this process's waiters, who need not wait for the store.
		sh.shareLocal(flightResult{outcome: outcomeShared, entry: o.entry})
		if o.storeAs != nil && rt.cache.storeHealthy() {
			rt.store(context.WithoutCancel(ctx), o.storeKey(call.k, call.r), o, sh.fence)
		}
	case o.whole:
		sh.shareLocal(flightResult{outcome: outcomeNotShared})
	default:
		sh.shareLocal(flightResult{outcome: outcomeFailed})
	}
	sh.publish(ctx, storage.Fill{Stored: o.stored, Failed: !o.whole && !o.servedStale})
	rt.traceOrigin(call, o)
	if o.panicVal != nil && !o.servedStale && call.w != nil {
		panic(o.panicVal)
	}
	status := rt.fwdStatus(call.fwd, o.rec.status, o.stored)
	if o.entry != nil && call.w != nil && (o.notModified || conditional(call.r) || rt.ranged(call.r)) && rt.canServe(call.r, o.entry) {
		// Served from the entry: a 304 from the origin is not the
		// client's answer, and a conditional client may get a 304 of its
		// own (RFC 9111 section 4.3.2).
		o.rec.holding = false
		restore(call.w.Header(), o.outer)
		if !rt.serveEntry(call.w, call.r, o.entry, time.Now(), status) {
			// Its body does not decode for this client (reported, and
			// the entry deleted): nothing of it went out.
			http.Error(call.w, "the cached body is unreadable", http.StatusBadGateway)
		}
		return o
	}
	o.rec.deliver(status)
	return o
}

// ranged reports whether r asks a route in standards mode for a range,
// which the entry answers (serveEntry): the origin is asked for all of it.
func (rt *route) ranged(r *http.Request) bool {
	return rt.policy.Standards && len(r.Header["Range"]) > 0
}

// conditional reports whether r asks for a 304 when its copy is current.
func conditional(r *http.Request) bool {
	return len(r.Header["If-None-Match"]) > 0 || len(r.Header["If-Modified-Since"]) > 0
}

// restore sets h back to outer: the headers outer middleware had set
// before the origin ran, or those a held response had when it was held.
func restore(h, outer http.Header) {
	clear(h)
	for name, v := range outer {
		h[name] = v
	}
}

// revalidation adds to the origin request or the validators of stale, so
// that the origin can answer 304 when the stored response is still
// current (RFC 9111 section 4.3.1), and reports whether it did.
func revalidation(or *http.Request, stale *storage.Entry) bool {
	if !revalidatable(stale) {
		return false
	}
	if etag := headerValue(stale.Header, "Etag"); etag != "" {
		or.Header["If-None-Match"] = []string{etag}
	}
	if lm := headerValue(stale.Header, "Last-Modified"); lm != "" {
		or.Header["If-Modified-Since"] = []string{lm}
	}
	return true
}

// updated returns stale with the headers of the 304 that revalidated it
// (RFC 9111 section 3.2: every header the 304 carries replaces the stored
// one, but the framing and content-coding ones, which describe the stored
// body, and those outer middleware had set, which are for this response
// only, as with a 200), stored at end, with the freshness the policy
// gives the updated response. The decision sees every header the
// response carries, outer middleware's included, as a 200's does (its
// Cache-Control, Surrogate-Control, Set-Cookie, Trailer); only the
// storable ones are kept. An updated response that may not be stored
// makes an entry for this client only, with its cookies.
func (rt *route) updated(or *http.Request, stale *storage.Entry, notModified, outer http.Header, start, end time.Time) (*storage.Entry, decision) {
	whole := stale.Header.Clone() // what the client would get: decided on
	kept := stale.Header.Clone()  // what may be stored
	for name, v := range notModified {
		switch name {
		case "Content-Length", "Content-Encoding", "Content-Range", "Transfer-Encoding":
			continue
		}
		whole[name] = v
		if !slices.Equal(outer[name], v) { // outer middleware's are for this response only
			kept[name] = v
		}
	}
	dec := rt.decide(or, stale.Status, whole)
	header := envelope.StorableHeader(kept)
	dec.keepSurrogate(header)
	if !dec.store {
		for _, name := range [...]string{"Set-Cookie", "Set-Cookie2"} {
			if v, ok := whole[name]; ok {
				header[name] = v
			}
		}
	}
	dec.stripFields(header)
	e := *stale
	e.Header = header
	e.Stored = end.Add(-dec.initialAge(start, end))
	e.Date = dec.entryDate(end)
	e.Fresh, e.StaleWhileRevalidate, e.StaleIfError = dec.fresh, dec.swr, dec.sie
	return &e, dec
}

// selects reports whether a 304 with header notModified is about the
// stored response with header stored (RFC 9111 section 4.3.4): its ETag,
// if it has one, must match the stored one (strongly when it is strong,
// weakly when weak), and otherwise its Last-Modified, if it has one, must
// equal the stored one. A 304 with neither is about the response it was
// asked about.
func selects(notModified, stored http.Header) bool {
	if etag := headerValue(notModified, "Etag"); etag != "" {
		have := headerValue(stored, "Etag")
		if weak, ok := strings.CutPrefix(etag, "W/"); ok {
			have, _ = strings.CutPrefix(have, "W/")
			return have == weak
		}
		return have == etag
	}
	if lm := headerValue(notModified, "Last-Modified"); lm != "" {
		return lm == headerValue(stored, "Last-Modified")
	}
	return true
}

// fwdStatus is the Cache-Status of a response from the origin.
func (rt *route) fwdStatus(fwd string, status int, stored bool) string {
	s := rt.status(fwd + "; fwd-status=" + itoa(status))
	if stored {
		s += "; stored"
	}
	return s
}

// originStripped are the request headers the origin is never sent: the
// cache answers conditions and ranges itself, from the whole response.
var originStripped = [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

// originRequest returns the request the origin is called with for r: a
// copy detached from the client's cancellation, bounded by ctx, with
// conditional and range headers removed so the whole representation comes
// back, and HEAD turned into GET so the entry can serve both.
func originRequest(ctx context.Context, r *http.Request) *http.Request {
	or := r.Clone(ctx)
	if or.Method == http.MethodHead {
		or.Method = http.MethodGet
	}
	for _, h := range originStripped {
		delete(or.Header, h)
	}
	return or
}

// runOrigin calls the origin with a recorder in front of the client (see
// recorder), on a copy of the request detached from the client's
// cancellation and bounded by the policy's fill timeout (see
// originRequest). A response that turns out not to be storable is streamed
// to the client and the waiters are released at once; a storable one is
// held in the recorder for originFill to store and deliver. When the
// origin fails before anything reached the client and call.stale is still
// usable, stale is served instead of the failure.
func (rt *route) runOrigin(call *fillCall) *originResult {
	w, r, stale, sh := call.w, call.r, call.stale, call.sh
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), rt.policy.FillTimeout)
	defer cancel()
	if w != nil {
		// The origin runs on for the requests waiting for it when its
		// client goes away, and stops when none does, as it would without
		// the cache: a client that drops its requests must not leave the
		// origin working for nobody. (Waiters that come later, and other
		// instances', see a failed fill and lead one of their own.)
		var clientGone atomic.Bool
		cancelIfAlone := func() {
			if clientGone.Load() && !sh.awaited() {
				cancel()
			}
		}
		stop := context.AfterFunc(r.Context(), func() {
			clientGone.Store(true)
			cancelIfAlone()
		})
		defer stop()
		if sh.flight != nil {
			sh.flight.abandoned.Store(&cancelIfAlone) // the last waiter leaving
		}
	}
	or := originRequest(ctx, r)
	revalidating := !call.unconditional && revalidation(or, stale)
	if revalidating {
		rt.stats.add(cRevalidations, 1)
	}

	rec := newRecorder(w, rt.policy.MaxBodyBytes)
	o := &originResult{rec: rec}
	rec.headOnly = r.Method == http.MethodHead
	// Headers set by outer middleware before the origin ran belong to this
	// response only; they are not stored for others.
	outer := rec.header.Clone()
	o.outer = outer
	rec.holdErrors = w != nil && usableOnError(stale, time.Now())
	var dec decision
	rec.decide = func(status int, h http.Header) bool {
		if revalidating && status == http.StatusNotModified {
			return true // held: the stale entry, updated, answers for it
		}
		dec = rt.decide(or, status, h)
		if dec.store && !dec.standards {
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
		h["Cache-Status"] = []string{rt.fwdStatus(call.fwd, rec.status, false)}
	}
	rec.onUnshared = func() {
		sh.shareLocal(flightResult{outcome: outcomeNotShared})
		sh.publish(ctx, storage.Fill{})
	}

	start := time.Now()
	o.panicVal = callOrigin(rt, call.next, rec, or)
	end := time.Now()
	rt.stats.add(cOriginCalls, 1)                       // fills and refreshes; bypasses are not cache work
	originTime := max(end.Sub(start)-rec.clientTime, 0) // a slow reader's time is not the origin's
	rt.stats.add(cOriginTimeNs, int64(originTime))
	if o.panicVal == nil && rec.status == 0 && !rec.tainted && ctx.Err() == nil {
		rec.WriteHeader(http.StatusOK) // the handler wrote nothing: an empty 200
	}
	// An origin whose context ended (the fill timeout, or its client gone
	// with nobody waiting) may have answered for that, with an empty, a
	// partial or an error body: never stored, never shared.
	failed := o.panicVal != nil || rec.status >= 500 || ctx.Err() != nil
	if failed && w == nil && usableOnError(stale, end) {
		// A background refresh whose origin failed keeps the entry,
		// which still covers for errors (RFC 5861): an error, even one
		// the origin says may be stored, is not stored over it.
		return o
	}
	nothingSent := rec.held || rec.holding || rec.status == 0 && !rec.tainted
	if failed && nothingSent && w != nil && usableOnError(stale, end) {
		rec.holding = false
		restore(w.Header(), outer)
		o.staleStatus = staleErrorStatus(rt.cache.name, stale, rec.status, "stale-if-error")
		if rt.serveEntry(w, r, stale, end, o.staleStatus) {
			rt.stats.add(cStaleServed, 1)
		} else {
			http.Error(w, "origin failed and the cached entry is unreadable", http.StatusBadGateway)
		}
		o.servedStale = true
		return o
	}
	if o.panicVal == nil && rec.status == 0 && !rec.tainted {
		// The context ended before the handler wrote anything: that is
		// no empty 200 of the origin's, which net/http would make of it.
		// It is a failed fill, not an answer unfit for sharing: the
		// waiters are told so below (one of them leads), not sent each
		// to the origin.
		rec.onUnshared = nil
		rec.WriteHeader(http.StatusGatewayTimeout)
	}
	if rec.held {
		rec.releaseHeld() // the stale entry expired meanwhile: the failure goes out
	}
	o.whole = o.panicVal == nil && !rec.tainted && ctx.Err() == nil
	if revalidating && rec.status == http.StatusNotModified && o.whole && rec.holding {
		if !selects(rec.snapshot, stale.Header) {
			// The 304 is about another representation than the stored
			// one (RFC 9111 section 4.3.4): it must not update it, and
			// the client needs the current one.
			o.retryFull = true
			return o
		}
		// The stored body is current: keep it, with the 304's headers.
		rt.stats.add(cNotModified, 1)
		rt.stats.add(cBytesNotResent, int64(len(stale.Body)))
		e, udec := rt.updated(or, stale, rec.snapshot, outer, start, end)
		o.notModified = true
		e.OriginTime = originTime
		if !udec.store {
			// Served to this client, not stored and not shared: the
			// 304's headers may be this client's alone (private).
			o.entry, o.storeAs, o.private = e, nil, true
			return o
		}
		o.entry, o.storeAs = rt.codec.Encode(ctx, e)
		o.tags, o.vary = udec.tags, udec.vary
		return o
	}
	if !o.whole || !rec.complete() {
		return o
	}
	header := envelope.StorableHeader(rec.snapshot)
	for name, v := range outer {
		if slices.Equal(header[name], v) {
			delete(header, name)
		}
	}
	dec.keepSurrogate(header)
	dec.stripFields(header)
	body := bytes.Clone(rec.buf.Bytes())
	if _, typed := rec.snapshot["Content-Type"]; !typed && len(body) > 0 && dec.coding == "" {
		// net/http gave the client the type it sniffed from the body; a
		// hit sent with a Content-Encoding would get none.
		header["Content-Type"] = []string{http.DetectContentType(body)}
	}
	e := &storage.Entry{
		Status:               rec.status,
		Header:               header,
		Stored:               end.Add(-dec.initialAge(start, end)),
		Date:                 dec.entryDate(end),
		Fresh:                dec.fresh,
		StaleWhileRevalidate: dec.swr,
		StaleIfError:         dec.sie,
		OriginTime:           originTime,
		Coding:               dec.coding,
		Body:                 body,
	}
	if dec.noTransform {
		o.entry, o.storeAs = e, e // stored as the origin sent it
	} else {
		o.entry, o.storeAs = rt.codec.Encode(ctx, e)
	}
	o.tags, o.vary = dec.tags, dec.vary
	return o
}

// store writes o's entry, fenced by fc; it reports whether it did, and
// records that in o.
func (rt *route) store(ctx context.Context, k keying.Key, o *originResult, fc fence) bool {
	value := envelope.Encode(nil, o.storeAs)
	opts := storage.SetOptions{
		TTL:        rt.storeTTL(o.storeAs),
		MaxFields:  rt.policy.MaxFields,
		Tags:       o.tags,
		Fenced:     fc.ok,
		Generation: fc.generation,
	}
	set := func() error {
		sctx, cancel := rt.cache.storeCtx(ctx)
		defer cancel()
		err := rt.cache.store.Set(sctx, k.Bucket, k.Field, value, opts)
		rt.cache.observe(err)
		return err
	}
	err := set()
	if errors.Is(err, storage.ErrBucketFull) && rt.drain(ctx, k.Bucket) {
		err = set() // dead variants made room
	}
	if rt.local != nil {
		// This process's copies of the bucket are older than what it
		// just wrote: dropped now, not when the store's report comes,
		// so that refresh-ahead does not fire again on them meanwhile.
		rt.local.changed([]string{k.Bucket}, false)
	}
	o.storeErr, o.storedBytes = err, len(value)
	switch {
	case errors.Is(err, storage.ErrPurged):
		// A purge came while the origin ran: its response may be older than
		// the purge, so it is not stored.
		rt.stats.add(cPurgeRaces, 1)
		return false
	case errors.Is(err, storage.ErrBucketFull):
		// Variants past the bound are not stored, so that junk variants
		// cannot push out the ones real traffic uses.
		rt.stats.add(cVariantsRefused, 1)
		if !rt.bucketFullLogged.Swap(true) {
			rt.cache.log.LogAttrs(ctx, slog.LevelWarn, "readthrough: bucket full: new variants of this route are not stored until its variants expire (policy MaxFields)",
				slog.String("route", rt.key.Pattern()), slog.String("bucket", k.Bucket), slog.Int("max_fields", rt.policy.MaxFields))
		}
		return false
	case err != nil:
		rt.reportError(ctx, "store set", err)
		return false
	}
	if len(o.vary) > 0 {
		// After the response: a reader that finds the marker first
		// finds the response too, or misses.
		rt.storeVary(ctx, k, o.vary, opts)
	}
	o.stored = true
	rt.stats.add(cStored, 1)
	rt.stats.add(cBytesStored, int64(len(value)))
	return true
}

// storeTTL is how long the store keeps e: its lifetime, and for an entry
// the origin can revalidate (an ETag or a Last-Modified) one more
// freshness lifetime (at most MaxTTL), during which a fill asks the
// origin whether it changed instead of fetching it again.
func (rt *route) storeTTL(e *storage.Entry) time.Duration {
	ttl := e.Lifetime()
	if revalidatable(e) {
		keep := e.Fresh
		if rt.policy.Standards {
			// An entry that is never fresh (no-cache, or no lifetime)
			// is stored for its validators alone.
			keep = max(keep, revalidateKeep)
		}
		ttl += min(keep, rt.policy.MaxTTL)
	}
	return ttl
}

// revalidateKeep is the least time a revalidatable entry of a route in
// standards mode is kept past its lifetime, for its validators.
const revalidateKeep = time.Hour

// callOrigin runs h and returns what it panicked with, if it did.
func callOrigin(rt *route, h http.Handler, rec *recorder, r *http.Request) (panicVal any) {
	defer func() {
		if v := recover(); v != nil {
			panicVal = v
			if v != http.ErrAbortHandler {
				rt.cache.log.Error("readthrough: origin panicked", "route", rt.key.Pattern(), "panic", v, "stack", stack())
			}
		}
	}()
	h.ServeHTTP(rec, r)
	return nil
}

// stack is the calling goroutine's stack, for the log of a panic.
func stack() string { return string(debug.Stack()) }
