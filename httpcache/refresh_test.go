package httpcache

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// versioned is an origin whose body says how many times it was called.
func versioned(delay time.Duration) *origin {
	o := &origin{}
	o.fn = func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		fmt.Fprintf(w, "v%d", o.calls.Load())
	}
	return o
}

func TestRefreshAheadRatio(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		o := versioned(0)
		h := mux(t, c, "/r", policy.Policy{TTL: 10 * time.Second, RefreshAhead: 0.8}, o)
		do(h, "GET", "/r")

		time.Sleep(7 * time.Second) // before the refresh point
		if got := do(h, "GET", "/r"); got.body != "v1" || !got.isHit() {
			t.Fatalf("at 7s: %q %q", got.body, got.cacheStatus())
		}
		synctest.Wait()
		if n := o.calls.Load(); n != 1 {
			t.Fatalf("refreshed before the refresh point: %d calls", n)
		}

		time.Sleep(1500 * time.Millisecond) // past 8s: served at once, refreshed behind
		if got := do(h, "GET", "/r"); got.body != "v1" || !got.isHit() {
			t.Fatalf("at 8.5s: %q %q, want the old entry served as a hit", got.body, got.cacheStatus())
		}
		synctest.Wait()
		if n := o.calls.Load(); n != 2 {
			t.Fatalf("origin calls = %d, want one background refresh", n)
		}
		got := do(h, "GET", "/r")
		if got.body != "v2" || !strings.Contains(got.cacheStatus(), "ttl=10") {
			t.Errorf("after refresh: %q %q", got.body, got.cacheStatus())
		}
		if s := c.Stats(); s.Refreshed != 1 {
			t.Errorf("stats.Refreshed = %d", s.Refreshed)
		}
	})
}

func TestStaleWhileRevalidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		o := versioned(time.Second)
		h := mux(t, c, "/s", policy.Policy{TTL: 10 * time.Second, StaleWhileRevalidate: 5 * time.Second}, o)
		do(h, "GET", "/s")

		time.Sleep(12 * time.Second)
		start := time.Now()
		got := do(h, "GET", "/s")
		if time.Since(start) != 0 {
			t.Errorf("stale hit waited for the origin")
		}
		if got.body != "v1" || got.cacheStatus() != "readthrough; hit; ttl=-2; detail=stale-while-revalidate" {
			t.Fatalf("stale: %q %q", got.body, got.cacheStatus())
		}
		synctest.Wait()
		time.Sleep(time.Second) // the refresh takes the origin's second
		synctest.Wait()
		if got := do(h, "GET", "/s"); got.body != "v2" || !got.isHit() {
			t.Errorf("after refresh: %q %q", got.body, got.cacheStatus())
		}

		time.Sleep(16 * time.Second) // past fresh + stale window: a plain miss
		if got := do(h, "GET", "/s"); got.isHit() || got.body != "v3" {
			t.Errorf("past the window: %q %q", got.body, got.cacheStatus())
		}
	})
}

func TestStaleIfError(t *testing.T) {
	tests := []struct {
		name       string
		fail       func(w http.ResponseWriter, r *http.Request)
		wantStatus string
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", 500) }, "fwd-status=500"},
		{"503 after headers", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Broken", "1")
			w.WriteHeader(503)
			io.WriteString(w, "unavailable")
		}, "fwd-status=503"},
		{"panic", func(w http.ResponseWriter, _ *http.Request) { panic("db gone") }, "fwd=stale; ttl"},
		{"abort", func(w http.ResponseWriter, _ *http.Request) { panic(http.ErrAbortHandler) }, "fwd=stale; ttl"},
		// The fill timeout ends the origin's context; it returns having
		// written nothing, which is no empty 200 of the origin's.
		{"fill timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "fwd=stale; ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTestCache(t, newMemStore(t))
				var failing atomic.Bool
				o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
					if failing.Load() {
						tt.fail(w, r)
						return
					}
					io.WriteString(w, "good")
				}}
				h := mux(t, c, "/e", policy.Policy{TTL: 10 * time.Second, StaleIfError: time.Minute, FillTimeout: 5 * time.Second}, o)
				do(h, "GET", "/e")
				failing.Store(true)
				time.Sleep(20 * time.Second)
				got := do(h, "GET", "/e")
				if got.status != 200 || got.body != "good" || got.header.Get("X-Broken") != "" {
					t.Fatalf("got %d %q %v, want the stale entry", got.status, got.body, got.header)
				}
				if cs := got.cacheStatus(); !strings.Contains(cs, tt.wantStatus) || !strings.Contains(cs, "detail=stale-if-error") || strings.Contains(cs, "fwd-status=200") {
					t.Errorf("Cache-Status = %q", cs)
				}
				failing.Store(false)
				if got := do(h, "GET", "/e"); got.body != "good" || got.isHit() {
					t.Errorf("origin back: %q %q, want a fresh fill", got.body, got.cacheStatus())
				}
				if got := do(h, "GET", "/e"); !got.isHit() {
					t.Errorf("not refilled after recovery: %q", got.cacheStatus())
				}
			})
		})
	}
	t.Run("fill timeout with nothing to serve", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }}
			h := mux(t, c, "/e", policy.Policy{TTL: 10 * time.Second, FillTimeout: 5 * time.Second}, o)
			for range 2 {
				if got := do(h, "GET", "/e"); got.status != http.StatusGatewayTimeout || got.isHit() {
					t.Errorf("an origin that timed out having written nothing: %d %q, want 504, not stored", got.status, got.cacheStatus())
				}
			}
		})
	})
	t.Run("past the window", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			var failing atomic.Bool
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
				if failing.Load() {
					http.Error(w, "down", 500)
					return
				}
				io.WriteString(w, "good")
			}}
			h := mux(t, c, "/e", policy.Policy{TTL: 10 * time.Second, StaleIfError: 30 * time.Second}, o)
			do(h, "GET", "/e")
			failing.Store(true)
			time.Sleep(41 * time.Second)
			if got := do(h, "GET", "/e"); got.status != 500 {
				t.Errorf("got %d %q past the stale-if-error window, want the origin's 500", got.status, got.body)
			}
		})
	})
}

func TestOriginStaleDirectivesHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		var failing atomic.Bool
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				http.Error(w, "down", http.StatusBadGateway)
				return
			}
			w.Header().Set("Cache-Control", "max-age=5, stale-while-revalidate=5, stale-if-error=100")
			io.WriteString(w, "good")
		}}
		h := mux(t, c, "/o", policy.Policy{TTL: time.Hour, HonorOriginCacheControl: true}, o)
		do(h, "GET", "/o")
		time.Sleep(7 * time.Second)
		if got := do(h, "GET", "/o"); !strings.Contains(got.cacheStatus(), "stale-while-revalidate") {
			t.Errorf("at 7s: %q, want served stale while revalidating", got.cacheStatus())
		}
		synctest.Wait()
		failing.Store(true)
		time.Sleep(50 * time.Second)
		if got := do(h, "GET", "/o"); got.body != "good" || !strings.Contains(got.cacheStatus(), "stale-if-error") {
			t.Errorf("at 57s with the origin down: %d %q", got.status, got.cacheStatus())
		}
	})
}

func TestRefreshPoolOverflowDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t), WithRefreshWorkers(1))
		release := make(chan struct{})
		var refreshing atomic.Bool
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			if refreshing.Load() {
				<-release
			}
			io.WriteString(w, "x")
		}}
		h := mux(t, c, "GET /k/{id}", policy.Policy{TTL: 10 * time.Second, RefreshAhead: 0.5}, o)
		for i := range 3 {
			do(h, "GET", fmt.Sprintf("/k/%d", i))
		}
		refreshing.Store(true)
		time.Sleep(6 * time.Second)
		for i := range 3 {
			if got := do(h, "GET", fmt.Sprintf("/k/%d", i)); !got.isHit() {
				t.Fatalf("hit %d not served at once: %q", i, got.cacheStatus())
			}
		}
		// A second hit on the key being refreshed is not a second refresh.
		do(h, "GET", "/k/0")
		synctest.Wait()
		s := c.Stats()
		if s.RefreshDropped != 2 {
			t.Errorf("dropped = %d, want 2 (pool of one, three keys due)", s.RefreshDropped)
		}
		close(release)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if s := c.Stats(); s.Refreshed != 1 {
			t.Errorf("refreshed = %d, want 1", s.Refreshed)
		}
	})
}

func TestCloseWaitsForRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		o := versioned(0)
		o2 := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			if o.calls.Load() > 0 {
				time.Sleep(5 * time.Second)
			}
			o.ServeHTTP(w, r)
		}}
		h := mux(t, c, "/c", policy.Policy{TTL: 10 * time.Second, RefreshAhead: 0.5}, o2)
		do(h, "GET", "/c")
		time.Sleep(6 * time.Second)
		do(h, "GET", "/c") // starts a 5s refresh
		short, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Close(short); err != context.DeadlineExceeded {
			t.Errorf("Close with a short deadline = %v, want DeadlineExceeded", err)
		}
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if n := o.calls.Load(); n != 2 {
			t.Errorf("refresh did not finish before Close returned: %d calls", n)
		}
		time.Sleep(7 * time.Second) // past the new entry's refresh point
		do(h, "GET", "/c")
		synctest.Wait()
		if s := c.Stats(); s.RefreshDropped != 1 {
			t.Errorf("refresh after Close: dropped = %d, want 1", s.RefreshDropped)
		}
	})
}

// TestXFetchDistribution checks the XFetch rule against its closed form:
// with gap g to expiry and recompute time delta, a draw refreshes with
// probability exp(-g / (delta*beta)).
func TestXFetchDistribution(t *testing.T) {
	expiry := time.Unix(1000, 0)
	delta := 100 * time.Millisecond
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		gap  time.Duration
		beta float64
	}{
		{0, 1}, {50 * time.Millisecond, 1}, {100 * time.Millisecond, 1}, {300 * time.Millisecond, 1},
		{100 * time.Millisecond, 2}, {time.Second, 1},
	}
	const draws = 200000
	for _, tt := range tests {
		t.Run(fmt.Sprintf("gap=%v beta=%v", tt.gap, tt.beta), func(t *testing.T) {
			hits := 0
			for range draws {
				if xfetch(expiry.Add(-tt.gap), expiry, delta, tt.beta, rng.Float64()) {
					hits++
				}
			}
			p := math.Exp(-float64(tt.gap) / (float64(delta) * tt.beta))
			got := float64(hits) / draws
			sigma := math.Sqrt(p * (1 - p) / draws)
			if math.Abs(got-p) > 5*sigma+1e-4 {
				t.Errorf("refresh rate %.4f, want %.4f ± %.4f", got, p, 5*sigma)
			}
		})
	}
}

func TestXFetchRefreshesAcrossInstancesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		o := versioned(200 * time.Millisecond)
		hs := instances(t, store, 4, "/x", policy.Policy{TTL: 10 * time.Second, XFetchBeta: 1, StaleWhileRevalidate: 5 * time.Second}, o)
		do(hs[0], "GET", "/x")
		// Steady traffic through ten lifetimes: every request is served from
		// the cache (XFetch refreshes early; the rare refresh that starts too
		// late is covered by stale-while-revalidate), and refreshes happen
		// about once per lifetime across the four instances.
		for i := range 1000 {
			time.Sleep(100 * time.Millisecond)
			if got := do(hs[i%4], "GET", "/x"); !got.isHit() {
				t.Fatalf("request %d at %v was not a hit: %q", i, time.Duration(i)*100*time.Millisecond, got.cacheStatus())
			}
		}
		synctest.Wait()
		if n := o.calls.Load(); n < 10 || n > 13 {
			t.Errorf("origin calls over 10 lifetimes = %d, want 10..13", n)
		}
	})
}

// TestStaleIfErrorSharedWithWaiters: requests that waited on a fill whose
// origin failed get the stale entry marked as such, not as collapsed.
func TestStaleIfErrorSharedWithWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		var failing atomic.Bool
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				time.Sleep(100 * time.Millisecond)
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "good")
		}}
		h := mux(t, c, "/w", policy.Policy{TTL: 10 * time.Second, StaleIfError: time.Minute}, o)
		do(h, "GET", "/w")
		failing.Store(true)
		time.Sleep(20 * time.Second)
		results := make(chan result, 5)
		for range 5 {
			go func() { results <- do(h, "GET", "/w") }()
		}
		for range 5 {
			got := <-results
			if got.body != "good" || !strings.Contains(got.cacheStatus(), "detail=stale-if-error") {
				t.Errorf("got %q %q, want the stale entry marked stale-if-error", got.body, got.cacheStatus())
			}
		}
		if n := o.calls.Load(); n != 2 {
			t.Errorf("origin calls = %d, want the fill and one failed refill", n)
		}
	})
}
