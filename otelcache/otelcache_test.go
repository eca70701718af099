package otelcache_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/otelcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

const usersRoute = "GET /users/{id}"

// tracing is an OpenTelemetry SDK that keeps the spans it ends in memory
// and counts those it starts, by name.
type tracing struct {
	exp *tracetest.InMemoryExporter
	tp  *sdktrace.TracerProvider

	mu      sync.Mutex
	started map[string]int
	changed chan struct{}
}

func newTracing(t testing.TB) *tracing {
	tr := &tracing{exp: tracetest.NewInMemoryExporter(), started: map[string]int{}, changed: make(chan struct{})}
	tr.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tr.exp), sdktrace.WithSpanProcessor(tr))
	t.Cleanup(func() { tr.tp.Shutdown(context.Background()) })
	return tr
}

// OnStart implements sdktrace.SpanProcessor: it counts the span.
func (tr *tracing) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.started[s.Name()]++
	close(tr.changed)
	tr.changed = make(chan struct{})
}

func (tr *tracing) OnEnd(sdktrace.ReadOnlySpan)      {}
func (tr *tracing) Shutdown(context.Context) error   { return nil }
func (tr *tracing) ForceFlush(context.Context) error { return nil }

// awaitStarted waits until n spans named name have started.
func (tr *tracing) awaitStarted(t testing.TB, name string, n int) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		tr.mu.Lock()
		got, changed := tr.started[name], tr.changed
		tr.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("%d %s spans started, want %d", got, name, n)
		}
	}
}

// inTrace returns the ended spans of trace id named name.
func (tr *tracing) inTrace(id trace.TraceID, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr.exp.GetSpans() {
		if s.SpanContext.TraceID() == id && s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the one ended span of trace id named name.
func (tr *tracing) one(t testing.TB, id trace.TraceID, name string) tracetest.SpanStub {
	t.Helper()
	spans := tr.inTrace(id, name)
	if len(spans) != 1 {
		t.Fatalf("%d %s spans in trace %s, want 1", len(spans), name, id)
	}
	return spans[0]
}

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// checkSpan checks that s is a child of parent and carries the route and
// outcome, and the attributes of want ("*" for any value).
func checkSpan(t testing.TB, s tracetest.SpanStub, parent trace.SpanContext, outcome httpcache.Outcome, want map[httpcache.Attr]string) {
	t.Helper()
	if s.Parent.SpanID() != parent.SpanID() || s.SpanContext.TraceID() != parent.TraceID() {
		t.Errorf("%s: parent %s, want %s", s.Name, s.Parent.SpanID(), parent.SpanID())
	}
	if s.SpanKind != trace.SpanKindInternal {
		t.Errorf("%s: kind %s", s.Name, s.SpanKind)
	}
	if v, _ := attr(s, string(otelcache.OutcomeKey)); v.AsString() != string(outcome) {
		t.Errorf("%s: outcome %q, want %q", s.Name, v.AsString(), outcome)
	}
	if s.Name != string(httpcache.OpPurge) {
		if v, _ := attr(s, string(otelcache.RouteKey)); v.AsString() != usersRoute {
			t.Errorf("%s: route %q", s.Name, v.AsString())
		}
	}
	for a, w := range want {
		v, ok := attr(s, a.String())
		switch {
		case !ok:
			t.Errorf("%s: no %s", s.Name, a)
		case w != "*" && v.String() != w:
			t.Errorf("%s: %s = %s, want %s", s.Name, a, v.String(), w)
		}
	}
}

// app is a cache on a route in front of an origin, behind an outer
// middleware that starts the request's span, served by a real server.
type app struct {
	t      testing.TB
	cache  *httpcache.Cache
	mux    *http.ServeMux
	srv    *httptest.Server
	ended  chan trace.SpanContext // the request spans, as they end
	origin *originStub
}

// originStub is the route's handler: it starts a span of its own, and
// blocks while block is set, after telling entered.
type originStub struct {
	tracer  trace.Tracer
	calls   sync.Mutex
	n       int
	block   chan struct{}
	entered chan struct{}
}

func (o *originStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, sp := o.tracer.Start(r.Context(), "origin")
	defer sp.End()
	o.calls.Lock()
	o.n++
	o.calls.Unlock()
	if o.block != nil {
		o.entered <- struct{}{}
		<-o.block
	}
	fmt.Fprintf(w, "user %s", r.PathValue("id"))
}

func newApp(t testing.TB, tr *tracing, store storage.Store, p policy.Policy, opts ...httpcache.Option) *app {
	t.Helper()
	opts = append([]httpcache.Option{httpcache.WithLogger(slog.New(slog.DiscardHandler)),
		httpcache.WithTracer(otelcache.NewTracer(tr.tp))}, opts...)
	cache, err := httpcache.New(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close(context.Background()) })
	a := &app{t: t, cache: cache, mux: http.NewServeMux(), ended: make(chan trace.SpanContext, 64),
		origin: &originStub{tracer: tr.tp.Tracer("origin")}}
	a.mux.Handle(usersRoute, cache.Handler(usersRoute, p, a.origin))
	outer := tr.tp.Tracer("outer")
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, sp := outer.Start(r.Context(), r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer func() {
			sp.End()
			a.ended <- sp.SpanContext()
		}()
		a.mux.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// do sends a request and returns its Cache-Status and the span the outer
// middleware started for it, once that span ended. Requests made at once
// take their spans from a.ended instead.
func (a *app) do(method, path string, body string, header ...string) (string, trace.SpanContext) {
	a.t.Helper()
	status := a.send(method, path, body, header...)
	return status, <-a.ended
}

func (a *app) send(method, path string, body string, header ...string) string {
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Error(err)
		return ""
	}
	req.Host = "app.test" // the same key on every server
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Error(err)
		return ""
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	if res.StatusCode >= 300 {
		a.t.Errorf("%s %s: status %d", method, path, res.StatusCode)
	}
	return res.Header.Get("Cache-Status")
}

func newMemStore(t testing.TB) *memstore.Store {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A miss is a lookup span and a fill span under the request's span, the
// origin's own span under the fill's; a hit is one lookup span; a bypass
// is a lookup span that says why.
func TestSpansMissFillHitBypass(t *testing.T) {
	tr := newTracing(t)
	a := newApp(t, tr, newMemStore(t), policy.Policy{TTL: time.Minute})

	status, req := a.do("GET", "/users/15", "")
	if !strings.Contains(status, "stored") {
		t.Fatalf("first request: %q", status)
	}
	checkSpan(t, tr.one(t, req.TraceID(), "readthrough.lookup"), req, httpcache.OutcomeMiss, nil)
	fill := tr.one(t, req.TraceID(), "readthrough.fill")
	checkSpan(t, fill, req, httpcache.OutcomeStored, map[httpcache.Attr]string{
		httpcache.AttrStoredBytes:  "*",
		httpcache.AttrOriginStatus: "200",
	})
	if v, _ := attr(fill, httpcache.AttrStoredBytes.String()); v.AsInt64() <= 0 {
		t.Errorf("stored bytes %d", v.AsInt64())
	}
	origin := tr.one(t, req.TraceID(), "origin")
	if origin.Parent.SpanID() != fill.SpanContext.SpanID() {
		t.Errorf("the origin's span is not under the fill's")
	}

	status, req = a.do("GET", "/users/15", "")
	if !strings.Contains(status, "hit") {
		t.Fatalf("second request: %q", status)
	}
	checkSpan(t, tr.one(t, req.TraceID(), "readthrough.lookup"), req, httpcache.OutcomeHit, map[httpcache.Attr]string{
		httpcache.AttrBodyBytes: "*",
	})
	if n := len(tr.inTrace(req.TraceID(), "readthrough.fill")); n != 0 {
		t.Errorf("a hit has %d fill spans", n)
	}

	_, req = a.do("GET", "/users/15", "", "Authorization", "Bearer x")
	checkSpan(t, tr.one(t, req.TraceID(), "readthrough.lookup"), req, httpcache.OutcomeBypass, map[httpcache.Attr]string{
		httpcache.AttrReason: "authorization",
	})
}

// Requests that wait on a fill in progress in the process each have a
// collapse span under their fill span, with the time they waited.
func TestSpansCollapsedWait(t *testing.T) {
	tr := newTracing(t)
	a := newApp(t, tr, newMemStore(t), policy.Policy{TTL: time.Minute, LockWait: 10 * time.Second})
	a.origin.block, a.origin.entered = make(chan struct{}), make(chan struct{})

	const waiters = 3
	var wg sync.WaitGroup
	statuses := make(chan string, waiters+1)
	wg.Go(func() { statuses <- a.send("GET", "/users/15", "") })
	<-a.origin.entered
	for range waiters {
		wg.Go(func() { statuses <- a.send("GET", "/users/15", "") })
	}
	tr.awaitStarted(t, "readthrough.collapse", waiters)
	close(a.origin.block)
	wg.Wait()
	close(statuses)
	collapsed := 0
	for s := range statuses {
		if strings.Contains(s, "collapsed") {
			collapsed++
		}
	}
	if collapsed != waiters || a.origin.n != 1 {
		t.Fatalf("%d requests collapsed, %d origin calls; want %d and 1", collapsed, a.origin.n, waiters)
	}

	outcomes := map[string]int{}
	for range waiters + 1 {
		req := <-a.ended
		fill := tr.one(t, req.TraceID(), "readthrough.fill")
		v, _ := attr(fill, string(otelcache.OutcomeKey))
		outcomes[v.AsString()]++
		if v.AsString() != string(httpcache.OutcomeCollapsed) {
			checkSpan(t, fill, req, httpcache.OutcomeStored, nil)
			continue
		}
		checkSpan(t, fill, req, httpcache.OutcomeCollapsed, nil)
		wait := tr.one(t, req.TraceID(), "readthrough.collapse")
		checkSpan(t, wait, fill.SpanContext, httpcache.OutcomeCollapsed, map[httpcache.Attr]string{
			httpcache.AttrWait:     "flight",
			httpcache.AttrLockWait: "*",
		})
		if v, _ := attr(wait, httpcache.AttrLockWait.String()); v.AsInt64() <= 0 {
			t.Errorf("lock wait %d ns", v.AsInt64())
		}
	}
	if outcomes["stored"] != 1 || outcomes["collapsed"] != waiters {
		t.Errorf("fill outcomes %v", outcomes)
	}
}

// A request of another instance that finds the fill lock held waits for
// that instance's fill: a collapse span of the lock wait.
func TestSpansLockWait(t *testing.T) {
	tr := newTracing(t)
	store := newMemStore(t)
	p := policy.Policy{TTL: time.Minute, LockWait: 10 * time.Second}
	filler, waiter := newApp(t, tr, store, p), newApp(t, tr, store, p)
	filler.origin.block, filler.origin.entered = make(chan struct{}), make(chan struct{})

	done := make(chan string, 1)
	go func() { done <- filler.send("GET", "/users/15", "") }()
	<-filler.origin.entered
	statuses := make(chan string, 1)
	go func() { statuses <- waiter.send("GET", "/users/15", "") }()
	tr.awaitStarted(t, "readthrough.collapse", 1)
	close(filler.origin.block)
	if s := <-statuses; !strings.Contains(s, "collapsed") {
		t.Fatalf("waiter: %q", s)
	}
	<-done
	req := <-waiter.ended
	fill := tr.one(t, req.TraceID(), "readthrough.fill")
	checkSpan(t, fill, req, httpcache.OutcomeCollapsed, nil)
	checkSpan(t, tr.one(t, req.TraceID(), "readthrough.collapse"), fill.SpanContext, httpcache.OutcomeCollapsed, map[httpcache.Attr]string{
		httpcache.AttrWait:     "lock",
		httpcache.AttrLockWait: "*",
	})
	if waiter.origin.n != 0 {
		t.Errorf("the waiting instance called its origin %d times", waiter.origin.n)
	}
}

// Purges through the admin endpoint and by a write route are spans under
// the request that made them.
func TestSpansPurge(t *testing.T) {
	tr := newTracing(t)
	a := newApp(t, tr, newMemStore(t), policy.Policy{TTL: time.Minute})
	const token = "a-token-of-16-characters-or-more"
	admin, err := a.cache.AdminHandler(httpcache.WithAdminToken("test", token), httpcache.WithAdminLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	a.mux.Handle("/admin/", admin)
	a.mux.Handle("PUT /users/{id}", a.cache.MustWrites("PUT /users/{id}", httpcache.PurgeRoute(usersRoute))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })))

	a.do("GET", "/users/15", "")
	_, req := a.do("POST", "/admin/purge", `{"url": "http://app.test/users/15"}`, "Authorization", "Bearer "+token)
	checkSpan(t, tr.one(t, req.TraceID(), "readthrough.purge"), req, httpcache.OutcomePurged, map[httpcache.Attr]string{
		httpcache.AttrPurge:       "bucket",
		httpcache.AttrPurged:      "1",
		httpcache.AttrPurgeTarget: "*",
	})
	if status, _ := a.do("GET", "/users/15", ""); !strings.Contains(status, "stored") {
		t.Fatalf("after the purge: %q", status)
	}

	_, req = a.do("PUT", "/users/15", "x")
	checkSpan(t, tr.one(t, req.TraceID(), "readthrough.purge"), req, httpcache.OutcomePurged, map[httpcache.Attr]string{
		httpcache.AttrPurge:  "bucket",
		httpcache.AttrPurged: "1",
	})
	if status, _ := a.do("GET", "/users/15", ""); !strings.Contains(status, "stored") {
		t.Fatalf("after the write: %q", status)
	}
}

// A tracer that samples nothing records no span, and the cache works.
func TestSampledOut(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.NeverSample()))
	cache, err := httpcache.New(newMemStore(t), httpcache.WithTracer(otelcache.NewTracer(tp)))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(context.Background())
	h := cache.Handler(usersRoute, policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
	}))
	mux := http.NewServeMux()
	mux.Handle(usersRoute, h)
	for range 2 {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/1", nil))
	}
	if s := cache.Stats(); s.Hits != 1 || s.Misses != 1 {
		t.Errorf("hits %d, misses %d", s.Hits, s.Misses)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported", n)
	}
}

// A background refresh is the root of a trace of its own, linked to the
// request whose hit triggered it, with the origin's span under it.
func TestSpansRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		cache, err := httpcache.New(newMemStore(t), httpcache.WithLogger(slog.New(slog.DiscardHandler)),
			httpcache.WithTracer(otelcache.NewTracer(tp)))
		if err != nil {
			t.Fatal(err)
		}
		origin := &originStub{tracer: tp.Tracer("origin")}
		mux := http.NewServeMux()
		mux.Handle(usersRoute, cache.Handler(usersRoute, policy.Policy{TTL: 10 * time.Second, RefreshAhead: 0.5}, origin))
		outer := tp.Tracer("outer")
		get := func() trace.SpanContext {
			ctx, sp := outer.Start(context.Background(), "request", trace.WithSpanKind(trace.SpanKindServer))
			defer sp.End()
			mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil).WithContext(ctx))
			return sp.SpanContext()
		}
		get()
		time.Sleep(6 * time.Second) // past the refresh point
		req := get()
		synctest.Wait() // the refresh ran
		if err := cache.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if origin.n != 2 {
			t.Fatalf("%d origin calls, want 2", origin.n)
		}

		var refresh tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.Name == string(httpcache.OpRefresh) {
				refresh = s
			}
		}
		if refresh.Name == "" {
			t.Fatal("no refresh span")
		}
		if refresh.Parent.IsValid() || refresh.SpanContext.TraceID() == req.TraceID() {
			t.Errorf("the refresh is not the root of a trace of its own")
		}
		if len(refresh.Links) != 1 || refresh.Links[0].SpanContext.SpanID() != req.SpanID() {
			t.Errorf("the refresh's links %v do not name the request's span %s", refresh.Links, req.SpanID())
		}
		if v, _ := attr(refresh, string(otelcache.OutcomeKey)); v.AsString() != string(httpcache.OutcomeStored) {
			t.Errorf("refresh outcome %q", v.AsString())
		}
		if v, _ := attr(refresh, httpcache.AttrStoredBytes.String()); v.AsInt64() <= 0 {
			t.Errorf("refresh stored %d bytes", v.AsInt64())
		}
		spans := exp.GetSpans()
		var underRefresh bool
		for _, s := range spans {
			if s.Name == "origin" && s.Parent.SpanID() == refresh.SpanContext.SpanID() {
				underRefresh = true
			}
		}
		if !underRefresh {
			t.Error("the refresh's origin span is not under the refresh span")
		}
		hit := (&tracing{exp: exp}).one(t, req.TraceID(), string(httpcache.OpLookup))
		if v, _ := attr(hit, string(otelcache.OutcomeKey)); v.AsString() != string(httpcache.OutcomeHit) {
			t.Errorf("the triggering request's lookup: %q", v.AsString())
		}
		if v, _ := attr(hit, httpcache.AttrRefresh.String()); v.AsString() != "scheduled" {
			t.Errorf("the triggering request's lookup: refresh %q, want scheduled", v.AsString())
		}
	})
}
