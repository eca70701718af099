package httpcache

// Review (rev-b): goroutines created and request-context retention on the
// hit path, against memstore and a real Redis through redisstore.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// The tests of this file come from the second review of the operators'
// tools (2026-12-05): each comment tells what the reviewer checked or
// found, and the test guards it.

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// opaqueCtx is a request context of a type the context package does not
// know: deriving from it directly would start a watcher goroutine.
type opaqueCtx struct{ context.Context }

func reviewStores(t *testing.T) map[string]storage.Store {
	srv := redistest.StartT(t)
	rs, err := redisstore.New(srv.Client(), redisstore.WithPrefix("revb"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]storage.Store{"memstore": newMemStore(t), "redisstore": rs}
}

func TestReviewBHitGoroutinesPerHit(t *testing.T) {
	for name, store := range reviewStores(t) {
		t.Run(name, func(t *testing.T) {
			c := newTestCache(t, store, WithStoreTimeout(2*time.Second))
			h := mux(t, c, "GET /users/{id}", policy.Policy{TTL: time.Hour}, textOrigin("hello"))
			do := func(ctx context.Context) string {
				r := httptest.NewRequest("GET", "/users/15", nil).WithContext(ctx)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w.Header().Get("Cache-Status")
			}
			do(context.Background())
			for _, kind := range []string{"cancelCtx", "opaque"} {
				const n = 2000
				for i := 0; i < 50; i++ { // warm the pool
					do(context.Background())
				}
				before := goroutinesCreated()
				for i := 0; i < n; i++ {
					ctx, cancel := context.WithCancel(context.Background())
					var rc context.Context = ctx
					if kind == "opaque" {
						rc = opaqueCtx{ctx}
					}
					if st := do(rc); st == "" || !contains(st, "hit") {
						t.Fatalf("not a hit: %q", st)
					}
					cancel()
				}
				per := float64(goroutinesCreated()-before) / n
				t.Logf("%s/%s: %.3f goroutines created per hit", name, kind, per)
				if per > 0.05 {
					t.Errorf("%s/%s: %.3f goroutines created per hit, want 0", name, kind, per)
				}
			}
		})
	}
}

// A request whose context is already cancelled is still served its hit:
// the request's cancellation does not reach the bounded read.
func TestReviewBHitIgnoresRequestCancel(t *testing.T) {
	for name, store := range reviewStores(t) {
		t.Run(name, func(t *testing.T) {
			c := newTestCache(t, store, WithStoreTimeout(2*time.Second))
			h := mux(t, c, "GET /users/{id}", policy.Policy{TTL: time.Hour}, textOrigin("hello"))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/users/15", nil).WithContext(ctx))
			if st := w.Header().Get("Cache-Status"); !contains(st, "hit") {
				t.Fatalf("cancelled request: Cache-Status %q, want a hit", st)
			}
		})
	}
}

// The request's context is not kept alive after the hit returns.
func TestReviewBHitReleasesRequestContext(t *testing.T) {
	for name, store := range reviewStores(t) {
		t.Run(name, func(t *testing.T) {
			c := newTestCache(t, store, WithStoreTimeout(time.Minute))
			h := mux(t, c, "GET /users/{id}", policy.Policy{TTL: time.Hour}, textOrigin("hello"))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
			collected := make(chan struct{})
			func() {
				type key struct{}
				big := new([1 << 20]byte)
				runtime.AddCleanup(big, func(ch chan struct{}) { close(ch) }, collected)
				ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, big))
				defer cancel()
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/users/15", nil).WithContext(ctx))
				if st := w.Header().Get("Cache-Status"); !contains(st, "hit") {
					t.Fatalf("not a hit: %q", st)
				}
			}()
			for i := 0; i < 20; i++ {
				runtime.GC()
				select {
				case <-collected:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			t.Error("the request's context is still reachable after the hit returned (held until the shared deadline?)")
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}
func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

var _ = http.MethodGet

// derivingStore derives from the read's context as a store may: a
// WithTimeout (released) and an AfterFunc (stopped).
type derivingStore struct{ storage.Store }

func (s derivingStore) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {})
	defer stop()
	return s.Store.Get(ctx, bucket, field)
}

func TestReviewBHitDerivedContextsNoGoroutine(t *testing.T) {
	c := newTestCache(t, derivingStore{newMemStore(t)}, WithStoreTimeout(2*time.Second))
	h := mux(t, c, "GET /users/{id}", policy.Policy{TTL: time.Hour}, textOrigin("hello"))
	do := func(ctx context.Context) string {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/users/15", nil).WithContext(ctx))
		return w.Header().Get("Cache-Status")
	}
	do(context.Background())
	const n = 2000
	before := goroutinesCreated()
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		if st := do(opaqueCtx{ctx}); !contains(st, "hit") {
			t.Fatalf("not a hit: %q", st)
		}
		cancel()
	}
	per := float64(goroutinesCreated()-before) / n
	t.Logf("%.3f goroutines per hit", per)
	if per > 0.05 {
		t.Errorf("%.3f goroutines per hit", per)
	}
}

// Concurrent hits (and refreshes) on real Redis and memstore with a
// tracer, under -race, through a real server.
func TestReviewBConcurrentHitsRace(t *testing.T) {
	for name, store := range reviewStores(t) {
		t.Run(name, func(t *testing.T) {
			tr := &fakeTracer{}
			c := newTestCache(t, store, WithStoreTimeout(time.Second), WithTracer(tr))
			h := mux(t, c, "GET /users/{id}", policy.Policy{TTL: 300 * time.Millisecond, RefreshAhead: 0.2, StaleWhileRevalidate: time.Second}, textOrigin("hello"))
			srv := httptest.NewServer(h)
			defer srv.Close()
			done := make(chan struct{})
			for g := 0; g < 6; g++ {
				go func() {
					defer func() { done <- struct{}{} }()
					for i := 0; i < 150; i++ {
						ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%5+1)*time.Millisecond)
						req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/users/"+string(rune('1'+i%3)), nil)
						if resp, err := http.DefaultClient.Do(req); err == nil {
							resp.Body.Close()
						}
						cancel()
					}
				}()
			}
			for g := 0; g < 6; g++ {
				<-done
			}
			c.Close(context.Background())
			checkSpans(t, tr)
		})
	}
}
