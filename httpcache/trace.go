package httpcache

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// Tracing: the cache reports each of its decisions as a span through a
// [Tracer] set with [WithTracer]. The package defines the hook only, in
// plain Go types, so that it does not depend on a tracing library; package
// otelcache adapts it to OpenTelemetry. With no tracer (the default) the
// field is nil and every hook point is one nil check: no tracer object,
// no span, no allocation.

// Tracer starts the spans of the cache's decisions. Set it with
// [WithTracer]; package otelcache provides one for OpenTelemetry.
//
// Start starts a span for op on the route declared with pattern route
// (empty for a purge of a bucket, a tag or everything) as a child of the span ctx
// carries, and returns a context carrying the new span, which the cache
// passes on to the store calls and the origin call the decision makes, so
// that their own instrumentation (go-redis's, the handler's) nests under
// it. It may return a nil Span, for a span that records nothing (sampled
// out, say): the cache then still uses the returned context, and sets
// nothing on the span.
//
// A span of [OpRefresh] starts on the worker that runs the background
// refresh, after the request that triggered it may have ended; ctx then
// carries that request's context values (its span among them), detached
// from its cancellation. A tracer should start the refresh as the root of
// a trace of its own, linked to the triggering request's span, rather
// than as a child that outlives its parent; otelcache does.
//
// Tracer's methods are called concurrently, on the paths of requests, and
// must be cheap and safe for concurrent use.
type Tracer interface {
	Start(ctx context.Context, op Op, route string) (context.Context, Span)
}

// Span is one decision of the cache, started by [Tracer.Start]. The cache
// sets its attributes on the goroutine that started it, then calls End
// once with what the decision came to. It calls no method after End.
type Span interface {
	// SetInt records an integer attribute.
	SetInt(a Attr, v int64)
	// SetString records a string attribute.
	SetString(a Attr, v string)
	// End ends the span with the decision's outcome.
	End(o Outcome)
}

// Op names a kind of decision; it is the span's name.
type Op string

// The decisions the cache traces.
const (
	// OpLookup is a request on a cached route: the key, the store read
	// and, for a hit, serving the entry. Its outcome is OutcomeHit,
	// OutcomeStale, OutcomeMiss (an OpFill follows, under the same
	// parent) or OutcomeBypass (with AttrReason).
	OpLookup Op = "readthrough.lookup"
	// OpFill is a miss's fill: waiting on a fill already under way
	// (OpCollapse spans), or taking the fill lock, calling the origin
	// and storing its response. The origin's own spans nest under it.
	OpFill Op = "readthrough.fill"
	// OpCollapse is a wait for another request's fill: in this process
	// (AttrWait "flight") or in another instance, which holds the fill
	// lock (AttrWait "lock"). AttrLockWait says how long it waited.
	OpCollapse Op = "readthrough.collapse"
	// OpRefresh is a background refresh; see [Tracer] for its parent.
	OpRefresh Op = "readthrough.refresh"
	// OpPurge is a purge, from code, the admin endpoint or a write
	// route: AttrPurge says what it removed, AttrPurged how many buckets.
	OpPurge Op = "readthrough.purge"
)

// Outcome is what a decision came to; a span ends with it.
type Outcome string

// Outcomes of the traced decisions.
const (
	OutcomeHit       Outcome = "hit"        // a fresh entry served (or found fresh by a fill once it held the lock)
	OutcomeStale     Outcome = "stale"      // a stale entry served (while revalidating, on origin error, or past a wait)
	OutcomeMiss      Outcome = "miss"       // no usable entry: a fill follows
	OutcomeBypass    Outcome = "bypass"     // the request went straight to the origin (AttrReason says why)
	OutcomeCollapsed Outcome = "collapsed"  // answered by another request's fill
	OutcomeStored    Outcome = "stored"     // the origin's response was stored (a 304 included)
	OutcomeRefused   Outcome = "refused"    // the origin's response was not cacheable: not stored, not shared
	OutcomeNotStored Outcome = "not-stored" // cacheable, but the write did not happen (AttrReason: purge-race, bucket-full, store-error)
	OutcomeFailed    Outcome = "failed"     // the origin (or the fill waited for) failed: no whole response
	OutcomeTimeout   Outcome = "timeout"    // a wait ran out
	OutcomeCanceled  Outcome = "canceled"   // the client went away
	OutcomeSkipped   Outcome = "skipped"    // a refresh found nothing to do, or another caller doing it
	OutcomeError     Outcome = "error"      // a store error stopped the decision (a purge, a refresh's lock)
	OutcomePurged    Outcome = "purged"     // a purge went through
)

// Attr names an attribute of a [Span].
type Attr int

// The attributes the cache sets.
const (
	// AttrReason (string) qualifies an outcome: the bypass reason (see
	// [BypassReasons]), or why a cacheable response was not stored.
	AttrReason Attr = iota
	// AttrBodyBytes (int) is the stored body's size of the entry a hit
	// served.
	AttrBodyBytes
	// AttrStoredBytes (int) is the size of the value a fill or refresh
	// wrote to the store.
	AttrStoredBytes
	// AttrBucketFields (int) is the number of fields of the bucket, when
	// known without another store call: when a write found the bucket
	// full, it is the policy's MaxFields.
	AttrBucketFields
	// AttrLockWait (int, nanoseconds) is how long a collapsed request
	// waited for another's fill.
	AttrLockWait
	// AttrWait (string) is what a collapsed request waited on: "flight"
	// (a fill in this process) or "lock" (another instance's).
	AttrWait
	// AttrPurge (string) is what a purge removed: "bucket", "route"
	// (every bucket under a prefix), "tag" or "all".
	AttrPurge
	// AttrPurgeTarget (string) is the bucket, bucket prefix or tag purged:
	// one value per user, say, so never a metric label.
	AttrPurgeTarget
	// AttrPurged (int) is the number of buckets a purge removed.
	AttrPurged
	// AttrOriginStatus (int) is the status code the origin answered a
	// fill or refresh with.
	AttrOriginStatus
	// AttrRefresh (string) is what became of the background refresh a
	// hit asked for: "scheduled", "running" (one for the key already
	// runs) or "dropped" (the worker pool was full, or the cache closed).
	AttrRefresh
	// AttrError (string) is the text of the error that ended a decision
	// with OutcomeError (AttrReason then says "store-error"). Like
	// AttrPurgeTarget its values are unbounded: never a metric label.
	AttrError
	numAttrs
)

var attrNames = [numAttrs]string{
	AttrReason:       "readthrough.reason",
	AttrBodyBytes:    "readthrough.body_bytes",
	AttrStoredBytes:  "readthrough.stored_bytes",
	AttrBucketFields: "readthrough.bucket_fields",
	AttrLockWait:     "readthrough.lock_wait_ns",
	AttrWait:         "readthrough.wait",
	AttrPurge:        "readthrough.purge",
	AttrPurgeTarget:  "readthrough.purge_target",
	AttrPurged:       "readthrough.purged",
	AttrOriginStatus: "readthrough.origin_status",
	AttrRefresh:      "readthrough.refresh",
	AttrError:        "readthrough.error",
}

// String returns the attribute's name, such as "readthrough.stored_bytes".
func (a Attr) String() string {
	if a < 0 || a >= numAttrs {
		return "readthrough.unknown"
	}
	return attrNames[a]
}

// Attrs returns every attribute the cache sets, for a tracer that
// prepares their keys once.
func Attrs() []Attr {
	out := make([]Attr, numAttrs)
	for i := range out {
		out[i] = Attr(i)
	}
	return out
}

// WithTracer sets the tracer the cache reports its decisions to: a span
// per lookup, fill, collapse wait, background refresh and purge, each a
// child of the span in the request's context. Default (and nil): none,
// at no cost on any path.
func WithTracer(t Tracer) Option {
	return optionFunc(func(c *Cache) { c.tracer = t })
}

// startSpan starts a span of op on rt's route under ctx; with no tracer it
// returns ctx and a nil span.
func (rt *route) startSpan(ctx context.Context, op Op) (context.Context, Span) {
	if t := rt.cache.tracer; t != nil {
		return t.Start(ctx, op, rt.key.Pattern())
	}
	return ctx, nil
}

// traceRequest is startSpan for a decision that passes r on (to the
// origin, the store): it returns r carrying the span's context.
func (rt *route) traceRequest(r *http.Request, op Op) (*http.Request, Span) {
	t := rt.cache.tracer
	if t == nil {
		return r, nil
	}
	ctx, sp := t.Start(r.Context(), op, rt.key.Pattern())
	return r.WithContext(ctx), sp
}

// endSpan ends sp, if there is one, with o.
func endSpan(sp Span, o Outcome) {
	if sp != nil {
		sp.End(o)
	}
}

// bypassed ends the lookup span sp of a request that bypasses the cache.
func bypassed(sp Span, reason bypass) {
	if sp != nil {
		sp.SetString(AttrReason, bypassDefs[reason].name)
		sp.End(OutcomeBypass)
	}
}

// refreshing records on the lookup span sp what became of the refresh a
// hit scheduled.
func refreshing(sp Span, res startResult) {
	if sp != nil {
		sp.SetString(AttrRefresh, [...]string{started: "scheduled", startDuplicate: "running", startFull: "dropped", startClosed: "dropped"}[res])
	}
}

// served ends the lookup span sp of a hit that served e.
func served(sp Span, e *storage.Entry, o Outcome) {
	if sp != nil {
		sp.SetInt(AttrBodyBytes, int64(len(e.Body)))
		sp.End(o)
	}
}

// endSpan ends the span of a fill or a refresh, with the outcome recorded
// in call.
func (call *fillCall) endSpan() {
	if call.span != nil {
		call.span.End(call.outcome)
	}
}

// traceOrigin records on call what its origin call o came to.
func (rt *route) traceOrigin(call *fillCall, o *originResult) {
	call.outcome = o.traceOutcome()
	sp := call.span
	if sp == nil {
		return
	}
	if o.rec.status != 0 {
		sp.SetInt(AttrOriginStatus, int64(o.rec.status))
	}
	switch {
	case o.stored:
		sp.SetInt(AttrStoredBytes, int64(o.storedBytes))
	case errors.Is(o.storeErr, storage.ErrPurged):
		sp.SetString(AttrReason, "purge-race")
	case errors.Is(o.storeErr, storage.ErrBucketFull):
		sp.SetString(AttrReason, "bucket-full")
		sp.SetInt(AttrBucketFields, int64(rt.policy.MaxFields))
	case o.storeErr != nil:
		sp.SetString(AttrReason, "store-error")
	}
}

// traceOutcome is the outcome of the decision that ran the origin call o.
func (o *originResult) traceOutcome() Outcome {
	switch {
	case o.servedStale:
		return OutcomeStale
	case o.stored:
		return OutcomeStored
	case o.private || o.entry == nil && o.whole:
		return OutcomeRefused
	case o.entry != nil:
		return OutcomeNotStored // no write, or a failed one: see storeErr
	}
	return OutcomeFailed
}

// waitSpan is the span of a collapsed request's wait, if traced.
type waitSpan struct {
	sp    Span
	start time.Time
}

// startWait starts the span of a wait on what ("flight" or "lock") under
// ctx.
func (rt *route) startWait(ctx context.Context, what string) waitSpan {
	_, sp := rt.startSpan(ctx, OpCollapse)
	if sp == nil {
		return waitSpan{}
	}
	sp.SetString(AttrWait, what)
	return waitSpan{sp: sp, start: time.Now()}
}

// end ends the wait with o, recording how long it took.
func (ws waitSpan) end(o Outcome) {
	if ws.sp != nil {
		ws.sp.SetInt(AttrLockWait, int64(time.Since(ws.start)))
		ws.sp.End(o)
	}
}

// flightOutcome is what a wait on an in-process flight came to.
func flightOutcome(ctx context.Context, res flightResult, ok bool) Outcome {
	switch {
	case !ok && ctx.Err() != nil:
		return OutcomeCanceled
	case !ok:
		return OutcomeTimeout
	case res.outcome == outcomeShared && res.status != "":
		return OutcomeStale
	case res.outcome == outcomeShared:
		return OutcomeCollapsed
	case res.outcome == outcomeNotShared:
		return OutcomeRefused
	}
	return OutcomeFailed
}

// remoteOutcome is what a wait on another instance's fill came to.
func remoteOutcome(ctx context.Context, got *storage.Entry, fill storage.Fill, ok bool) Outcome {
	switch {
	case got != nil:
		return OutcomeCollapsed
	case ctx.Err() != nil:
		return OutcomeCanceled
	case !ok:
		return OutcomeTimeout
	case fill.Failed:
		return OutcomeFailed
	}
	return OutcomeRefused
}

// purgeSpan starts the span of a purge of kind ("bucket", "route", "tag",
// "all") of target under ctx; with no tracer it returns ctx and nil.
func (c *Cache) purgeSpan(ctx context.Context, kind, target string) (context.Context, Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	route := ""
	if kind == "route" {
		route = c.routeByPrefix(target)
	}
	ctx, sp := c.tracer.Start(ctx, OpPurge, route)
	if sp != nil {
		sp.SetString(AttrPurge, kind)
		if target != "" {
			sp.SetString(AttrPurgeTarget, target)
		}
	}
	return ctx, sp
}

// endPurge ends the purge span sp with its count or error.
func endPurge(sp Span, n int64, err error) {
	if sp == nil {
		return
	}
	sp.SetInt(AttrPurged, n)
	if err != nil {
		sp.SetString(AttrReason, "store-error") // one of a few words, as everywhere
		sp.SetString(AttrError, err.Error())
		sp.End(OutcomeError)
		return
	}
	sp.End(OutcomePurged)
}

// routeByPrefix returns the pattern of the declared route whose buckets
// start with prefix, or "".
func (c *Cache) routeByPrefix(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pattern, rt := range c.routes {
		if rt.key.BucketPrefix() == prefix {
			return pattern
		}
	}
	return ""
}
