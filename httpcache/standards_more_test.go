package httpcache

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// TestStandardsVaryCollapse sends a stampede of requests with two values
// of a header the responses vary on, over four instances sharing one
// store: each request gets the response for its own value (RFC 9111
// section 4.1), one origin call per value and instance at most before
// the marker is stored, and every later request is a hit.
func TestStandardsVaryCollapse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond)
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "X-Tenant")
			fmt.Fprintf(w, "for %s", r.Header.Get("X-Tenant"))
		}}
		hs := instances(t, store, 4, "/v/{id}", policy.Policy{Standards: true}, o)
		const n = 200
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				tenant := []string{"a", "b"}[i%2]
				results[i] = do(hs[i%4], "GET", "/v/1", "X-Tenant", tenant)
			})
		}
		wg.Wait()
		for i, r := range results {
			want := "for " + []string{"a", "b"}[i%2]
			if r.status != 200 || r.body != want {
				t.Fatalf("request %d (tenant %s) = %d %q (%s), want %q", i, []string{"a", "b"}[i%2], r.status, r.body, r.cacheStatus(), want)
			}
		}
		calls := o.calls.Load()
		if calls < 2 || calls > 8 {
			t.Errorf("origin calls = %d, want 2 to 8 (one per value, at most one per value and instance)", calls)
		}
		for i := range 8 {
			tenant := []string{"a", "b"}[i%2]
			r := do(hs[i%4], "GET", "/v/1", "X-Tenant", tenant)
			if !r.isHit() || r.body != "for "+tenant {
				t.Errorf("after the stampede, tenant %s on instance %d: %q (%s), want a hit", tenant, i%4, r.body, r.cacheStatus())
			}
		}
		if o.calls.Load() != calls {
			t.Errorf("origin called again after the stampede")
		}
	})
}

// TestStandardsVaryRefresh checks that a background refresh of a
// response stored under a secondary key sends the headers it varies on
// and replaces that variant only.
func TestStandardsVaryRefresh(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, newMemStore(t))
	var mu sync.Mutex
	version := map[string]int{}
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		tenant := r.Header.Get("X-Tenant")
		mu.Lock()
		version[tenant]++
		v := version[tenant]
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=2")
		w.Header().Set("Vary", "X-Tenant")
		fmt.Fprintf(w, "%s v%d", tenant, v)
	}}
	h := mux(t, c, "/v/{id}", policy.Policy{Standards: true, RefreshAhead: 0.1}, o)
	do(h, "GET", "/v/1", "X-Tenant", "a")
	do(h, "GET", "/v/1", "X-Tenant", "b")
	time.Sleep(300 * time.Millisecond)
	do(h, "GET", "/v/1", "X-Tenant", "a") // past 10%: refreshes a
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		a, b := version["a"], version["b"]
		mu.Unlock()
		if a == 2 {
			if b != 1 || version[""] != 0 {
				t.Fatalf("versions %v, want a refreshed once, b not, none without the header", version)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refresh of a: versions %v", version)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if r := do(h, "GET", "/v/1", "X-Tenant", "a"); r.body != "a v2" || !r.isHit() {
		t.Errorf("a after refresh = %q (%s), want a v2 hit", r.body, r.cacheStatus())
	}
	if r := do(h, "GET", "/v/1", "X-Tenant", "b"); r.body != "b v1" || !r.isHit() {
		t.Errorf("b after refresh = %q (%s), want b v1 hit", r.body, r.cacheStatus())
	}
}

// TestStandardsInspectVary checks that Inspect follows a vary marker to
// the variant of the headers it is given.
func TestStandardsInspectVary(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, newMemStore(t))
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-Tenant")
		fmt.Fprintf(w, "for %s", r.Header.Get("X-Tenant"))
	}}
	h := mux(t, c, "/v/{id}", policy.Policy{Standards: true}, o)
	do(h, "GET", "/v/1", "X-Tenant", "a") // Host example.com
	in, err := c.Inspect(t.Context(), "http://example.com/v/1", http.Header{"X-Tenant": {"a"}})
	if err != nil || !in.Found || len(in.VaryOn) != 1 || in.VaryOn[0] != "X-Tenant" || len(in.Field) != 64 || in.BodySize != len("for a") {
		t.Errorf("Inspect(tenant a) = %+v, %v; want the variant found through its marker", in, err)
	}
	in, err = c.Inspect(t.Context(), "http://example.com/v/1", http.Header{"X-Tenant": {"b"}})
	if err != nil || in.Found || len(in.VaryOn) != 1 {
		t.Errorf("Inspect(tenant b) = %+v, %v; want not found, varying on X-Tenant", in, err)
	}
}

// TestStandardsLocalTier checks that the local tier holds standards-mode
// entries to the same rules as the store: the origin's Date, ranges, and
// no copy served to an authenticated request the entry does not allow.
func TestStandardsLocalTier(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, newMemStore(t), WithLocalTier(1<<20))
	originDate := time.Now().Add(-5 * time.Second).UTC().Format(http.TimeFormat)
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", originDate)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"l1"`)
		fmt.Fprint(w, "0123456789")
	}}
	h := mux(t, c, "/l/{id}", policy.Policy{Standards: true, Local: true}, o)
	do(h, "GET", "/l/1")
	do(h, "GET", "/l/1") // from the store: becomes the local copy
	deadline := time.Now().Add(2 * time.Second)
	var r result
	for {
		r = do(h, "GET", "/l/1", "Range", "bytes=1-2")
		if strings.Contains(r.cacheStatus(), "detail=local") || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // the first proof of delivery
	}
	if !strings.Contains(r.cacheStatus(), "detail=local") || r.status != http.StatusPartialContent || r.body != "12" || r.header.Get("Date") != originDate {
		t.Fatalf("local hit with a range: %d %q (%s), Date %q; want 206 \"12\" from the local copy with the origin's Date", r.status, r.body, r.cacheStatus(), r.header.Get("Date"))
	}
	if r := do(h, "GET", "/l/1", "Authorization", "Bearer x"); r.isHit() || o.calls.Load() != 2 {
		t.Errorf("authenticated request: %s, %d origin calls; want its own answer (RFC 9111 §3.5)", r.cacheStatus(), o.calls.Load())
	}
}
