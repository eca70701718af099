package httpcache

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// The tests of this file come from the second review of the operators'
// tools (2026-12-05): each comment tells what the reviewer checked or
// found, and the test guards it.

// Review (rev-b): every span the cache starts ends exactly once, with an
// outcome, on the paths off the happy one, through a real server.

type failingGetStore struct{ storage.Store }

func (s failingGetStore) Get(context.Context, string, string) ([]byte, error) {
	return nil, errors.New("store down")
}

func checkSpans(t *testing.T, tr *fakeTracer) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range tr.spans {
		if s.ends != 1 {
			t.Errorf("span %s ended %d times (outcome %q)", s.op, s.ends, s.outcome)
		} else if s.outcome == "" {
			t.Errorf("span %s ended with no outcome", s.op)
		}
	}
}

func TestReviewBSpansEndOnEveryPath(t *testing.T) {
	get := func(t *testing.T, url string, ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}
	t.Run("origin panics", func(t *testing.T) {
		tr := &fakeTracer{}
		c := newTestCache(t, newMemStore(t), WithTracer(tr))
		h := mux(t, c, "GET /p/{id}", policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
		srv := httptest.NewServer(h)
		defer srv.Close()
		get(t, srv.URL+"/p/1", context.Background())
		time.Sleep(50 * time.Millisecond)
		checkSpans(t, tr)
	})
	t.Run("client gone during fill", func(t *testing.T) {
		tr := &fakeTracer{}
		c := newTestCache(t, newMemStore(t), WithTracer(tr))
		h := mux(t, c, "GET /p/{id}", policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}))
		srv := httptest.NewServer(h)
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		get(t, srv.URL+"/p/1", ctx)
		time.Sleep(200 * time.Millisecond)
		checkSpans(t, tr)
	})
	t.Run("breaker open", func(t *testing.T) {
		tr := &fakeTracer{}
		c := newTestCache(t, failingGetStore{newMemStore(t)}, WithTracer(tr), WithBreaker(1, time.Minute))
		h := mux(t, c, "GET /p/{id}", policy.Policy{TTL: time.Minute}, textOrigin("x"))
		srv := httptest.NewServer(h)
		defer srv.Close()
		for range 3 {
			get(t, srv.URL+"/p/1", context.Background())
		}
		checkSpans(t, tr)
	})
	t.Run("collapse timeout", func(t *testing.T) {
		tr := &fakeTracer{}
		c := newTestCache(t, newMemStore(t), WithTracer(tr))
		h := mux(t, c, "GET /p/{id}", policy.Policy{TTL: time.Minute, LockWait: 30 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(200 * time.Millisecond)
			w.Write([]byte("x"))
		}))
		srv := httptest.NewServer(h)
		defer srv.Close()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { get(t, srv.URL+"/p/1", context.Background()) })
		}
		wg.Wait()
		checkSpans(t, tr)
	})
	t.Run("refresh dropped and refresh panics", func(t *testing.T) {
		tr := &fakeTracer{}
		c := newTestCache(t, newMemStore(t), WithTracer(tr), WithRefreshWorkers(1))
		var n int
		var mu sync.Mutex
		h := mux(t, c, "GET /p/{id}", policy.Policy{TTL: 200 * time.Millisecond, RefreshAhead: 0.1}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			first := n <= 3
			mu.Unlock()
			if !first {
				time.Sleep(50 * time.Millisecond)
				panic("refresh boom")
			}
			w.Write([]byte("x"))
		}))
		srv := httptest.NewServer(h)
		defer srv.Close()
		for _, id := range []string{"1", "2", "3"} {
			get(t, srv.URL+"/p/"+id, context.Background())
		}
		time.Sleep(60 * time.Millisecond)
		for _, id := range []string{"1", "2", "3"} {
			get(t, srv.URL+"/p/"+id, context.Background())
		}
		if err := c.Close(context.Background()); err != nil {
			t.Log(err)
		}
		checkSpans(t, tr)
	})
}

type failingPurgeStore struct{ *memstore.Store }

func (s failingPurgeStore) PurgeTag(ctx context.Context, tag string) (int64, error) {
	return 0, errors.New("dial tcp 10.1.2.3:6379: i/o timeout (tag " + tag + ")")
}

// AttrReason is documented and used as an enumerated qualifier (bypass
// reasons, "purge-race", "bucket-full", "store-error"); a failed purge
// puts the error's whole text there: per-error, per-address, per-tag
// values under a key a span-metrics pipeline groups by.
func TestReviewBPurgeSpanReasonBounded(t *testing.T) {
	tr := &fakeTracer{}
	c := newTestCache(t, failingPurgeStore{newMemStore(t)}, WithTracer(tr))
	mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute}, textOrigin("x"))
	if _, err := c.PurgeTag(t.Context(), "user-12345"); err == nil {
		t.Fatal("purge did not fail")
	}
	spans := tr.ended(t, OpPurge)
	if len(spans) != 1 {
		t.Fatalf("%d purge spans", len(spans))
	}
	bounded := map[string]bool{"store-error": true, "purge-race": true, "bucket-full": true}
	for _, d := range bypassDefs {
		bounded[d.name] = true
	}
	if r := spans[0].strs[AttrReason]; !bounded[r] {
		t.Errorf("purge span's %s is %q: an unbounded value (error text, peer address, tag) under an enumerated attribute", AttrReason, r)
	}
}
