package httpcache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// instances returns n caches ("processes") sharing one store, each routing
// pattern to h.
func instances(t *testing.T, store *memstore.Store, n int, pattern string, p policy.Policy, h http.Handler) []http.Handler {
	t.Helper()
	hs := make([]http.Handler, n)
	for i := range hs {
		hs[i] = mux(t, newTestCache(t, store), pattern, p, h)
	}
	return hs
}

// stampede sends n concurrent GETs for target spread over hs and returns
// the results, recovering the panics a failing origin re-raises.
func stampede(hs []http.Handler, n int, target string) []result {
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					results[i] = result{status: -1}
				}
			}()
			results[i] = do(hs[i%len(hs)], "GET", target)
		})
	}
	wg.Wait()
	return results
}

func countStatus(results []result, substr string) int {
	n := 0
	for _, r := range results {
		if strings.Contains(r.cacheStatus(), substr) {
			n++
		}
	}
	return n
}

func TestCollapseAcrossInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(500 * time.Millisecond)
			io.WriteString(w, "the one answer")
		}}
		hs := instances(t, store, 4, "/hot", policy.Policy{}, o)
		results := stampede(hs, 400, "/hot")
		if n := o.calls.Load(); n != 1 {
			t.Fatalf("origin calls = %d, want 1", n)
		}
		for i, r := range results {
			if r.status != 200 || r.body != "the one answer" {
				t.Fatalf("response %d = %d %q", i, r.status, r.body)
			}
		}
		if got := countStatus(results, "stored"); got != 1 {
			t.Errorf("%d responses say stored, want 1", got)
		}
		if got := countStatus(results, "collapsed"); got != 399 {
			t.Errorf("%d responses say collapsed, want 399", got)
		}
	})
}

func TestCollapseLeaderPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		var calls atomic.Int64
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			n := calls.Add(1)
			time.Sleep(200 * time.Millisecond)
			if n == 1 {
				panic("origin blew up")
			}
			io.WriteString(w, "second try")
		}}
		hs := instances(t, store, 4, "/hot", policy.Policy{}, o)
		start := time.Now()
		results := stampede(hs, 200, "/hot")
		if n := o.calls.Load(); n != 2 {
			t.Errorf("origin calls = %d, want 2 (the panic, then one new leader)", n)
		}
		panics := 0
		for _, r := range results {
			switch {
			case r.status == -1:
				panics++
			case r.status != 200 || r.body != "second try":
				t.Fatalf("response = %d %q", r.status, r.body)
			}
		}
		if panics != 1 {
			t.Errorf("%d requests saw the panic, want only the leader's", panics)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("waiters took %v: they waited for the lock wait instead of waking at the failure", d)
		}
	})
}

func TestCollapseUncacheableIsNotShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		var calls atomic.Int64
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			n := calls.Add(1)
			time.Sleep(100 * time.Millisecond)
			http.SetCookie(w, &http.Cookie{Name: "session", Value: fmt.Sprint(n)})
			fmt.Fprintf(w, "for caller %d", n)
		}}
		hs := instances(t, store, 4, "/me", policy.Policy{}, o)
		results := stampede(hs, 100, "/me")
		if n := o.calls.Load(); n != 100 {
			t.Errorf("origin calls = %d, want one per client", n)
		}
		seen := map[string]bool{}
		for _, r := range results {
			cookie := r.header.Get("Set-Cookie")
			if seen[cookie] {
				t.Fatalf("two clients got the same private response %q", cookie)
			}
			seen[cookie] = true
			if !strings.HasSuffix(cookie, strings.TrimPrefix(r.body, "for caller ")) {
				t.Errorf("cookie %q with body %q", cookie, r.body)
			}
		}
	})
}

func TestCollapseLeaderClientGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond)
			if r.Context().Err() != nil {
				http.Error(w, "cancelled", 499)
				return
			}
			io.WriteString(w, "done")
		}}
		hs := instances(t, store, 2, "/x", policy.Policy{}, o)
		ctx, cancel := context.WithCancel(context.Background())
		leaderDone := make(chan struct{})
		go func() {
			defer close(leaderDone)
			r := httptest.NewRequestWithContext(ctx, "GET", "/x", nil)
			hs[0].ServeHTTP(httptest.NewRecorder(), r)
		}()
		synctest.Wait() // the leader is in the origin
		results := make(chan result, 50)
		for i := range 50 {
			go func() { results <- do(hs[i%2], "GET", "/x") }()
		}
		synctest.Wait()
		cancel() // the leader's client disconnects mid-fill
		<-leaderDone
		for range 50 {
			if r := <-results; r.status != 200 || r.body != "done" {
				t.Fatalf("waiter got %d %q", r.status, r.body)
			}
		}
		if n := o.calls.Load(); n != 1 {
			t.Errorf("origin calls = %d, want 1", n)
		}
	})
}

func TestCollapseLockLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Second)
			io.WriteString(w, "ok")
		}}
		var caches []*Cache
		var hs []http.Handler
		for range 3 {
			c := newTestCache(t, store)
			caches = append(caches, c)
			hs = append(hs, mux(t, c, "/l", policy.Policy{LockTTL: 400 * time.Millisecond}, o))
		}
		done := make(chan []result)
		go func() { done <- stampede(hs, 90, "/l") }()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		store.Flush() // Redis flushed mid-fill: the lock vanishes
		results := <-done
		for _, r := range results {
			if r.status != 200 || r.body != "ok" {
				t.Fatalf("got %d %q", r.status, r.body)
			}
		}
		if n := o.calls.Load(); n != 1 {
			t.Errorf("origin calls = %d, want 1", n)
		}
		var lost int64
		for _, c := range caches {
			lost += c.Stats().LocksLost
		}
		if lost != 1 {
			t.Errorf("locks lost = %d, want 1 (logged, not surfaced)", lost)
		}
	})
}

func TestWaiterBoundedByLockWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		release := make(chan struct{})
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Slow") != "" {
				<-release
			}
			io.WriteString(w, "x")
		}}
		hs := instances(t, store, 2, "/w", policy.Policy{LockWait: 2 * time.Second, LockTTL: time.Minute}, o)
		go do(hs[0], "GET", "/w", "X-Slow", "1")
		synctest.Wait()
		start := time.Now()
		got := do(hs[1], "GET", "/w")
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("waiter waited %v, want the lock wait 2s", d)
		}
		if got.status != 200 || got.isHit() {
			t.Errorf("waiter got %d %q, want its own origin response", got.status, got.cacheStatus())
		}
		close(release)
	})
}

// lossyStore loses every fill notification, as a pub/sub connection that
// is down would.
type lossyStore struct{ *memstore.Store }

func (lossyStore) Publish(context.Context, string, string, storage.Fill) error { return nil }

func TestLostNotificationCostsARecheckNotTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := lossyStore{newMemStore(t)}
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(200 * time.Millisecond)
			io.WriteString(w, "filled")
		}}
		pol := policy.Policy{LockWait: 5 * time.Second}
		a := mux(t, newTestCache(t, store), "/n", pol, o)
		b := mux(t, newTestCache(t, store), "/n", pol, o)
		go do(a, "GET", "/n")
		synctest.Wait()
		start := time.Now()
		got := do(b, "GET", "/n")
		if got.body != "filled" || !strings.Contains(got.cacheStatus(), "collapsed") {
			t.Fatalf("got %q %q", got.body, got.cacheStatus())
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("waiter took %v with the notification lost, want about one recheck interval", d)
		}
		if n := o.calls.Load(); n != 1 {
			t.Errorf("origin calls = %d, want 1", n)
		}
	})
}
