// Package otelcache reports a readthrough cache to OpenTelemetry: its
// decisions as spans, and its counters as metrics. It lives in its own
// package so that services which do not use OpenTelemetry never import
// it; package httpcache defines the tracing hook ([httpcache.Tracer]) in
// plain Go types, and this package adapts it.
//
// # Spans
//
// [NewTracer] returns the tracer to pass to [httpcache.WithTracer]. The
// cache then starts one span per decision, as a child of the span in the
// request's context (started by an outer middleware such as otelhttp's
// handler):
//
//   - readthrough.lookup: a request on a cached route, the store read and,
//     for a hit, serving the entry; outcome hit, stale, miss or bypass
//     (readthrough.reason says why); readthrough.refresh says whether a
//     hit scheduled a background refresh (scheduled, running, dropped).
//   - readthrough.fill: a miss's fill, after the lookup under the same
//     parent: the fill lock, the origin call (the handler's own spans nest
//     under it) and the store write; outcome stored, refused (not
//     cacheable), not-stored (readthrough.reason: purge-race, bucket-full,
//     store-error), collapsed, stale, hit (filled by another caller
//     before the lock was taken), failed or canceled; with
//     readthrough.stored_bytes and readthrough.origin_status.
//   - readthrough.collapse: a wait for another request's fill, in this
//     process (readthrough.wait=flight) or another instance's, which holds
//     the fill lock (readthrough.wait=lock); readthrough.lock_wait_ns is
//     how long it waited; outcome collapsed, stale, timeout, failed,
//     refused or canceled.
//   - readthrough.refresh: a background refresh. It outlives the request
//     whose hit triggered it, so it is the root of a trace of its own,
//     with a link to that request's span; the handler's spans for the
//     refresh nest under it. Outcome as a fill's, or skipped.
//   - readthrough.purge: a purge from code, the admin endpoint or a write
//     route, under that request's span; readthrough.purge says what
//     (bucket, route, tag, all), readthrough.purged how many buckets.
//
// Every span carries readthrough.route (the declared route pattern, when
// there is one) and readthrough.outcome. Spans that end with the outcome
// failed or error have the status Error.
//
// Store calls carry the span's context too, on the hit path as
// elsewhere, so a go-redis client instrumented with its own tracing hooks
// (redisotel) reports its commands under the cache's spans.
//
// # Metrics
//
// [RegisterMetrics] exports the counters of [httpcache.Counters] as
// observable counters, the same ones package promcache exports to
// Prometheus: readthrough.<name> with the attribute route, and
// readthrough.bypassed with route and reason, as promcache labels them.
package otelcache
