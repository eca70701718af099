package integration

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

// Standards mode (policy.Standards) across four instances on real Redis:
// the response's headers decide, its Date and Age survive the store,
// responses that vary on unkeyed headers are stored under secondary keys
// that every instance finds, revalidation and authorization follow RFC
// 9111, and a hit that does not vary is still one command.
func TestStandardsAcrossInstances(t *testing.T) {
	originDate := time.Now().Add(-10 * time.Second).UTC().Truncate(time.Second)
	var inm atomic.Value
	inm.Store("")
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("kind") {
		case "dated":
			w.Header().Set("Date", originDate.Format(http.TimeFormat))
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Age", "5")
			fmt.Fprint(w, "dated")
		case "tenant":
			time.Sleep(200 * time.Millisecond)
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "X-Tenant")
			fmt.Fprintf(w, "for %s", r.Header.Get("X-Tenant"))
		case "etag":
			inm.Store(r.Header.Get("If-None-Match"))
			if r.Header.Get("If-None-Match") == `"e1"` {
				w.Header().Set("Cache-Control", "max-age=1")
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("Cache-Control", "max-age=1")
			w.Header().Set("ETag", `"e1"`)
			fmt.Fprint(w, "validated body")
		case "auth":
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "for %s", r.Header.Get("Authorization"))
		case "public":
			w.Header().Set("Cache-Control", "max-age=60, public")
			fmt.Fprint(w, "for all")
		}
	}}
	pfx := prefix(t)
	apps := startApps(t, 4, appConfig{prefix: pfx, opts: []httpcache.Option{patient()},
		routes: []route{{"GET /s/{kind}", policy.Policy{Standards: true}, o}}}, nil)
	at := func(i int) string { return apps[i%4].URL }

	t.Run("date and age", func(t *testing.T) {
		get(at(0)+"/s/dated", "Host", serviceHost)
		for i := range 4 {
			r := get(at(i)+"/s/dated", "Host", serviceHost)
			age, _ := strconv.Atoi(r.header.Get("Age"))
			if !r.hit() || r.header.Get("Date") != originDate.Format(http.TimeFormat) || age < 10 || age > 13 {
				t.Errorf("instance %d: hit %t, Date %q, Age %q; want the origin's Date and an age of about 10s (RFC 9111 §4.2.3)",
					i, r.hit(), r.header.Get("Date"), r.header.Get("Age"))
			}
		}
	})

	t.Run("vary stampede", func(t *testing.T) {
		before := o.calls.Load()
		tenants := []string{"a", "b", "c", "d"}
		out := make([]resp, 200)
		var wg sync.WaitGroup
		for i := range out {
			wg.Go(func() { out[i] = get(at(i)+"/s/tenant", "Host", serviceHost, "X-Tenant", tenants[i%4]) })
		}
		wg.Wait()
		for i, r := range out {
			if r.err != nil || r.body != "for "+tenants[i%4] {
				t.Fatalf("request %d (tenant %s): %q %v (%s)", i, tenants[i%4], r.body, r.err, r.cacheStatus())
			}
		}
		calls := o.calls.Load() - before
		if calls < 4 || calls > 16 {
			t.Errorf("origin calls = %d, want 4 to 16 (per tenant, at most one per instance)", calls)
		}
		for i := range 8 {
			if r := get(at(i)+"/s/tenant", "Host", serviceHost, "X-Tenant", tenants[i%4]); !r.hit() || r.body != "for "+tenants[i%4] {
				t.Errorf("instance %d tenant %s: %q (%s), want a hit", i%4, tenants[i%4], r.body, r.cacheStatus())
			}
		}
		t.Logf("200 requests of 4 tenants over 4 instances: %d origin calls", calls)
		// The layout: one marker and one secondary field per tenant.
		fields := 0
		for _, key := range scanKeys(t, apps[0].Client, pfx+":b:*") {
			m, err := apps[0].Client.HGetAll(context.Background(), key).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range m {
				if len(f) == 32 {
					fields++
				} else if strings.HasPrefix(v, "\x03") && !strings.Contains(v, "X-Tenant") {
					t.Errorf("marker %q does not name X-Tenant", v)
				}
			}
		}
		if fields != 4 {
			t.Errorf("%d secondary fields in Redis, want 4", fields)
		}
	})

	t.Run("revalidation across instances", func(t *testing.T) {
		get(at(0)+"/s/etag", "Host", serviceHost)
		time.Sleep(1100 * time.Millisecond)
		before := o.calls.Load()
		r := get(at(1)+"/s/etag", "Host", serviceHost)
		if r.body != "validated body" || inm.Load() != `"e1"` || o.calls.Load() != before+1 {
			t.Errorf("stale entry: %q after If-None-Match %q, %d calls; want revalidated with one conditional call", r.body, inm.Load(), o.calls.Load()-before)
		}
		if r := get(at(2)+"/s/etag", "Host", serviceHost); !r.hit() {
			t.Errorf("after the 304, instance 2: %s, want a hit", r.cacheStatus())
		}
	})

	t.Run("authorization", func(t *testing.T) {
		get(at(0)+"/s/auth", "Host", serviceHost, "Authorization", "Bearer ann")
		if r := get(at(1)+"/s/auth", "Host", serviceHost); r.hit() || r.body != "for " {
			t.Errorf("anonymous request after ann's: %q (%s), want its own answer", r.body, r.cacheStatus())
		}
		if r := get(at(2)+"/s/auth", "Host", serviceHost, "Authorization", "Bearer bob"); r.hit() || r.body != "for Bearer bob" {
			t.Errorf("bob after an anonymous entry: %q (%s), want his own answer (RFC 9111 §3.5)", r.body, r.cacheStatus())
		}
		get(at(0)+"/s/public", "Host", serviceHost, "Authorization", "Bearer ann")
		if r := get(at(3)+"/s/public", "Host", serviceHost); !r.hit() || r.body != "for all" {
			t.Errorf("public answer to ann, then anonymous: %q (%s), want a hit", r.body, r.cacheStatus())
		}
	})
}

// A hit on a standards route whose response does not vary is one
// command; one that varies on an unkeyed header is two.
func TestStandardsCommandsPerHit(t *testing.T) {
	rc := newClient()
	var cc commandCounter
	rc.AddHook(&cc)
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.PathValue("kind") == "varies" {
			w.Header().Set("Vary", "X-Tenant")
		}
		fmt.Fprint(w, strings.Repeat("x", 2000))
	}}
	a := startApp(t, appConfig{client: rc, prefix: prefix(t), routes: []route{{"GET /c/{kind}", policy.Policy{Standards: true}, o}},
		opts: []httpcache.Option{httpcache.WithoutStartupHealthCheck()}})
	for kind, want := range map[string]int64{"plain": 1, "varies": 2} {
		get(a.URL+"/c/"+kind, "X-Tenant", "a")
		before := cc.n.Load()
		const hits = 100
		for range hits {
			if r := get(a.URL+"/c/"+kind, "X-Tenant", "a", "Accept-Encoding", "gzip"); !r.hit() {
				t.Fatalf("%s: not a hit: %q", kind, r.cacheStatus())
			}
		}
		if n := cc.n.Load() - before; n != want*hits {
			t.Errorf("%s: %d commands for %d hits, want %d each", kind, n, hits, want)
		}
	}
}
