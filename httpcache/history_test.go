package httpcache

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// statsAnswer is the JSON of GET .../stats.
type statsAnswer struct {
	Total  Stats            `json:"total"`
	Routes map[string]Stats `json:"routes"`
	Recent RecentStats      `json:"recent"`
}

// recentFixture is a cache with a slow route (the origin takes 40ms of
// the bubble's fake time) and a fast one, and its admin handler.
type recentFixture struct {
	cache *Cache
	app   *http.ServeMux
	admin *adminFixture
}

const slowOrigin = 40 * time.Millisecond

func newRecentFixture(t *testing.T) *recentFixture {
	t.Helper()
	c := newTestCache(t, newMemStore(t))
	app := http.NewServeMux()
	p := policy.Policy{TTL: time.Hour}
	app.Handle("GET /slow/{id}", c.Handler("GET /slow/{id}", p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(slowOrigin)
		fmt.Fprintf(w, "slow %s", r.PathValue("id"))
	})))
	app.Handle("GET /fast", c.Handler("GET /fast", p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fast")
	})))
	admin, err := c.AdminHandler(WithAdminToken("ops", testToken))
	if err != nil {
		t.Fatal(err)
	}
	return &recentFixture{cache: c, app: app, admin: &adminFixture{cache: c, admin: http.StripPrefix("/admin", admin)}}
}

func (f *recentFixture) stats(t *testing.T) statsAnswer {
	t.Helper()
	got := f.admin.call("GET", "/admin/stats", "")
	if got.status != 200 {
		t.Fatalf("stats: %d %s", got.status, got.body)
	}
	var a statsAnswer
	if err := json.Unmarshal([]byte(got.body), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *recentFixture) get(target string, headers ...string) { do(f.app, "GET", target, headers...) }

// TestStatsOriginTime checks origin_calls, origin_time_ns and the derived
// origin_time_saved_ns per route and in total (the sum of the routes'
// savings, not total hits times the overall mean), and that bypasses are
// not counted as origin calls.
func TestStatsOriginTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newRecentFixture(t)
		f.get("/slow/1") // miss: 40ms
		f.get("/slow/2") // miss: 40ms
		for range 3 {
			f.get("/slow/1")
		}
		f.get("/slow/1", "Authorization", "Bearer x") // bypass: not cache work
		f.get("/fast")
		for range 5 {
			f.get("/fast")
		}
		a := f.stats(t)
		slow, fast := a.Routes["GET /slow/{id}"], a.Routes["GET /fast"]
		if slow.OriginCalls != 2 || slow.OriginTimeNs != int64(2*slowOrigin) {
			t.Errorf("slow: %d calls in %v, want 2 in %v", slow.OriginCalls, time.Duration(slow.OriginTimeNs), 2*slowOrigin)
		}
		if slow.Bypassed != 1 {
			t.Errorf("slow: bypassed %d, want 1", slow.Bypassed)
		}
		if want := int64(3 * slowOrigin); slow.OriginTimeSavedNs != want {
			t.Errorf("slow: saved %v, want 3 hits x 40ms", time.Duration(slow.OriginTimeSavedNs))
		}
		if fast.OriginCalls != 1 || fast.OriginTimeNs != 0 || fast.OriginTimeSavedNs != 0 {
			t.Errorf("fast: %d calls in %dns, saved %d; want 1 call of no (fake) time, nothing saved", fast.OriginCalls, fast.OriginTimeNs, fast.OriginTimeSavedNs)
		}
		if a.Total.OriginCalls != 3 || a.Total.OriginTimeSavedNs != slow.OriginTimeSavedNs+fast.OriginTimeSavedNs {
			t.Errorf("total: %d calls, saved %d; want 3 calls and the routes' sum", a.Total.OriginCalls, a.Total.OriginTimeSavedNs)
		}
		// 8 hits times the overall mean (80ms/3 calls) would claim 213ms.
		if a.Total.OriginTimeSavedNs != int64(3*slowOrigin) {
			t.Errorf("total saved %v, want 120ms", time.Duration(a.Total.OriginTimeSavedNs))
		}
		f.cache.Close(t.Context())
	})
}

// TestStatsRecentWindow moves the bubble's fake clock through the recent
// window: deltas appear at once, old traffic leaves the window five
// minutes later, an idle window reads zero with hit ratio 0, and Close
// stops the sampling goroutine (synctest.Test fails on one left blocked).
func TestStatsRecentWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newRecentFixture(t)
		a := f.stats(t)
		if a.Recent.WindowSeconds != 0 || a.Recent.Total != (Recent{}) {
			t.Fatalf("fresh: %+v", a.Recent)
		}
		f.get("/slow/1") // miss
		for range 3 {
			f.get("/slow/1") // hits
		}
		f.get("/fast", "Cookie", "a=b") // bypass
		a = f.stats(t)
		wantSlow := Recent{Hits: 3, Misses: 1, OriginTimeSavedNs: int64(3 * slowOrigin), HitRatio: 0.75}
		if got := a.Recent.Routes["GET /slow/{id}"]; got != wantSlow {
			t.Errorf("slow at once: %+v, want %+v", got, wantSlow)
		}
		if got := a.Recent.Routes["GET /fast"]; got != (Recent{Bypassed: 1}) {
			t.Errorf("fast at once: %+v, want one bypass", got)
		}
		wantTotal := wantSlow
		wantTotal.Bypassed = 1
		if a.Recent.Total != wantTotal {
			t.Errorf("total at once: %+v, want %+v", a.Recent.Total, wantTotal)
		}

		time.Sleep(time.Minute)
		f.get("/slow/2") // miss
		f.get("/slow/2") // hit
		a = f.stats(t)
		if a.Recent.WindowSeconds != 60 {
			t.Errorf("window after a minute: %ds, want 60", a.Recent.WindowSeconds)
		}
		if got := a.Recent.Routes["GET /slow/{id}"]; got.Hits != 4 || got.Misses != 2 || got.HitRatio != 4.0/6 {
			t.Errorf("slow after a minute: %+v, want 4 hits and 2 misses", got)
		}

		// Five minutes after the first traffic, only the second is in the
		// window.
		time.Sleep(4*time.Minute + 15*time.Second)
		a = f.stats(t)
		if w := a.Recent.WindowSeconds; w < 290 || w > 300 {
			t.Errorf("window: %ds, want 290 to 300", w)
		}
		wantSlow = Recent{Hits: 1, Misses: 1, OriginTimeSavedNs: int64(slowOrigin), HitRatio: 0.5}
		if got := a.Recent.Routes["GET /slow/{id}"]; got != wantSlow {
			t.Errorf("slow later: %+v, want %+v", got, wantSlow)
		}
		if a.Routes["GET /slow/{id}"].Hits != 4 {
			t.Errorf("the counters since start lost hits: %+v", a.Routes["GET /slow/{id}"])
		}

		time.Sleep(5 * time.Minute)
		a = f.stats(t)
		for pattern, got := range a.Recent.Routes {
			if got != (Recent{}) {
				t.Errorf("%s idle: %+v, want zeros", pattern, got)
			}
		}
		if a.Recent.Total != (Recent{}) {
			t.Errorf("total idle: %+v", a.Recent.Total)
		}

		// A route declared after the sampling started counts from zero.
		f.app.Handle("GET /late", f.cache.Handler("GET /late", policy.Policy{TTL: time.Hour}, textOrigin("late")))
		f.get("/late")
		f.get("/late")
		if got := f.stats(t).Recent.Routes["GET /late"]; got.Hits != 1 || got.Misses != 1 {
			t.Errorf("late route: %+v, want 1 hit and 1 miss", got)
		}

		f.cache.Close(t.Context())
		f.cache.Close(t.Context()) // idempotent
	})
}

// TestStatsRecentAfterClose checks that a handler made after Close starts
// no sampling and answers zero deltas over no time.
func TestStatsRecentAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		c.Close(t.Context())
		if _, err := c.AdminHandler(WithAdminToken("ops", testToken)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if got := c.recentStats(); got.WindowSeconds != 0 || got.Total != (Recent{}) {
			t.Errorf("after Close: %+v", got)
		}
	})
}

// TestStatsRecentRace reads the recent window while requests count and
// the sampler samples, for the race detector.
func TestStatsRecentRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newRecentFixture(t)
		done := make(chan struct{})
		for i := range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				for j := range 50 {
					f.get(fmt.Sprintf("/slow/%d", (i*50+j)%7))
					if j%10 == 0 {
						time.Sleep(3 * time.Second)
					}
				}
			}()
		}
		go func() {
			defer func() { done <- struct{}{} }()
			for range 20 {
				f.stats(t)
				time.Sleep(time.Second)
			}
		}()
		for range 5 {
			<-done
		}
		a := f.stats(t)
		r := a.Recent.Routes["GET /slow/{id}"]
		if r.Hits+r.Misses != 200 {
			t.Errorf("recent %+v: want 200 answered", r)
		}
		if want := float64(r.Hits) / 200; r.HitRatio != want {
			t.Errorf("hit ratio %v, want %v: collapsed requests are misses already", r.HitRatio, want)
		}
		f.cache.Close(t.Context())
	})
}

// TestStatsRecentLocalHits checks that the recent window carries the
// local tier's hits: at once, in the route's and the total's deltas, and
// not once they leave the window, while the counters since start keep
// them.
func TestStatsRecentLocalHits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t), WithLocalTier(1<<20))
		app := http.NewServeMux()
		const pattern = "GET /items/{id}"
		app.Handle(pattern, c.Handler(pattern, policy.Policy{TTL: time.Hour, Local: true}, textOrigin("item")))
		app.Handle("GET /fast", c.Handler("GET /fast", policy.Policy{TTL: time.Hour}, textOrigin("fast")))
		admin, err := c.AdminHandler(WithAdminToken("ops", testToken))
		if err != nil {
			t.Fatal(err)
		}
		f := &recentFixture{cache: c, app: app, admin: &adminFixture{cache: c, admin: http.StripPrefix("/admin", admin)}}
		// fill fills /items/id and lets the store report the fill (the
		// bubble's clock moves once every goroutine is blocked), so that
		// the next read makes a copy, of an entry stored before it, that
		// stays valid.
		fill := func(id string) {
			f.get("/items/" + id)
			time.Sleep(time.Millisecond)
			f.get("/items/" + id) // a store hit: makes the copy
		}
		fill("1")
		for range 3 {
			if r := do(app, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "detail=local") {
				t.Fatalf("not a local hit: %q", r.cacheStatus())
			}
		}
		f.get("/fast")
		f.get("/fast") // a hit from the store: no local tier on this route

		a := f.stats(t)
		want := Recent{Hits: 4, LocalHits: 3, Misses: 1, HitRatio: 0.8}
		if got := a.Recent.Routes[pattern]; got != want {
			t.Errorf("items at once: %+v, want %+v", got, want)
		}
		if got := a.Recent.Routes["GET /fast"]; got.Hits != 1 || got.LocalHits != 0 {
			t.Errorf("fast at once: %+v, want 1 hit, none local", got)
		}
		if got := a.Recent.Total; got.Hits != 5 || got.LocalHits != 3 {
			t.Errorf("total at once: %+v, want 5 hits, 3 local", got)
		}

		// Six minutes later, only the new traffic is in the window.
		time.Sleep(6 * time.Minute)
		fill("2")
		f.get("/items/2")
		a = f.stats(t)
		want = Recent{Hits: 2, LocalHits: 1, Misses: 1, HitRatio: 2.0 / 3}
		if got := a.Recent.Routes[pattern]; got != want {
			t.Errorf("items later: %+v, want %+v", got, want)
		}
		if a.Recent.Total.LocalHits != 1 {
			t.Errorf("total later: %+v, want 1 local hit", a.Recent.Total)
		}
		if got := a.Routes[pattern].LocalHits; got != 4 {
			t.Errorf("local hits since start %d, want 4", got)
		}
		c.Close(t.Context())
	})
}
