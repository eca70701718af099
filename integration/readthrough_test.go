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
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
		ttl := a.Client.PTTL(ctx, b).Val()
		if ttl <= 0 || ttl > time.Minute {
			t.Errorf("%s TTL = %v, want (0, 1m]", b, ttl)
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

// TestFlushTurnsHitsIntoMisses: a flushed Redis is just an empty cache.
func TestFlushTurnsHitsIntoMisses(t *testing.T) {
	srv := startServer(t)
	o := jsonOrigin(100)
	a := startApp(t, appConfig{client: srv.Client(), prefix: prefix(t), routes: []route{{"/f", policy.Policy{}, o}}})
	get(a.URL + "/f")
	if r := get(a.URL + "/f"); !r.hit() {
		t.Fatalf("not a hit before the flush: %q", r.cacheStatus())
	}
	a.Client.FlushAll(context.Background())
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

func TestOneCommandPerFreshHit(t *testing.T) {
	rc := shared.Client()
	var cc commandCounter
	rc.AddHook(&cc)
	a := startApp(t, appConfig{client: rc, prefix: prefix(t), routes: []route{{"GET /h/{id}", policy.Policy{}, jsonOrigin(2000)}}})
	get(a.URL + "/h/1")
	cmdstats := commandStats(t, rc)
	before := cc.n.Load()
	const hits = 200
	for range hits {
		if r := get(a.URL+"/h/1", "Accept-Encoding", "gzip"); !r.hit() {
			t.Fatalf("not a hit: %q", r.cacheStatus())
		}
	}
	if n := cc.n.Load() - before; n != hits {
		t.Errorf("client sent %d commands for %d hits, want exactly one each", n, hits)
	}
	after := commandStats(t, rc)
	if d := after["hget"] - cmdstats["hget"]; d != hits {
		t.Errorf("server counted %d HGETs for %d hits", d, hits)
	}
	t.Logf("redis commands per fresh hit: %.2f", float64(cc.n.Load()-before)/hits)
}

// commandStats returns the server's per-command call counts.
func commandStats(t testing.TB, c *redis.Client) map[string]int64 {
	t.Helper()
	info := c.Info(context.Background(), "commandstats").Val()
	m := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		var n int64
		fmt.Sscan(strings.SplitN(rest, ",", 2)[0], &n)
		m[strings.TrimPrefix(name, "cmdstat_")] = n
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
