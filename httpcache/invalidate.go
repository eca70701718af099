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
	"github.com/readthrough/readthrough/storage"
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
	cache   *Cache
	pattern string
	params  []string // the write pattern's path parameters
	purges  []Purge
	stats   *counters // shared by the write routes declared with pattern
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
// the route it purges. Writes returns an error for a malformed pattern
// or a purge that cannot work.
func (c *Cache) Writes(pattern string, purges ...Purge) (func(http.Handler) http.Handler, error) {
	params, err := keying.ParamNames(pattern)
	if err != nil {
		return nil, err
	}
	if len(purges) == 0 {
		purges = []Purge{PurgeTarget()}
	}
	wr := &writeRoute{cache: c, pattern: pattern, params: params, purges: purges}
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
		if !slices.Contains(wr.params, name) {
			return fmt.Errorf("httpcache: write route %q purges route %q, whose bucket parameter %q it lacks; use PurgeBuckets",
				wr.pattern, p.route, name)
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
				errs = append(errs, fmt.Errorf("httpcache: write route %q purges %q, which is no declared cached route", wr.pattern, p.route))
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
	routed := r.Pattern == wr.pattern
	if !routed {
		wr.cache.logMismatch(r, wr.pattern)
	}
	iw := &invalidatingWriter{ResponseWriter: w, onSuccess: func(status int, header http.Header) {
		wr.invalidate(r, header, routed)
	}}
	h.next.ServeHTTP(iw, r)
	iw.finish()
}

// invalidate runs wr's purges for the write r, whose response has header.
// When r was not routed by wr's pattern its path values cannot be
// trusted: route purges then take whole routes.
func (wr *writeRoute) invalidate(r *http.Request, header http.Header, routed bool) {
	c := wr.cache
	for _, p := range wr.purges {
		switch {
		case p.target:
			var own []string
			if routed {
				own = c.ownBuckets(r, wr.pattern)
			}
			c.purgeTarget(r, header, wr.stats, own...)
		case p.tags != nil:
			for _, tag := range p.tags(r) {
				c.invalidateWith(r, wr.stats, "tag "+tag, func(ctx context.Context, pu storage.Purger) (int64, error) {
					return c.purgeTag(ctx, pu, tag)
				})
			}
		default:
			c.mu.Lock()
			rt := c.routes[p.route]
			c.mu.Unlock()
			if rt == nil {
				c.invalidationFailed(r, wr.stats, "route "+p.route, fmt.Errorf("%w %q", ErrUnknownRoute, p.route))
				continue
			}
			if !routed && len(rt.key.BucketParams()) > 0 {
				// r's path values cannot be trusted: the whole route.
				prefix := rt.key.BucketPrefix()
				c.invalidateWith(r, wr.stats, "route "+p.route, func(ctx context.Context, pu storage.Purger) (int64, error) {
					return c.purgePrefix(ctx, pu, prefix)
				})
				continue
			}
			for _, bucket := range wr.buckets(r, p, rt) {
				c.invalidateWith(r, wr.stats, "bucket "+bucket, func(ctx context.Context, pu storage.Purger) (int64, error) {
					return c.purgeBucket(ctx, pu, bucket)
				})
			}
		}
	}
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
// path of the write pattern (with any method, on the same host), computed
// from the path values the router gave the write r. Those are the values
// its reads are keyed by, which resolving r's URL again may not give:
// ServeMux unescapes an encoded slash in a segment ("docs%2Freadme" is
// one segment) that a match of the decoded path would split.
func (c *Cache) ownBuckets(r *http.Request, pattern string) []string {
	host, path := patternTarget(pattern)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, rt := range c.routes {
		if h, p := patternTarget(rt.key.Pattern()); p == path && strings.EqualFold(h, host) {
			out = append(out, rt.key.Bucket(r))
		}
	}
	return out
}

// patternTarget returns the host and the path of a route pattern, without
// its method.
func patternTarget(pattern string) (host, path string) {
	i := strings.IndexByte(pattern, '/')
	if i < 0 {
		return "", pattern
	}
	head := strings.TrimSpace(pattern[:i])
	if _, h, ok := strings.Cut(head, " "); ok {
		head = strings.TrimSpace(h)
	} else if strings.Trim(head, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" {
		head = "" // a method alone, as keying reads it
	}
	return head, pattern[i:]
}

// purgeTarget purges the bucket of the cached route a GET of r's URL
// falls under (own, when the caller knows them), and those of the
// same-origin URLs that header names in Location and Content-Location
// (RFC 9111 section 4.4). Under http.StripPrefix those name the URL the
// client sees: the prefix stripped from r is stripped from them, so that
// they resolve against the patterns the inner router routes by.
func (c *Cache) purgeTarget(r *http.Request, header http.Header, st *counters, own ...string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
	var targets []string
	if len(own) == 0 {
		targets = append(targets, base.String())
	}
	for _, bucket := range own {
		c.invalidateWith(r, st, "bucket "+bucket, func(ctx context.Context, pu storage.Purger) (int64, error) {
			return c.purgeBucket(ctx, pu, bucket)
		})
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
		c.invalidateWith(r, st, "bucket "+k.Bucket, func(ctx context.Context, pu storage.Purger) (int64, error) {
			return c.purgeBucket(ctx, pu, k.Bucket)
		})
	}
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

// invalidateWith runs one purge of a write, within the store timeout,
// counting and logging what fails.
func (c *Cache) invalidateWith(r *http.Request, st *counters, what string, purge func(context.Context, storage.Purger) (int64, error)) {
	pu, err := c.purger()
	if err != nil {
		c.invalidationFailed(r, st, what, err)
		return
	}
	if !c.breaker.allow(time.Now()) {
		c.invalidationFailed(r, st, what, errors.New("httpcache: the store's circuit is open"))
		return
	}
	ctx, cancel := c.storeCtx(context.WithoutCancel(r.Context()))
	n, err := purge(ctx, pu)
	cancel()
	c.observe(err)
	if err != nil {
		c.invalidationFailed(r, st, what, err)
		return
	}
	st.add(cInvalidations, 1)
	st.add(cInvalidated, n)
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

// invalidatingWriter runs a write's purges (onSuccess) when its handler
// answers with a final status under 400: before any of the answer can
// reach the client, and after the handler has committed the write.
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
	onSuccess func(status int, header http.Header)
	status    int  // the final status; 0 until written
	written   int  // body bytes written
	purged    bool // onSuccess ran while the handler ran
}

// sendThreshold is the most body bytes a handler can write before
// net/http may send the response's head: its buffer before chunking
// (2048 bytes; HTTP/2's is larger).
const sendThreshold = 2048

var _ http.Flusher = (*invalidatingWriter)(nil)

// sending runs the purges, once, before the answer goes out.
func (iw *invalidatingWriter) sending() {
	if iw.status == 0 {
		iw.status = http.StatusOK
	}
	if !iw.purged {
		iw.purged = true
		if iw.status < 400 {
			iw.onSuccess(iw.status, iw.ResponseWriter.Header())
		}
	}
}

// finish runs the purges when the handler has returned: a handler that
// wrote no status answered 200.
func (iw *invalidatingWriter) finish() {
	if iw.status == 0 {
		iw.status = http.StatusOK
	}
	if iw.status < 400 {
		iw.onSuccess(iw.status, iw.ResponseWriter.Header())
	}
}

func (iw *invalidatingWriter) WriteHeader(status int) {
	if iw.status == 0 && status >= 200 {
		iw.status = status
	}
	iw.ResponseWriter.WriteHeader(status)
}

func (iw *invalidatingWriter) Write(p []byte) (int, error) {
	if iw.status == 0 {
		iw.status = http.StatusOK
	}
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
