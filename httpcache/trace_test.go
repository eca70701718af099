package httpcache

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// fakeTracer records the spans the cache starts, with their parents (the
// fake span the context carried) and what was set on them.
type fakeTracer struct {
	mu       sync.Mutex
	spans    []*fakeSpan
	nilSpans bool // Start returns nil spans (a tracer that samples out)
}

type fakeSpanKey struct{}

type fakeSpan struct {
	t       *fakeTracer
	op      Op
	route   string
	parent  *fakeSpan
	ints    map[Attr]int64
	strs    map[Attr]string
	outcome Outcome
	ends    int
}

func (t *fakeTracer) Start(ctx context.Context, op Op, route string) (context.Context, Span) {
	parent, _ := ctx.Value(fakeSpanKey{}).(*fakeSpan)
	s := &fakeSpan{t: t, op: op, route: route, parent: parent, ints: map[Attr]int64{}, strs: map[Attr]string{}}
	t.mu.Lock()
	t.spans = append(t.spans, s)
	t.mu.Unlock()
	ctx = context.WithValue(ctx, fakeSpanKey{}, s)
	if t.nilSpans {
		return ctx, nil
	}
	return ctx, s
}

func (s *fakeSpan) SetInt(a Attr, v int64) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.ints[a] = v
}

func (s *fakeSpan) SetString(a Attr, v string) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.strs[a] = v
}

func (s *fakeSpan) End(o Outcome) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.outcome = o
	s.ends++
}

// ended returns the spans of op, in start order, checking each ended once.
func (t *fakeTracer) ended(tb testing.TB, op Op) []*fakeSpan {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*fakeSpan
	for _, s := range t.spans {
		if s.op != op {
			continue
		}
		if s.ends != 1 && !t.nilSpans {
			tb.Errorf("span %s (%s) ended %d times", s.op, s.outcome, s.ends)
		}
		out = append(out, s)
	}
	return out
}

func (t *fakeTracer) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.spans = nil
}

func TestTracerDecisions(t *testing.T) {
	type want struct {
		op      Op
		outcome Outcome
		strs    map[Attr]string
		ints    map[Attr]int64 // -1: present, any value
	}
	tests := []struct {
		name   string
		policy policy.Policy
		origin http.HandlerFunc
		warm   []string // requests made before tracing
		target string
		header []string
		want   []want
	}{
		{
			name:   "miss and fill",
			target: "/items/1",
			want: []want{
				{op: OpLookup, outcome: OutcomeMiss},
				{op: OpFill, outcome: OutcomeStored, ints: map[Attr]int64{AttrStoredBytes: -1, AttrOriginStatus: 200}},
			},
		},
		{
			name:   "hit",
			warm:   []string{"/items/1"},
			target: "/items/1",
			want:   []want{{op: OpLookup, outcome: OutcomeHit, ints: map[Attr]int64{AttrBodyBytes: int64(len("item"))}}},
		},
		{
			name:   "bypass",
			target: "/items/1",
			header: []string{"Authorization", "Bearer x"},
			want:   []want{{op: OpLookup, outcome: OutcomeBypass, strs: map[Attr]string{AttrReason: "authorization"}}},
		},
		{
			name: "not cacheable",
			origin: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "no-store")
				w.Write([]byte("item"))
			},
			target: "/items/1",
			want: []want{
				{op: OpLookup, outcome: OutcomeMiss},
				{op: OpFill, outcome: OutcomeRefused, ints: map[Attr]int64{AttrOriginStatus: 200}},
			},
		},
		{
			name:   "bucket full",
			policy: policy.Policy{TTL: time.Minute, MaxFields: 1},
			warm:   []string{"/items/1?v=1"},
			target: "/items/1?v=2",
			want: []want{
				{op: OpLookup, outcome: OutcomeMiss},
				{op: OpFill, outcome: OutcomeNotStored,
					strs: map[Attr]string{AttrReason: "bucket-full"},
					ints: map[Attr]int64{AttrBucketFields: 1, AttrOriginStatus: 200}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &fakeTracer{}
			c := newTestCache(t, newMemStore(t), WithTracer(tr))
			p := tt.policy
			if p.TTL == 0 {
				p.TTL = time.Minute
			}
			origin := tt.origin
			if origin == nil {
				origin = func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("item")) }
			}
			h := mux(t, c, "GET /items/{id}", p, origin)
			for _, target := range tt.warm {
				do(h, "GET", target)
			}
			tr.reset()
			do(h, "GET", tt.target, tt.header...)
			var got []*fakeSpan
			for _, op := range []Op{OpLookup, OpFill} {
				got = append(got, tr.ended(t, op)...)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d spans, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				s := got[i]
				if s.op != w.op || s.outcome != w.outcome || s.route != "GET /items/{id}" {
					t.Errorf("span %d: %s %s on %q, want %s %s", i, s.op, s.outcome, s.route, w.op, w.outcome)
				}
				if s.parent != nil {
					t.Errorf("span %s has parent %s; want the request's (none here)", s.op, s.parent.op)
				}
				for a, v := range w.strs {
					if s.strs[a] != v {
						t.Errorf("span %s: %s = %q, want %q", s.op, a, s.strs[a], v)
					}
				}
				for a, v := range w.ints {
					if got, ok := s.ints[a]; !ok || v >= 0 && got != v {
						t.Errorf("span %s: %s = %d (set %v), want %d", s.op, a, got, ok, v)
					}
				}
			}
		})
	}
}

// A tracer may return nil spans (sampled out): the cache then sets
// nothing, but still passes the returned context on.
func TestTracerNilSpans(t *testing.T) {
	tr := &fakeTracer{nilSpans: true}
	c := newTestCache(t, newMemStore(t), WithTracer(tr))
	var sawSpan bool
	h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := r.Context().Value(fakeSpanKey{}).(*fakeSpan)
		sawSpan = s != nil && s.op == OpFill
		w.Write([]byte("item"))
	}))
	if res := do(h, "GET", "/items/1"); res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	if !do(h, "GET", "/items/1").isHit() {
		t.Fatal("second request not a hit")
	}
	if !sawSpan {
		t.Error("the origin did not get the fill span's context")
	}
	if _, err := c.PurgeAll(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestTracerPurges(t *testing.T) {
	tr := &fakeTracer{}
	c := newTestCache(t, newMemStore(t), WithTracer(tr))
	h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute, Tags: func(*http.Request) []string { return []string{"items"} }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("item")) }))
	ctx, parent := tr.Start(t.Context(), "request", "")
	tests := []struct {
		kind, route string
		purge       func() (int64, error)
	}{
		{"bucket", "", func() (int64, error) {
			return c.PurgeBucket(ctx, "GET /items/{id}", map[string]string{"id": "1"})
		}},
		{"route", "GET /items/{id}", func() (int64, error) { return c.PurgeRoute(ctx, "GET /items/{id}") }},
		{"tag", "", func() (int64, error) { return c.PurgeTag(ctx, "items") }},
		{"all", "", func() (int64, error) { return c.PurgeAll(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			do(h, "GET", "/items/1")
			tr.reset()
			n, err := tt.purge()
			if err != nil || n < 1 {
				t.Fatalf("purge: %d, %v", n, err)
			}
			spans := tr.ended(t, OpPurge)
			if len(spans) != 1 {
				t.Fatalf("%d purge spans", len(spans))
			}
			s := spans[0]
			if s.parent != parent || s.outcome != OutcomePurged || s.strs[AttrPurge] != tt.kind || s.ints[AttrPurged] != n || s.route != tt.route {
				t.Errorf("span: parent %v, outcome %s, purge %q, purged %d, route %q", s.parent != nil, s.outcome, s.strs[AttrPurge], s.ints[AttrPurged], s.route)
			}
		})
	}
}

// ctxStore records the context of each Get.
type ctxStore struct {
	storage.Store
	mu   sync.Mutex
	gets []context.Context
}

func (s *ctxStore) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	s.mu.Lock()
	s.gets = append(s.gets, ctx)
	s.mu.Unlock()
	return s.Store.Get(ctx, bucket, field)
}

type testCtxKey struct{}

// The hit path's store read gets the request's context values (a trace
// span, say), the shared coarse deadline, and not the request's
// cancellation; a context a store derives from it ends with that
// deadline.
func TestHitPathStoreContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &ctxStore{Store: newMemStore(t)}
		const timeout = 50 * time.Millisecond
		c := newTestCache(t, store, WithStoreTimeout(timeout))
		h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Hour},
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("item")) }))
		do(h, "GET", "/items/1")

		ctx, cancel := context.WithCancel(context.WithValue(t.Context(), testCtxKey{}, "request"))
		cancel() // a client gone: the bounded read still runs
		r := httptest.NewRequest("GET", "/items/1", nil).WithContext(ctx)
		if res := doRequest(h, r); !res.isHit() {
			t.Fatalf("not a hit: %q", res.cacheStatus())
		}
		store.mu.Lock()
		got := store.gets[len(store.gets)-1]
		store.mu.Unlock()
		if v := got.Value(testCtxKey{}); v != "request" {
			t.Errorf("store read's context value = %v, want the request's", v)
		}
		if got.Err() != nil {
			t.Errorf("store read's context ended with the request's: %v", got.Err())
		}
		deadline, ok := got.Deadline()
		if left := time.Until(deadline); !ok || left <= 0 || left > timeout {
			t.Errorf("store read's deadline %v away (set %v), want within %v", left, ok, timeout)
		}
		child, stop := context.WithTimeout(got, time.Hour)
		defer stop()
		time.Sleep(timeout)
		synctest.Wait()
		if child.Err() != context.DeadlineExceeded || got.Err() != context.DeadlineExceeded {
			t.Errorf("at the shared deadline: read %v, derived %v; want both past their deadline", got.Err(), child.Err())
		}
	})
}

// A request whose wait on another's fill runs out has a collapse span
// that says so, and fills for itself.
func TestTracerCollapseTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTracer{}
		c := newTestCache(t, newMemStore(t), WithTracer(tr))
		release := make(chan struct{})
		calls := 0
		h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute, LockWait: time.Second},
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				if calls == 1 {
					<-release
				}
				w.Write([]byte("item"))
			}))
		var wg sync.WaitGroup
		wg.Go(func() { do(h, "GET", "/items/1") })
		synctest.Wait() // the first request is in the origin
		wg.Go(func() { do(h, "GET", "/items/1") })
		time.Sleep(2 * time.Second) // past the second one's wait
		synctest.Wait()
		close(release)
		wg.Wait()

		waits := tr.ended(t, OpCollapse)
		if len(waits) != 1 {
			t.Fatalf("%d collapse spans", len(waits))
		}
		w := waits[0]
		if w.outcome != OutcomeTimeout || w.strs[AttrWait] != "flight" || w.ints[AttrLockWait] != int64(time.Second) {
			t.Errorf("collapse span: %s, wait %q, %v", w.outcome, w.strs[AttrWait], time.Duration(w.ints[AttrLockWait]))
		}
		if w.parent == nil || w.parent.op != OpFill {
			t.Fatal("the collapse span is not under a fill span")
		}
		if fill := w.parent; fill.outcome != OutcomeStored && fill.outcome != OutcomeNotStored {
			t.Errorf("the waiter's fill: %s", fill.outcome)
		}
	})
}
