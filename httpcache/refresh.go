package httpcache

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"slices"
	"sync"
	"time"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// refreshDue reports whether a fresh hit should schedule a background
// refresh: past the policy's fixed refresh point, or chosen by the XFetch
// rule, which refreshes early with a probability that grows as expiry nears
// and as the origin gets slower, so instances spread their refreshes
// without coordinating.
func (rt *route) refreshDue(e *storage.Entry, now time.Time) bool {
	p := &rt.policy
	switch {
	case p.RefreshAhead > 0:
		return now.Sub(e.Stored) >= time.Duration(p.RefreshAhead*float64(e.Fresh))
	case p.XFetchBeta > 0:
		return xfetch(now, e.FreshUntil(), e.OriginTime, p.XFetchBeta, rand.Float64())
	}
	return false
}

// xfetch is the XFetch test of Vattani, Chierichetti and Lowenstein
// ("Optimal Probabilistic Cache Stampede Prevention", VLDB 2015):
// refresh when now - delta*beta*ln(u) >= expiry, for u uniform in (0, 1].
// u is passed in so tests can check the distribution.
func xfetch(now, expiry time.Time, delta time.Duration, beta, u float64) bool {
	u = 1 - u // rand.Float64 is in [0, 1); ln needs (0, 1]
	early := time.Duration(-float64(delta) * beta * math.Log(u))
	return !now.Add(early).Before(expiry)
}

// scheduleRefresh refreshes k in the background, on the request
// refreshRequest derives from r. Only one refresh per key runs in a
// process, and across processes the fill lock decides; when the worker
// pool is full the refresh is dropped and counted. It returns what became
// of the refresh.
//
// e is the entry refreshed: in standards mode the refresh also carries
// the request headers e varies on, which are keyed (vary.go).
func (rt *route) scheduleRefresh(r *http.Request, k keying.Key, e *storage.Entry, next http.Handler) startResult {
	fk := k.Bucket + "\x00" + k.Field
	var vary []string
	if rt.policy.Standards {
		vary, _ = rt.unkeyedVary(e.Header)
	}
	var req *http.Request
	started := rt.cache.refresh.start(fk, func() {
		rt.refreshNow(req, k, next)
	}, func() {
		req = rt.refreshRequest(r, vary...)
	})
	if started == startFull || started == startClosed {
		rt.stats.add(cRefreshDropped, 1)
	}
	return started
}

// refreshRequest returns the request a background refresh triggered by r
// sends the handler. No client waits for a refresh, and its response
// replaces the entry every client of the key is served, so it carries
// only what the entry is keyed on: the method (GET), the path and path
// values, the kept query parameters, the host, the scheme, and the
// request headers the route varies on, whose values are the same for
// every request that hits the entry; plus the headers the policy forwards
// (ForwardHeaders, for tracing ids and the like). Nothing else of the
// triggering client reaches the handler: no other header (a
// X-Forwarded-Host it sent would otherwise end up in everyone's entry), no
// body, no remote address, no client certificate. The request keeps the
// context values of r (a router's parameters, say), detached from its
// cancellation.
//
// vary names the unkeyed request headers a standards-mode entry varies
// on, which are keyed by its secondary key and passed on as well.
func (rt *route) refreshRequest(r *http.Request, vary ...string) *http.Request {
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.Method = http.MethodGet
	req.Header = make(http.Header, len(rt.key.Vary())+len(rt.policy.ForwardHeaders)+len(vary))
	for _, name := range slices.Concat(rt.key.Vary(), vary) {
		if v := r.Header[name]; v != nil {
			req.Header[name] = slices.Clone(v)
		}
	}
	for _, name := range rt.policy.ForwardHeaders {
		name = textproto.CanonicalMIMEHeaderKey(name)
		if v := r.Header[name]; v != nil {
			req.Header[name] = slices.Clone(v)
		}
	}
	req.URL.RawQuery = rt.key.KeptQuery(r)
	req.URL.ForceQuery = false
	req.URL.Fragment, req.URL.RawFragment = "", ""
	req.RequestURI = ""
	if req.URL.RawQuery != "" {
		req.RequestURI = keying.RequestTarget(r) + "?" + req.URL.RawQuery
	} else {
		req.RequestURI = keying.RequestTarget(r)
	}
	req.Body = http.NoBody
	req.GetBody = nil
	req.ContentLength = 0
	req.TransferEncoding = nil
	req.Close = false
	req.Trailer = nil
	req.Form, req.PostForm, req.MultipartForm = nil, nil, nil
	req.RemoteAddr = ""
	if r.TLS != nil {
		// The scheme is keyed; the client's certificates and the server
		// name it asked for are not.
		req.TLS = &tls.ConnectionState{
			Version:            r.TLS.Version,
			HandshakeComplete:  r.TLS.HandshakeComplete,
			CipherSuite:        r.TLS.CipherSuite,
			NegotiatedProtocol: r.TLS.NegotiatedProtocol,
		}
	}
	return req
}

// refreshNow runs one background refresh: under the fill lock when there
// is a Locker (skipped when another caller holds it, or refreshed the
// entry before this one took it), through the same origin call as a fill,
// with no client.
func (rt *route) refreshNow(r *http.Request, k keying.Key, next http.Handler) {
	r, sp := rt.traceRequest(r, OpRefresh) // a new trace, linked to the request's (see Tracer)
	ctx := r.Context()
	call := &fillCall{r: r, k: k, next: next, sh: &sharing{rt: rt, k: k}, span: sp}
	defer call.endSpan()
	if rt.cache.locker != nil {
		lock, err := rt.tryLock(ctx, k)
		switch {
		case errors.Is(err, storage.ErrLockHeld):
			rt.stats.add(cRefreshSkipped, 1)
			call.outcome = OutcomeSkipped
			return // someone else refreshes it
		case err != nil:
			rt.reportError(ctx, "take refresh lock", err)
			call.outcome = OutcomeError
			return
		}
		notDue := func(e *storage.Entry) bool { return isFresh(e) && !rt.refreshDue(e, time.Now()) }
		e, done := rt.afterLock(ctx, call.sh, lock, r.Header, notDue)
		if done {
			rt.stats.add(cRefreshSkipped, 1)
			call.outcome = OutcomeSkipped
			return
		}
		call.stale = e                                         // revalidated with its validators; no client to serve it to
		defer call.sh.publish(ctx, storage.Fill{Failed: true}) // unless published before
	}
	o := rt.originFill(call)
	switch {
	case o.stored:
		rt.stats.add(cRefreshed, 1)
	case o.entry != nil:
		rt.stats.add(cRefreshFailed, 1) // not stored: a purge race, a full bucket or a store error
	default:
		rt.stats.add(cRefreshFailed, 1)
		reason := "not cacheable"
		if o.panicVal != nil {
			reason = "panic"
		}
		rt.cache.log.Warn("readthrough: background refresh kept the old entry", "route", rt.key.Pattern(), "field", k.FieldHex(), "reason", reason)
	}
}

type startResult int

const (
	started startResult = iota
	startDuplicate
	startFull
	startClosed
)

// refresher is the bounded pool of background refreshes of one Cache.
type refresher struct {
	sem      chan struct{}
	mu       sync.Mutex
	closed   bool
	wg       sync.WaitGroup
	inflight map[string]struct{}
	// recoverTask is deferred in every refresh goroutine: a panic outside
	// the origin (which the fill recovers itself), in compression say, is
	// reported, not a crash.
	recoverTask func(what string)
}

func newRefresher(workers int, recoverTask func(what string)) *refresher {
	return &refresher{sem: make(chan struct{}, workers), inflight: map[string]struct{}{}, recoverTask: recoverTask}
}

// start runs fn in the pool unless key is already being refreshed, the
// pool is full, or the refresher is closed. prepare runs first, on the
// caller's goroutine, only when fn will run.
func (rf *refresher) start(key string, fn, prepare func()) startResult {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if rf.closed {
		return startClosed
	}
	if _, ok := rf.inflight[key]; ok {
		return startDuplicate
	}
	select {
	case rf.sem <- struct{}{}:
	default:
		return startFull
	}
	rf.inflight[key] = struct{}{}
	rf.wg.Add(1)
	prepare()
	go func() {
		defer func() {
			rf.mu.Lock()
			delete(rf.inflight, key)
			rf.mu.Unlock()
			<-rf.sem
			rf.wg.Done()
		}()
		defer rf.recoverTask("background refresh")
		fn()
	}()
	return started
}

// close stops new refreshes and waits for running ones until ctx ends.
func (rf *refresher) close(ctx context.Context) error {
	rf.mu.Lock()
	rf.closed = true
	rf.mu.Unlock()
	done := make(chan struct{})
	go func() { rf.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
