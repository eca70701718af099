package httpcache

// Review C (outside attacker, request path since 52b4332). Each test is an
// attack through a real net/http server; it passes when the victim gets
// its own, correct response.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// The tests of this file come from the third outside review
// (2026-12-06), of the request path as changed that day: each comment
// tells what the reviewer tried or found, and the test guards it.

// flakyStore is a memstore whose reads fail while down is set, as a Redis
// that blipped; its purges keep working (they implement storage.Purger).
type flakyStore struct {
	*memstore.Store
	down atomic.Bool
}

func (s *flakyStore) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	if s.down.Load() {
		return nil, errors.New("test: redis blip")
	}
	return s.Store.Get(ctx, bucket, field)
}

func (s *flakyStore) GetForFill(ctx context.Context, bucket, field string) ([]byte, string, error) {
	if s.down.Load() {
		return nil, "", errors.New("test: redis blip")
	}
	return s.Store.GetForFill(ctx, bucket, field)
}

// After a blip opens the circuit, the first request allowed through once
// the cooldown is over is the probe: its store call's outcome must reach
// the breaker, or the breaker stays half-open with its probe "in flight"
// forever and every read of every route bypasses the cache until the
// process restarts. A write whose purge is a tag (or route) purge takes
// the probe and, since bulk purges no longer feed the breaker, never
// reports it. (Subtest "bad query": the same through the hit path, where
// the probe is taken before Key and a malformed query then bypasses
// without a store call; this one predates 52b4332.)
func TestReviewCBreakerProbeLost(t *testing.T) {
	const cooldown = 50 * time.Millisecond
	for _, tt := range []struct {
		name  string
		probe func(wr *wire)
	}{
		{"tag purge of a write", func(wr *wire) {
			if got := wr.send(t, "PUT", "/items/1", strings.NewReader("uno")); got.status != http.StatusNoContent {
				t.Fatalf("write: %d", got.status)
			}
		}},
		{"bad query (predates 52b4332)", func(wr *wire) {
			if got := wr.get(t, "GET", "/items/1?a=%zz"); !strings.Contains(got.cacheStatus(), "detail=query") {
				t.Fatalf("bad query: %q", got.cacheStatus())
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := &flakyStore{Store: newMemStore(t)}
			c := newTestCache(t, store, WithBreaker(2, cooldown))
			it := newItems()
			m := http.NewServeMux()
			m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour,
				Tags: func(r *http.Request) []string { return []string{"item-" + r.PathValue("id")} },
			}, http.HandlerFunc(it.get)))
			m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", PurgeTags(func(r *http.Request) []string {
				return []string{"item-" + r.PathValue("id")}
			}))(http.HandlerFunc(it.put)))
			wr := serveHTTP(t, m)

			wr.get(t, "GET", "/items/2")
			if got := wr.get(t, "GET", "/items/2"); !got.isHit() {
				t.Fatalf("not cached: %q", got.cacheStatus())
			}
			store.down.Store(true) // a blip: two failed reads open the circuit
			wr.get(t, "GET", "/items/2")
			wr.get(t, "GET", "/items/2")
			if got := wr.get(t, "GET", "/items/2"); !strings.Contains(got.cacheStatus(), "store-unavailable") {
				t.Fatalf("the circuit did not open: %q", got.cacheStatus())
			}
			store.down.Store(false) // Redis is back
			time.Sleep(2 * cooldown)

			tt.probe(wr) // the attacker's request lands first after the cooldown

			// The victim: long after the cooldown, with a healthy store.
			var last result
			for range 10 {
				time.Sleep(2 * cooldown)
				if last = wr.get(t, "GET", "/items/2"); last.isHit() {
					return
				}
			}
			t.Errorf("victim 1s after Redis recovered: %q, want a hit (the breaker's probe was lost: the cache is off for good)", last.cacheStatus())
		})
	}
}

// An outer middleware marks an authenticated response as for its client
// only (Cache-Control: private, or a Set-Cookie): a 200 under it is not
// stored. A 304 under it must not be either: the 304's headers are that
// client's. updated() leaves the outer middleware's headers out of the
// decision, so the 304's personal headers are stored and every client
// of the URL gets them. (The Set-Cookie case worked before 52b4332:
// setCookies looked at the whole 304.)
func TestReviewC304UnderOuterPrivate(t *testing.T) {
	for _, tt := range []struct{ name, header, value string }{
		{"cache-control private", "Cache-Control", "private"},
		{"set-cookie", "Set-Cookie", "session=alice-secret"},
		{"no-store", "Cache-Control", "no-store"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Etag", `"v1"`)
				if u, ok := r.Context().Value(userKey{}).(string); ok {
					w.Header().Set("X-Account", u) // the caller's account: personal
				}
				if r.Header.Get("If-None-Match") == `"v1"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				io.WriteString(w, "home page")
			})
			// Outer auth middleware, outside the cache: an API key (not a
			// credential the cache knows of) makes the response personal.
			auth := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if key := r.Header.Get("X-Api-Key"); key != "" {
						w.Header().Set(tt.header, tt.value)
						r = r.WithContext(context.WithValue(r.Context(), userKey{}, "alice"))
					}
					next.ServeHTTP(w, r)
				})
			}
			mw, err := c.Route("GET /home", policy.Policy{TTL: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			m := http.NewServeMux()
			m.Handle("GET /home", auth(mw(origin)))
			wr := serveHTTP(t, m)

			// Control: alice's 200 is not stored.
			if got := wr.get(t, "GET", "/home", "X-Api-Key", "k-alice"); got.header.Get("X-Account") != "alice" || strings.Contains(got.cacheStatus(), "stored") {
				t.Fatalf("alice's 200: X-Account %q, %q", got.header.Get("X-Account"), got.cacheStatus())
			}
			if got := wr.get(t, "GET", "/home"); got.header.Get("X-Account") != "" || !strings.Contains(got.cacheStatus(), "stored") {
				t.Fatalf("anonymous fill: X-Account %q, %q", got.header.Get("X-Account"), got.cacheStatus())
			}
			time.Sleep(1100 * time.Millisecond) // stale; revalidatable (ETag)

			// Alice's request revalidates; her 304 carries her account.
			a := wr.get(t, "GET", "/home", "X-Api-Key", "k-alice")
			if a.header.Get("X-Account") != "alice" || !strings.Contains(a.cacheStatus(), "fwd-status=304") {
				t.Fatalf("alice's revalidation: X-Account %q, %q", a.header.Get("X-Account"), a.cacheStatus())
			}
			victim := wr.get(t, "GET", "/home")
			if victim.header.Get("X-Account") != "" {
				t.Errorf("anonymous victim got alice's 304 headers: X-Account %q (%s; alice's was %q)",
					victim.header.Get("X-Account"), victim.cacheStatus(), a.cacheStatus())
			}
		})
	}
}

type userKey struct{}

// A write whose pattern shares its path with a host-less cached route
// purges that route's bucket only ("own"), and then never resolves its URL:
// a cached route declared for the write's host, which is the one that
// serves that host's reads, keeps the old item. (Predates 52b4332; the
// SameTarget rewrite kept it.)
func TestReviewCWriteMissesHostRoute(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(it.get)))
	m.Handle("GET shop.example/items/{id}", c.Handler("GET shop.example/items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(it.get)))
	m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}")(http.HandlerFunc(it.put)))
	wr := serveHTTP(t, m)
	wr.get(t, "GET", "/items/1", "Host", "shop.example")
	if got := wr.get(t, "GET", "/items/1", "Host", "shop.example"); !got.isHit() || got.body != "one" {
		t.Fatalf("not cached: %q %q", got.cacheStatus(), got.body)
	}
	if got := wr.send(t, "PUT", "/items/1", strings.NewReader("uno"), "Host", "shop.example"); got.status != http.StatusNoContent {
		t.Fatalf("write: %d", got.status)
	}
	if got := wr.get(t, "GET", "/items/1", "Host", "shop.example"); got.body != "uno" {
		t.Errorf("after the write to shop.example/items/1: %q (%s), want the new item", got.body, got.cacheStatus())
	}
}

// A fill whose origin runs out of its FillTimeout without writing now
// answers 504; a 504 is not storable, so the recorder streams it and
// tells the waiters "not for sharing: fetch your own" instead of "failed:
// one of you leads". Every waiter then calls the origin that just timed
// out, at once; other instances' waiters get Fill{} (not Failed) and
// skip their stale entry the same way. (At 52b4332 the empty response was
// held, the fill failed, and the waiters collapsed onto one new leader:
// this test passes there.)
func TestReviewCTimedOutFillReleasesHerd(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	var calls, inflight, peak atomic.Int64
	release := make(chan struct{})
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		cur := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
		}
		if n == 1 {
			<-r.Context().Done() // the hung first call: gives up without writing
			return
		}
		select { // later calls: slow, then fine
		case <-release:
		case <-time.After(2 * time.Second):
		}
		io.WriteString(w, "ok")
	})
	wr := serveHTTP(t, mux(t, c, "GET /slow", policy.Policy{TTL: time.Minute, FillTimeout: 300 * time.Millisecond, LockWait: 5 * time.Second}, origin))
	const waiters = 8
	done := make(chan result, waiters+1)
	go func() { done <- wr.get(t, "GET", "/slow") }()
	time.Sleep(100 * time.Millisecond)
	for range waiters {
		go func() { done <- wr.get(t, "GET", "/slow") }()
	}
	time.Sleep(600 * time.Millisecond) // the leader timed out; the waiters were released
	p := peak.Load()
	close(release)
	for range waiters + 1 {
		<-done
	}
	if p > 2 {
		t.Errorf("after the leader's timeout %d origin calls ran at once (%d in all); want the waiters collapsed onto one new leader", p, calls.Load())
	}
}
