package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

// jsonOrigin answers with a JSON document of about n bytes that names the
// path and the query, plus validators.
func jsonOrigin(n int) *counter {
	return &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Etag", `"`+r.URL.Path+`"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Header().Set("X-Origin", "yes")
		fmt.Fprintf(w, `{"path":%q,"query":%q,"pad":%q}`, r.URL.Path, r.URL.RawQuery, strings.Repeat("ab", n/2))
	}}
}

func TestMissThenHitOverTheWire(t *testing.T) {
	o := jsonOrigin(2000)
	a := startApp(t, appConfig{prefix: prefix(t), routes: []route{
		{"GET /users/{id}", policy.Policy{TTL: time.Minute}, o},
	}})
	direct := httptest.NewServer(o)
	defer direct.Close()
	want := get(direct.URL + "/users/15")

	for _, proto := range []string{"identity", "gzip"} {
		t.Run(proto, func(t *testing.T) {
			var headers []string
			if proto == "gzip" {
				headers = []string{"Accept-Encoding", "gzip"}
			}
			miss := get(a.URL+"/users/15", headers...)
			hit := get(a.URL+"/users/15", headers...)
			if miss.err != nil || hit.err != nil {
				t.Fatal(miss.err, hit.err)
			}
			if !hit.hit() {
				t.Fatalf("second request: Cache-Status %q", hit.cacheStatus())
			}
			body := hit.body
			if proto == "gzip" {
				if hit.header.Get("Content-Encoding") != "gzip" {
					t.Fatalf("gzip client got Content-Encoding %q", hit.header.Get("Content-Encoding"))
				}
				zr, err := gzip.NewReader(strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(zr)
				body = string(b)
			}
			if body != want.body {
				t.Errorf("hit body differs from the origin's (%d vs %d bytes)", len(body), len(want.body))
			}
			for _, h := range []string{"Content-Type", "Last-Modified", "X-Origin"} {
				if hit.header.Get(h) != want.header.Get(h) {
					t.Errorf("%s = %q, origin sent %q", h, hit.header.Get(h), want.header.Get(h))
				}
			}
			if proto == "identity" && hit.header.Get("Etag") != want.header.Get("Etag") {
				t.Errorf("ETag = %q, origin sent %q", hit.header.Get("Etag"), want.header.Get("Etag"))
			}
		})
	}
	if n := o.calls.Load(); n != 2 { // one direct, one fill
		t.Errorf("origin calls = %d, want 2", n)
	}
}

func TestRedisLayout(t *testing.T) {
	p := prefix(t)
	o := jsonOrigin(200)
	a := startApp(t, appConfig{prefix: p, routes: []route{
		{"GET /users/{id}/posts/{post}", policy.Policy{TTL: time.Minute, BucketParams: []string{"id"}, QueryParams: []string{"page"}}, o},
	}})
	for _, target := range []string{
		"/users/15/posts/1", "/users/15/posts/2", "/users/15/posts/2?page=2", "/users/15/posts/2?page=2&utm=x",
		"/users/16/posts/1",
	} {
		if r := get(a.URL + target); r.status != 200 {
			t.Fatalf("%s: %d", target, r.status)
		}
	}
	ctx := context.Background()
	keys := scanKeys(t, a.Client, p+":*")
	var buckets []string
	for _, k := range keys {
		if strings.HasPrefix(k, p+":b:") {
			buckets = append(buckets, k)
		}
	}
	if len(buckets) != 2 || len(keys) != 2 {
		t.Fatalf("keys = %q, want two bucket hashes and nothing else (locks released)", keys)
	}
	want15 := p + ":b:{GET /users/%7Bid%7D/posts/%7Bpost%7D|15}"
	var found bool
	for _, b := range buckets {
		if strings.Count(b, "{") != 1 || strings.Count(b, "}") != 1 {
			t.Errorf("bucket key %q has stray braces", b)
		}
		typ := a.Client.Type(ctx, b).Val()
		if typ != "hash" {
			t.Errorf("%s is a %s", b, typ)
		}
		// A lifetime of one minute, and one more for revalidation: the
		// origin sends an ETag.
		ttl := a.Client.PTTL(ctx, b).Val()
		if ttl <= time.Minute || ttl > 2*time.Minute {
			t.Errorf("%s TTL = %v, want (1m, 2m]", b, ttl)
		}
		if b == want15 {
			found = true
			// Three variants: post 1, post 2, post 2 page 2 (utm is not keyed).
			if n := a.Client.HLen(ctx, b).Val(); n != 3 {
				t.Errorf("bucket of user 15 has %d fields, want 3", n)
			}
		}
	}
	if !found {
		t.Errorf("no bucket %q among %q", want15, buckets)
	}
	if n := o.calls.Load(); n != 4 {
		t.Errorf("origin calls = %d, want 4 (the utm variant is a hit)", n)
	}
	// The bucket TTL only grows: a shorter-lived write does not shorten it.
	before := a.Client.PTTL(ctx, want15).Val()
	a.Client.Expire(ctx, want15, 2*time.Hour)
	get(a.URL + "/users/15/posts/3")
	if after := a.Client.PTTL(ctx, want15).Val(); after < time.Hour {
		t.Errorf("TTL shrank from 2h to %v (was %v before)", after, before)
	}
}

func TestConditionalHeadAndBypassOverTheWire(t *testing.T) {
	o := jsonOrigin(100)
	a := startApp(t, appConfig{prefix: prefix(t), routes: []route{
		{"/doc", policy.Policy{TTL: time.Minute}, o},
	}})
	get(a.URL + "/doc")
	tests := []struct {
		name       string
		method     string
		headers    []string
		wantStatus int
		wantHit    bool
		wantCalls  int64
	}{
		{"if-none-match", "GET", []string{"If-None-Match", `"/doc"`}, 304, true, 0},
		{"if-modified-since", "GET", []string{"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}, 304, true, 0},
		{"head", "HEAD", nil, 200, true, 0},
		{"post bypasses", "POST", nil, 200, false, 1},
		{"authorization bypasses", "GET", []string{"Authorization", "Bearer t"}, 200, false, 1},
		{"cookie bypasses", "GET", []string{"Cookie", "s=1"}, 200, false, 1},
		{"no-store bypasses", "GET", []string{"Cache-Control", "no-store"}, 200, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := o.calls.Load()
			r := request(client, tt.method, a.URL+"/doc", tt.headers...)
			if r.err != nil || r.status != tt.wantStatus || r.hit() != tt.wantHit {
				t.Fatalf("got %d %q (err %v), want %d hit=%v", r.status, r.cacheStatus(), r.err, tt.wantStatus, tt.wantHit)
			}
			if calls := o.calls.Load() - before; calls != tt.wantCalls {
				t.Errorf("origin calls = %d, want %d", calls, tt.wantCalls)
			}
			if tt.method == "HEAD" && r.header.Get("Content-Length") == "" {
				t.Errorf("HEAD without Content-Length")
			}
		})
	}
}

func TestNeverStoreOverTheWire(t *testing.T) {
	tests := []struct {
		name string
		pol  policy.Policy
		fn   http.HandlerFunc
	}{
		{"set-cookie", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Set-Cookie", "s=1")
			io.WriteString(w, "x")
		}},
		{"private", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "private")
			io.WriteString(w, "x")
		}},
		{"no-store", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, "x")
		}},
		{"unlisted status", policy.Policy{Statuses: []int{200}}, func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}},
		{"too large", policy.Policy{MaxBodyBytes: 1 << 10}, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("y", 4<<10))
		}},
		{"short body", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only this")
			panic(http.ErrAbortHandler) // how a handler ends a response it cannot finish
		}},
		{"panic", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "half")
			panic("boom")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := prefix(t)
			o := &counter{fn: tt.fn}
			a := startApp(t, appConfig{prefix: p, routes: []route{{"/n", tt.pol, o}}})
			for range 3 {
				get(a.URL + "/n")
			}
			if n := o.calls.Load(); n != 3 {
				t.Errorf("origin calls = %d, want 3 (nothing stored)", n)
			}
			for _, k := range scanKeys(t, a.Client, p+":*") {
				if n := a.Client.HLen(context.Background(), k).Val(); n != 0 {
					t.Errorf("key %s holds %d fields", k, n)
				}
			}
		})
	}
}

// TestFlushTurnsHitsIntoMisses: a flushed Redis is just an empty cache. On
// the single node it flushes a server of its own; on the cluster (which
// only TestCluster's subtests use, one at a time) every master.
func TestFlushTurnsHitsIntoMisses(t *testing.T) {
	var rc redis.UniversalClient
	if onCluster != nil {
		rc = newClient()
	} else {
		rc = startServer(t).Client()
	}
	o := jsonOrigin(100)
	a := startApp(t, appConfig{client: rc, prefix: prefix(t), routes: []route{{"/f", policy.Policy{}, o}}})
	get(a.URL + "/f")
	if r := get(a.URL + "/f"); !r.hit() {
		t.Fatalf("not a hit before the flush: %q", r.cacheStatus())
	}
	flushAll(t, a.Client)
	if r := get(a.URL + "/f"); r.status != 200 || r.hit() {
		t.Fatalf("after FLUSHALL: %d %q, want a miss", r.status, r.cacheStatus())
	}
	if r := get(a.URL + "/f"); !r.hit() {
		t.Fatalf("not refilled: %q", r.cacheStatus())
	}
}

// commandCounter counts the commands a client sends.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// flushAll empties the server of c, or every master of a cluster client.
func flushAll(t testing.TB, c redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.FlushAll(ctx).Err()
		})
	default:
		err = c.FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestOneCommandPerFreshHit(t *testing.T) {
	rc := newClient()
	var cc commandCounter
	rc.AddHook(&cc)
	a := startApp(t, appConfig{client: rc, prefix: prefix(t), routes: []route{{"GET /h/{id}", policy.Policy{}, jsonOrigin(2000)}},
		opts: []httpcache.Option{httpcache.WithoutStartupHealthCheck()}}) // its commands would be counted
	get(a.URL + "/h/1")
	cmdstats := commandStats(t, rc)
	before := cc.n.Load()
	const hits = 200
	for range hits {
		if r := get(a.URL+"/h/1", "Accept-Encoding", "gzip"); !r.hit() {
			t.Fatalf("not a hit: %q", r.cacheStatus())
		}
	}
	n := cc.n.Load() - before
	if n != hits {
		t.Errorf("client sent %d commands for %d hits, want exactly one each", n, hits)
	}
	after := commandStats(t, rc)
	if d := after["hget"] - cmdstats["hget"]; d != hits {
		t.Errorf("server counted %d HGETs for %d hits", d, hits)
	}
	t.Logf("redis commands per fresh hit: %.2f", float64(n)/hits)
}

// commandStats returns the server's per-command call counts; for a cluster
// client, the sums over every master.
func commandStats(t testing.TB, c redis.UniversalClient) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	m := map[string]int64{}
	add := func(ctx context.Context, n redis.UniversalClient) error {
		info, err := n.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if !ok {
				continue
			}
			var calls int64
			fmt.Sscan(strings.SplitN(rest, ",", 2)[0], &calls)
			m[strings.TrimPrefix(name, "cmdstat_")] += calls
		}
		return nil
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return add(ctx, n) })
	default:
		err = add(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStreamingOverH1AndH2: the recorder keeps http.Flusher and Unwrap
// working, so a streaming handler streams through the cache on both
// protocols, and is not stored.
func TestStreamingOverH1AndH2(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := "h1"
		if tls {
			name = "h2"
		}
		t.Run(name, func(t *testing.T) {
			proceed := make(chan struct{})
			o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
					http.Error(w, "no deadline control: "+err.Error(), 500)
					return
				}
				io.WriteString(w, "first;")
				if err := rc.Flush(); err != nil {
					t.Errorf("flush: %v", err)
				}
				<-proceed
				io.WriteString(w, "second")
			}}
			a := startApp(t, appConfig{prefix: prefix(t), tls: tls, routes: []route{{"/stream", policy.Policy{}, o}}})
			c := a.srv.Client()
			res, err := c.Get(a.URL + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if tls && res.ProtoMajor != 2 {
				t.Fatalf("proto %s, want HTTP/2", res.Proto)
			}
			buf := make([]byte, len("first;"))
			if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "first;" {
				t.Fatalf("first chunk %q %v: the flush did not reach the client", buf, err)
			}
			close(proceed)
			rest, _ := io.ReadAll(res.Body)
			if string(rest) != "second" {
				t.Fatalf("rest = %q", rest)
			}
			if r := request(c, "GET", a.URL+"/stream"); r.hit() {
				t.Errorf("a flushed stream was stored")
			}
		})
	}
}

// TestBodyMatchesContentLengthOnHit: hits carry an exact Content-Length
// over the wire for both codings.
func TestBodyMatchesContentLengthOnHit(t *testing.T) {
	a := startApp(t, appConfig{prefix: prefix(t), routes: []route{{"/c", policy.Policy{}, jsonOrigin(5000)}}})
	get(a.URL + "/c")
	for _, ae := range []string{"", "gzip"} {
		r := get(a.URL+"/c", "Accept-Encoding", ae)
		if !r.hit() || r.header.Get("Content-Length") != fmt.Sprint(len(r.body)) {
			t.Errorf("AE %q: Content-Length %q for %d bytes (%q)", ae, r.header.Get("Content-Length"), len(r.body), r.cacheStatus())
		}
		if ae == "gzip" && bytes.Equal([]byte(r.body[:2]), []byte{0x1f, 0x8b}) == false {
			t.Errorf("gzip body does not start with the gzip magic")
		}
	}
}

// TestRefreshAheadUnderLoad: a handful of hot keys with a one-second TTL are
// read through several instances for six lifetimes. Refresh-ahead renews
// each entry in the background before it expires (stale-while-revalidate
// covers a late refresh), so every response after the first fill is served
// from the cache, and the instances together call the origin about once per
// lifetime per key, not once per instance.
func TestRefreshAheadUnderLoad(t *testing.T) {
	const (
		ttl       = time.Second
		lifetimes = 6
		hotKeys   = 4
		instances = 3
		workers   = 6
	)
	var calls [hotKeys]atomic.Int64
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		var id int
		fmt.Sscan(r.PathValue("id"), &id)
		n := calls[id].Add(1)
		fmt.Fprintf(w, "hot %d version %d", id, n)
	}}
	pol := policy.Policy{TTL: ttl, RefreshAhead: 0.8, StaleWhileRevalidate: 2 * ttl}
	apps := startApps(t, instances, appConfig{
		prefix: prefix(t),
		routes: []route{{"GET /hot/{id}", pol, o}},
		opts:   []httpcache.Option{patient()},
	}, nil)
	for id := range hotKeys {
		if r := get(fmt.Sprintf("%s/hot/%d", apps[0].URL, id), "Host", serviceHost); r.status != 200 || r.hit() {
			t.Fatalf("first request of key %d: %d %q, want a miss", id, r.status, r.cacheStatus())
		}
	}

	var (
		requests, stale atomic.Int64
		mu              sync.Mutex
		bad             []string
	)
	deadline := time.Now().Add(lifetimes * ttl)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i++ {
				id := i % hotKeys
				r := get(fmt.Sprintf("%s/hot/%d", apps[i%instances].URL, id), "Host", serviceHost)
				requests.Add(1)
				if strings.Contains(r.cacheStatus(), "stale-while-revalidate") {
					stale.Add(1)
				}
				if r.err != nil || r.status != 200 || !r.hit() || !strings.HasPrefix(r.body, fmt.Sprintf("hot %d version ", id)) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("key %d: %d %q %q err=%v", id, r.status, r.body, r.cacheStatus(), r.err))
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond) // bounded load
			}
		})
	}
	wg.Wait()

	if len(bad) > 0 {
		t.Errorf("%d of %d responses were not hits with the right body; first: %s", len(bad), requests.Load(), bad[0])
	}
	var st httpcache.Stats
	for _, a := range apps {
		s := a.Cache.Stats()
		st.Refreshed += s.Refreshed
		st.RefreshSkipped += s.RefreshSkipped
		st.RefreshDropped += s.RefreshDropped
		st.RefreshFailed += s.RefreshFailed
	}
	// A key is refreshed only once its entry is 0.8 TTL old, and an
	// instance that takes the lock after another refreshed finds the entry
	// no longer due: refreshes are at least 0.8 TTL apart, so six
	// lifetimes hold at most seven of them, plus the first fill.
	per := make([]int64, hotKeys)
	for id := range hotKeys {
		per[id] = calls[id].Load()
		if per[id] > lifetimes+2 {
			t.Errorf("key %d: %d origin calls in %d lifetimes, want at most %d", id, per[id], lifetimes, lifetimes+2)
		}
		if per[id] < 2 {
			t.Errorf("key %d: %d origin calls: never refreshed", id, per[id])
		}
	}
	t.Logf("%d requests over %d instances in %d lifetimes: %d served stale while revalidating; origin calls per key %v; refreshed %d, skipped %d (another holder), dropped %d, failed %d",
		requests.Load(), instances, lifetimes, stale.Load(), per, st.Refreshed, st.RefreshSkipped, st.RefreshDropped, st.RefreshFailed)
}

// TestStaleIfErrorOnRedis: while the origin fails, clients of every
// instance keep getting the stale entry from Redis inside its
// stale-if-error window; past the window the failure goes through; once the
// origin recovers, fresh content is stored and served.
func TestStaleIfErrorOnRedis(t *testing.T) {
	const (
		ttl = 500 * time.Millisecond
		sie = 2 * time.Second
	)
	var mode atomic.Value // "v1", "down", "v2"
	mode.Store("v1")
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		switch m := mode.Load().(string); m {
		case "down":
			http.Error(w, "origin down", http.StatusInternalServerError)
		default:
			io.WriteString(w, "content "+m)
		}
	}}
	// A short lock wait: a request that misses another instance's fill
	// notification (see TestWaiterBetweenPublishAndUnlock) serves the stale
	// entry once the wait is over, still inside the window.
	pol := policy.Policy{TTL: ttl, StaleIfError: sie, LockWait: 500 * time.Millisecond}
	apps := startApps(t, 2, appConfig{prefix: prefix(t), routes: []route{
		{"GET /s/{id}", pol, o},
	}, opts: []httpcache.Option{patient()}}, nil)
	// The entry is stored between filled and stored.
	filled := time.Now()
	if r := get(apps[0].URL+"/s/1", "Host", serviceHost); r.status != 200 || r.body != "content v1" {
		t.Fatalf("fill: %d %q", r.status, r.body)
	}
	stored := time.Now()
	if r := get(apps[1].URL+"/s/1", "Host", serviceHost); !r.hit() || r.body != "content v1" {
		t.Fatalf("not shared: %q %q", r.cacheStatus(), r.body)
	}
	mode.Store("down")
	time.Sleep(time.Until(filled.Add(ttl + 50*time.Millisecond))) // past fresh

	before := o.calls.Load()
	served, lockWait := 0, 0
	// Until half the window, so that a slow request still ends inside it.
	for time.Now().Before(filled.Add(ttl + sie/2)) {
		for i, r := range fire(apps, 10, "/s/1") {
			if r.err != nil || r.status != 200 || r.body != "content v1" {
				t.Fatalf("response %d inside the stale-if-error window: %d %q %q err=%v", i, r.status, r.body, r.cacheStatus(), r.err)
			}
			served++
			if strings.Contains(r.cacheStatus(), "detail=lock-wait") {
				lockWait++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tried := o.calls.Load() - before
	if tried == 0 {
		t.Errorf("the origin was never tried while the entry was stale")
	}
	r := get(apps[0].URL+"/s/1", "Host", serviceHost)
	if !strings.Contains(r.cacheStatus(), "fwd-status=500") || !strings.Contains(r.cacheStatus(), "detail=stale-if-error") {
		t.Errorf("stale response's Cache-Status %q, want fwd-status=500 and detail=stale-if-error", r.cacheStatus())
	}

	time.Sleep(time.Until(stored.Add(ttl + sie + 50*time.Millisecond))) // past the window
	if r := get(apps[1].URL+"/s/1", "Host", serviceHost); r.status != 500 {
		t.Errorf("past the stale-if-error window: %d %q %q, want the origin's 500", r.status, r.body, r.cacheStatus())
	}

	mode.Store("v2")
	if r := get(apps[1].URL+"/s/1", "Host", serviceHost); r.status != 200 || r.body != "content v2" || !strings.Contains(r.cacheStatus(), "stored") {
		t.Fatalf("after recovery: %d %q %q, want fresh content stored", r.status, r.body, r.cacheStatus())
	}
	if r := get(apps[0].URL+"/s/1", "Host", serviceHost); !r.hit() || r.body != "content v2" {
		t.Fatalf("after recovery, the other instance: %q %q, want a hit on the fresh content", r.cacheStatus(), r.body)
	}
	t.Logf("%d requests served stale while the origin failed (%d origin attempts; %d after a whole lock wait)", served, tried, lockWait)
}

// holdUnlock delays the first fill-lock release (the redsync unlock script
// on a "<prefix>:l:{" key) that follows a fill notification, and reports the
// notification on published.
type holdUnlock struct {
	delay     time.Duration
	published chan struct{}
	armed     atomic.Bool
}

func (h *holdUnlock) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdUnlock) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch cmd.Name() {
		case "eval", "evalsha":
			if len(cmd.Args()) > 3 && strings.Contains(fmt.Sprint(cmd.Args()[3]), ":l:{") && h.armed.CompareAndSwap(true, false) {
				time.Sleep(h.delay)
			}
		}
		err := next(ctx, cmd)
		if n := cmd.Name(); n == "publish" || n == "spublish" {
			h.armed.Store(true)
			select {
			case h.published <- struct{}{}:
			default:
			}
		}
		return err
	}
}
func (h *holdUnlock) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestWaiterBetweenPublishAndUnlock reproduces a lost wake-up: the filler
// publishes its fill notification before it releases the fill lock, so a
// request of another instance that tries the lock in between finds it
// held, waits for a notification that has already gone out, and sits out
// the whole lock wait. When the fill stored nothing (here an uncacheable
// response; also a failed fill, or stale served on an origin error) the
// waiter's periodic re-read of the store cannot rescue it either. The
// window is normally a round trip or two wide; the test widens it by
// holding the filler's unlock for half a second.
func TestWaiterBetweenPublishAndUnlock(t *testing.T) {
	const lockWait = 3 * time.Second
	hook := &holdUnlock{delay: 500 * time.Millisecond, published: make(chan struct{}, 1)}
	ca := newClient()
	ca.AddHook(hook)
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "s=1") // not cacheable: nothing to re-read
		io.WriteString(w, "private")
	}}
	cfg := appConfig{prefix: prefix(t), routes: []route{{"GET /u/{id}", policy.Policy{LockWait: lockWait}, o}}}
	cfg.client = ca
	a := startApp(t, cfg)
	cfg.client = nil
	b := startApp(t, cfg)
	get(b.URL+"/u/0", "Host", serviceHost) // open b's connections and subscription

	done := make(chan resp, 1)
	go func() { done <- get(a.URL+"/u/1", "Host", serviceHost) }()
	select {
	case <-hook.published: // a's fill is over; its lock is still held
	case <-time.After(10 * time.Second):
		t.Fatal("no fill notification from the first instance")
	}
	start := time.Now()
	r := get(b.URL+"/u/1", "Host", serviceHost)
	took := time.Since(start)
	if ra := <-done; ra.status != 200 || r.status != 200 {
		t.Fatalf("responses %d and %d", ra.status, r.status)
	}
	if took > lockWait*2/3 {
		t.Errorf("the other instance's request took %v (lock wait %v): it waited for a notification sent before it started waiting", took.Round(time.Millisecond), lockWait)
	}
}
