package httpcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/readthrough/readthrough/keying"
)

// Invalidation by writes (RFC 9111 section 4.4): after a non-error
// response to an unsafe method, what the write changed is purged before
// the response reaches the client, through the same purges (and the same
// fence against fills in flight) as the admin API, so every instance sees
// it at once.

// A Purge names what a write route invalidates; see [Cache.Writes].
type Purge struct {
	route   string                                    // a cached route's pattern
	buckets func(r *http.Request) []map[string]string // with route: buckets by parameters; nil: the write's path values
	tags    func(r *http.Request) []string
	target  bool // the write's URL, and the same-origin Location and Content-Location
}

// PurgeRoute purges, after a write, the bucket of the cached route
// declared with pattern whose bucket parameters have the values of the
// write request's path parameters of the same names: everything cached
// about the item the write changed. A route without bucket parameters
// has one bucket, purged whole.
func PurgeRoute(pattern string) Purge { return Purge{route: pattern} }

// PurgeBuckets purges, after a write, the buckets of the cached route
// declared with pattern whose bucket parameters have the values that
// params returns for the write request: for a write that changes items
// other than the one it is addressed to.
func PurgeBuckets(pattern string, params func(r *http.Request) []map[string]string) Purge {
	return Purge{route: pattern, buckets: params}
}

// PurgeTags purges, after a write, every bucket stored with the tags that
// tags returns for the write request (see policy.Policy.Tags and the
// Surrogate-Key response header).
func PurgeTags(tags func(r *http.Request) []string) Purge { return Purge{tags: tags} }

// PurgeTarget purges, after a write, the bucket a GET of the write's own
// URL is cached in, and those of the URLs its response names in Location
// and Content-Location when they have the request's origin, as RFC 9111
// section 4.4 asks of a cache.
func PurgeTarget() Purge { return Purge{target: true} }

// unsafe reports whether a request method may change the resource (RFC
// 9110 section 9.2.1): every method but GET, HEAD, OPTIONS and TRACE,
// unknown ones included.
func unsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, "":
		return false
	}
	return true
}

// writeRoute is one declared write route.
type writeRoute struct {
	cache  *Cache
	pat    *keying.Pattern
	purges []Purge
	stats  *counters // shared by the write routes declared with pattern
}

// Writes returns the middleware of a write route declared with pattern
// (the whole pattern the request is routed by, as for [Cache.Route]):
// after its handler answers a request of an unsafe method (anything but
// GET, HEAD, OPTIONS and TRACE, unknown methods included) with a status
// under 400, and before that answer reaches the client, it purges what
// purges name, on every instance at once. A fill that read the old data
// and stores after the purge is refused by the purge's fence, so the old
// body never comes back. Without purges, it purges the write's target
// ([PurgeTarget]). A failed write (4xx, 5xx) purges nothing. When the
// store fails, the write still succeeds: the failure is counted
// (Stats.InvalidationErrors) and logged, and the entries expire by their
// TTL.
//
// In chi: r.With(cache.MustWrites("/items/{id}", httpcache.PurgeRoute("/items/{id}"))).Put("/items/{id}", h).
//
// A [PurgeRoute] or [PurgeBuckets] pattern must name a cached route,
// declared before or after (checked then and by [Cache.VerifyRoutes]);
// PurgeRoute needs the write pattern to have every bucket parameter of
// the route it purges. Writes returns an error for a malformed pattern,
// a purge that cannot work, or a store that cannot purge
// ([ErrCannotPurge]).
//
// A bucket purge is one store command, within the store timeout; a route
// or tag purge walks the keyspace and may take up to 5 seconds, which
// the write's answer waits for. Their slowness does not count
// against the store's health.
func (c *Cache) Writes(pattern string, purges ...Purge) (func(http.Handler) http.Handler, error) {
	pat, err := keying.ParsePattern(pattern)
	if err != nil {
		return nil, err
	}
	if _, err := c.purger(); err != nil {
		return nil, fmt.Errorf("httpcache: write route %q: %w", pattern, err)
	}
	if len(purges) == 0 {
		purges = []Purge{PurgeTarget()}
	}
	wr := &writeRoute{cache: c, pat: pat, purges: purges}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range purges {
		if p.route == "" && p.tags == nil && !p.target {
			return nil, fmt.Errorf("httpcache: write route %q: an empty Purge", pattern)
		}
		if rt, ok := c.routes[p.route]; ok {
			if err := wr.check(p, rt); err != nil {
				return nil, err
			}
		}
	}
	// One pattern may be declared for several methods (chi patterns
	// have none); they count together.
	if wr.stats = c.writes[pattern]; wr.stats == nil {
		wr.stats = new(counters)
		c.writes[pattern] = wr.stats
	}
	c.writeRoutes = append(c.writeRoutes, wr)
	return func(next http.Handler) http.Handler { return &writeHandler{wr: wr, next: next} }, nil
}

// MustWrites is like [Cache.Writes] but panics on an error, for route
// tables declared at start-up.
func (c *Cache) MustWrites(pattern string, purges ...Purge) func(http.Handler) http.Handler {
	mw, err := c.Writes(pattern, purges...)
	if err != nil {
		panic(err)
	}
	return mw
}

// check reports a purge of wr that cannot work on the cached route rt.
func (wr *writeRoute) check(p Purge, rt *route) error {
	if p.buckets != nil {
		return nil
	}
	for _, name := range rt.key.BucketParams() {
		if !slices.Contains(wr.pat.Params(), name) {
			return fmt.Errorf("httpcache: write route %q purges route %q, whose bucket parameter %q it lacks; use PurgeBuckets",
				wr.pat, p.route, name)
		}
	}
	return nil
}

// verifyWrites reports the purges of write routes that name no declared
// route or cannot work on theirs. c.mu is held.
func (c *Cache) verifyWrites() []error {
	var errs []error
	for _, wr := range c.writeRoutes {
		for _, p := range wr.purges {
			if p.route == "" {
				continue
			}
			rt, ok := c.routes[p.route]
			if !ok {
				errs = append(errs, fmt.Errorf("httpcache: write route %q purges %q, which is no declared cached route", wr.pat, p.route))
				continue
			}
			if err := wr.check(p, rt); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// writeHandler runs a write route's handler and purges after it.
type writeHandler struct {
	wr   *writeRoute
	next http.Handler
}

func (h *writeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !unsafe(r.Method) {
		h.next.ServeHTTP(w, r)
		return
	}
	wr := h.wr
	routed := wr.pat.Routed(r)
	if !routed {
		wr.cache.logMismatch(r, wr.pat.String())
	}
	serveInvalidating(w, func(w http.ResponseWriter) { h.next.ServeHTTP(w, r) }, func(header http.Header) {
		wr.cache.runPurges(r, wr.stats, wr.purgesFor(r, header, routed))
	})
}

// purgeOp is one purge a write makes.
type purgeOp struct {
	kind purgeKind
	arg  string // the bucket, the bucket prefix or the tag
}

type purgeKind int

const (
	purgeOfBucket purgeKind = iota
	purgeOfRoute            // every bucket starting with arg
	purgeOfTag
)

func (op purgeOp) String() string {
	return [...]string{"bucket ", "route ", "tag "}[op.kind] + op.arg
}

// purgesFor returns the purges of wr for the write r, whose response has
// header. When r was not routed by wr's pattern its path values cannot be
// trusted: route purges then take whole routes.
func (wr *writeRoute) purgesFor(r *http.Request, header http.Header, routed bool) []purgeOp {
	c := wr.cache
	var ops []purgeOp
	for _, p := range wr.purges {
		switch {
		case p.target:
			var own []string
			if routed {
				own = c.ownBuckets(r, wr.pat)
			}
			ops = append(ops, c.targetPurges(r, header, wr.stats, own)...)
		case p.tags != nil:
			for _, tag := range p.tags(r) {
				ops = append(ops, purgeOp{purgeOfTag, tag})
			}
		default:
			c.mu.Lock()
			rt := c.routes[p.route]
			c.mu.Unlock()
			switch {
			case rt == nil:
				c.invalidationFailed(r, wr.stats, "route "+p.route, fmt.Errorf("%w %q", ErrUnknownRoute, p.route))
			case !routed && len(rt.key.BucketParams()) > 0:
				ops = append(ops, purgeOp{purgeOfRoute, rt.key.BucketPrefix()})
			default:
				for _, bucket := range wr.buckets(r, p, rt) {
					ops = append(ops, purgeOp{purgeOfBucket, bucket})
				}
			}
		}
	}
	return ops
}

// buckets returns the buckets of route rt that the purge p of the write r
// names.
func (wr *writeRoute) buckets(r *http.Request, p Purge, rt *route) []string {
	if p.buckets == nil {
		return []string{rt.key.Bucket(r)}
	}
	var out []string
	for _, values := range p.buckets(r) {
		b, err := rt.key.BucketFor(values)
		if err != nil {
			wr.cache.invalidationFailed(r, wr.stats, "buckets of "+rt.key.Pattern(), fmt.Errorf("%w: %w", ErrInvalid, err))
			continue
		}
		out = append(out, b)
	}
	return out
}

// ownBuckets returns the buckets of the cached routes declared for the
// host and path of the write pattern pat (with any method), computed from
// the path values the router gave the write r. Those are the values its
// reads are keyed by, which resolving r's URL again may not give:
// ServeMux unescapes an encoded slash in a segment ("docs%2Freadme" is
// one segment) that a match of the decoded path would split.
func (c *Cache) ownBuckets(r *http.Request, pat *keying.Pattern) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, rt := range c.routes {
		if rt.key.Parsed().SameTarget(pat) {
			out = append(out, rt.key.Bucket(r))
		}
	}
	return out
}

// targetPurges returns the purges of the bucket of the cached route a
// GET of r's URL falls under (own, when the caller knows them), and of
// those of the same-origin URLs that header names in Location and
// Content-Location (RFC 9111 section 4.4). Under http.StripPrefix those
// name the URL the client sees: the prefix stripped from r is stripped
// from them, so that they resolve against the patterns the inner router
// routes by.
func (c *Cache) targetPurges(r *http.Request, header http.Header, st *counters, own []string) []purgeOp {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
	var ops []purgeOp
	// The write's URL is resolved even when the write route knows its own
	// buckets: another cached route (one for a host, say) may be the one
	// that serves this URL's reads. Purges are de-duplicated afterwards.
	targets := []string{base.String()}
	for _, bucket := range own {
		ops = append(ops, purgeOp{purgeOfBucket, bucket})
	}
	prefix, client := strippedPrefix(r)
	if client != nil {
		base.Path, base.RawPath = client.Path, client.RawPath
	}
	for _, name := range [...]string{"Location", "Content-Location"} {
		v := headerValue(header, name)
		if v == "" {
			continue
		}
		u, err := base.Parse(v)
		if err != nil || u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) {
			continue // another origin's: not this cache's to invalidate
		}
		if rest, ok := strings.CutPrefix(u.EscapedPath(), prefix); ok && prefix != "" && (rest == "" || rest[0] == '/') {
			if inner, err := url.Parse(rest); err == nil {
				u.Path, u.RawPath = inner.Path, inner.RawPath
			}
		}
		targets = append(targets, u.String())
	}
	for _, target := range targets {
		_, k, err := c.resolve(target, nil)
		if errors.Is(err, ErrNoRoute) {
			continue // not cached here
		}
		if err != nil {
			c.invalidationFailed(r, st, "URL "+target, err)
			continue
		}
		ops = append(ops, purgeOp{purgeOfBucket, k.Bucket})
	}
	return ops
}

// strippedPrefix returns the escaped path prefix that http.StripPrefix
// (or a router's mount) took off r's path, and the path the client sent,
// parsed; "" and nil when nothing was taken off.
func strippedPrefix(r *http.Request) (string, *url.URL) {
	if r.RequestURI == "" || r.RequestURI == "*" {
		return "", nil
	}
	sent, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return "", nil
	}
	full, inner := sent.EscapedPath(), r.URL.EscapedPath()
	if len(full) <= len(inner) || !strings.HasSuffix(full, inner) {
		return "", nil
	}
	return full[:len(full)-len(inner)], sent
}

// bulkPurgeTimeout bounds a write's route or tag purge, which walks the
// keyspace in batches.
const bulkPurgeTimeout = 5 * time.Second

// runPurges runs the purges of the write r, each once, counting and
// logging what fails. A bucket purge is one store command: it runs within
// the store timeout and its outcome feeds the circuit breaker. A route or
// tag purge walks the keyspace: it gets bulkPurgeTimeout, and its
// slowness says nothing of the store's health.
func (c *Cache) runPurges(r *http.Request, st *counters, ops []purgeOp) {
	if len(ops) == 0 {
		return
	}
	pu, err := c.purger()
	if err != nil {
		c.invalidationFailed(r, st, ops[0].String(), err)
		return
	}
	done := make(map[purgeOp]bool, len(ops))
	for _, op := range ops {
		if done[op] {
			continue
		}
		done[op] = true
		// A bucket purge is one store command: it may be the breaker's
		// probe, whose outcome it reports. A bulk purge reports nothing
		// (see above), so it must not take the probe, which would then
		// never be answered: it runs only while the store is healthy.
		if (op.kind == purgeOfBucket && !c.breaker.allow(time.Now())) || (op.kind != purgeOfBucket && !c.storeHealthy()) {
			c.invalidationFailed(r, st, op.String(), errors.New("httpcache: the store's circuit is open"))
			continue
		}
		var n int64
		var err error
		switch op.kind {
		case purgeOfBucket:
			ctx, cancel := c.storeCtx(context.WithoutCancel(r.Context()))
			n, err = c.purgeBucket(ctx, pu, op.arg)
			cancel()
			c.observe(err)
		default:
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), bulkPurgeTimeout)
			if op.kind == purgeOfRoute {
				n, err = c.purgePrefix(ctx, pu, op.arg)
			} else {
				n, err = c.purgeTag(ctx, pu, op.arg)
			}
			cancel()
		}
		if err != nil {
			c.invalidationFailed(r, st, op.String(), err)
			continue
		}
		st.add(cInvalidations, 1)
		st.add(cInvalidated, n)
	}
}

// invalidationFailed counts and logs a purge a write could not make.
func (c *Cache) invalidationFailed(r *http.Request, st *counters, what string, err error) {
	st.add(cInvalidationErrors, 1)
	if suppressed, ok := c.logLimit.allow("invalidation failed", time.Now()); ok {
		c.log.LogAttrs(r.Context(), slog.LevelWarn, "readthrough: a write's invalidation failed: entries it should have purged live until their TTL",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("purge", what),
			slog.Any("err", err), slog.Int64("suppressed", suppressed))
	}
	if c.onError != nil {
		c.onError(r.Context(), fmt.Errorf("httpcache: invalidate %s: %w", what, err))
	}
}

// serveInvalidating lets serve answer a write through an
// invalidatingWriter that runs purge.
func serveInvalidating(w http.ResponseWriter, serve func(http.ResponseWriter), purge func(header http.Header)) {
	iw := &invalidatingWriter{ResponseWriter: w, purge: purge}
	serve(iw)
	iw.finish()
}

// invalidatingWriter runs a write's purges when its handler answers with
// a final status under 400: before any of the answer can reach the
// client, and after the handler has committed the write.
//
// net/http sends nothing before the handler returns unless it flushes or
// writes more than its buffer holds, so a handler with a short answer is
// purged once, when it returns: a handler that writes its answer before
// it commits the write (an encoder's output, then a deferred commit) is
// then purged after the commit, and a read that starts once the answer
// arrived cannot refill the entry with the old data. A handler whose
// answer goes out earlier (a Flush, or more than sendThreshold bytes) is
// purged before it does, and again when it returns.
type invalidatingWriter struct {
	http.ResponseWriter
	purge   func(header http.Header)
	status  int  // the final status; 0 until written
	written int  // body bytes written
	purged  bool // purge ran while the handler ran
}

// sendThreshold is the most body bytes a handler can write before
// net/http may send the response's head: its buffer before chunking
// (2048 bytes; HTTP/2's is larger).
const sendThreshold = 2048

var _ http.Flusher = (*invalidatingWriter)(nil)

// succeeded reports whether the answer is a success; an answer without a
// status is a 200.
func (iw *invalidatingWriter) succeeded() bool {
	if iw.status == 0 {
		iw.status = http.StatusOK
	}
	return iw.status < 400
}

// sending runs the purges, once, before the answer goes out.
func (iw *invalidatingWriter) sending() {
	if !iw.purged && iw.succeeded() {
		iw.purge(iw.ResponseWriter.Header())
	}
	iw.purged = true
}

// finish runs the purges when the handler has returned.
func (iw *invalidatingWriter) finish() {
	if iw.succeeded() {
		iw.purge(iw.ResponseWriter.Header())
	}
}

func (iw *invalidatingWriter) WriteHeader(status int) {
	if iw.status == 0 && status >= 200 {
		iw.status = status
	}
	iw.ResponseWriter.WriteHeader(status)
}

func (iw *invalidatingWriter) Write(p []byte) (int, error) {
	if iw.written += len(p); iw.written > sendThreshold {
		iw.sending()
	}
	return iw.ResponseWriter.Write(p)
}

// Flush sends what was written; a flush before any status is a 200.
func (iw *invalidatingWriter) Flush() {
	iw.sending()
	_ = http.NewResponseController(iw.ResponseWriter).Flush()
}

// Unwrap returns the client's writer for [http.ResponseController].
func (iw *invalidatingWriter) Unwrap() http.ResponseWriter { return iw.ResponseWriter }
