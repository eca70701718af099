package httpcache

// Attacks on the cache, written against the public API: an origin that
// reflects an input, an attacker's request, then a victim's request
// without it. Each test passes when the victim gets its own response.
// SECURITY.md (in the shared design notes) lists the shapes of attack;
// the README's "Security model" says what is keyed and what is not.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// wire is a real net/http server and a client for it.
type wire struct {
	srv    *httptest.Server
	client *http.Client
}

// serveHTTP starts h on a plain HTTP/1.1 server.
func serveHTTP(t *testing.T, h http.Handler) *wire {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &wire{srv: srv, client: srv.Client()}
}

// serveTLS starts h on a TLS server that speaks HTTP/2.
func serveTLS(t *testing.T, h http.Handler) *wire {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &wire{srv: srv, client: srv.Client()}
}

// get sends a request and reads the whole response. header holds name,
// value pairs; a "Host" pair sets the request's Host.
func (wr *wire) get(t *testing.T, method, target string, header ...string) result {
	t.Helper()
	return wr.send(t, method, target, nil, header...)
}

func (wr *wire) send(t *testing.T, method, target string, body io.Reader, header ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, wr.srv.URL+target, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := wr.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// Path 1: a query net/url gives up on, or parses with an error, must not
// be keyed as the parameters the key parser sees: the handler sees fewer,
// or none, or an error.
func TestAttackQueryParserDisagreement(t *testing.T) {
	attacks := []string{
		"/reflect?page=2" + strings.Repeat("&", 10_001), // past net/url's limit: Query() is empty
		"/reflect?page=2&x;y=1",                         // a ';' piece: ParseForm fails
		"/reflect?page=2&a=%zz",                         // a bad escape: ParseForm fails
	}
	for _, attack := range attacks {
		t.Run(attack[:min(len(attack), 30)], func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			// The origin answers 404 when the page it needs is missing or
			// the query is malformed: stored for everyone, that would be a
			// denial of service.
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil || r.Form.Get("page") == "" {
					http.Error(w, "no page", http.StatusNotFound)
					return
				}
				fmt.Fprintf(w, "page=%s", r.Form.Get("page"))
			}}
			wr := serveHTTP(t, mux(t, c, "GET /reflect", policy.Policy{QueryParams: []string{"page"}}, o))
			got := wr.get(t, "GET", attack)
			if !strings.Contains(got.cacheStatus(), "detail=query") {
				t.Errorf("attack: Cache-Status %q, want a bypass", got.cacheStatus())
			}
			if victim := wr.get(t, "GET", "/reflect?page=2"); victim.status != http.StatusOK || victim.body != "page=2" {
				t.Fatalf("victim got %d %q (%s)", victim.status, victim.body, victim.cacheStatus())
			}
			if got := wr.get(t, "GET", "/reflect?page=2"); !got.isHit() {
				t.Errorf("the clean query is not cached: %q", got.cacheStatus())
			}
			if n := c.Stats().BypassedBy["query"]; n != 1 {
				t.Errorf("BypassedBy[query] = %d, want 1", n)
			}
		})
	}
}

// tenantOrigin answers with every path parameter it sees.
func tenantOrigin() *origin {
	return &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tenant=%s item=%s", r.PathValue("tenant"), r.PathValue("id"))
	}}
}

// Path 2: a route declared inside a chi sub-router or under Mount sees
// less than the whole routed pattern; it must never key on the part it
// sees.
func TestAttackRouterNesting(t *testing.T) {
	t.Run("chi sub-router with the local pattern bypasses", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		r := chi.NewRouter()
		r.Route("/tenants/{tenant}", func(r chi.Router) {
			r.With(c.MustRoute("/items/{id}", policy.Policy{})).Get("/items/{id}", tenantOrigin().ServeHTTP)
		})
		wr := serveHTTP(t, r)
		wr.get(t, "GET", "/tenants/acme/items/42")
		got := wr.get(t, "GET", "/tenants/evilcorp/items/42")
		if got.body != "tenant=evilcorp item=42" {
			t.Fatalf("evilcorp got %q (%s)", got.body, got.cacheStatus())
		}
		if !strings.Contains(got.cacheStatus(), "detail=route-mismatch") {
			t.Errorf("Cache-Status %q, want a route-mismatch bypass", got.cacheStatus())
		}
		if n := c.Stats().BypassedBy["route"]; n != 2 {
			t.Errorf("BypassedBy[route] = %d, want 2", n)
		}
	})
	t.Run("chi sub-router with the whole pattern is cached per tenant", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		r := chi.NewRouter()
		r.Route("/tenants/{tenant}", func(r chi.Router) {
			r.With(c.MustRoute("/tenants/{tenant}/items/{id}", policy.Policy{})).Get("/items/{id}", tenantOrigin().ServeHTTP)
		})
		wr := serveHTTP(t, r)
		for _, tenant := range []string{"acme", "evilcorp", "acme", "evilcorp"} {
			got := wr.get(t, "GET", "/tenants/"+tenant+"/items/42")
			if want := "tenant=" + tenant + " item=42"; got.body != want {
				t.Fatalf("%s got %q (%s), want %q", tenant, got.body, got.cacheStatus(), want)
			}
		}
		if s := c.Stats(); s.Hits != 2 || s.Stored != 2 {
			t.Errorf("hits %d stored %d, want 2 and 2", s.Hits, s.Stored)
		}
	})
	t.Run("chi Mount twice", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		sub := func(prefix string) chi.Router {
			r := chi.NewRouter()
			r.With(c.MustRoute(prefix+"/items/{id}", policy.Policy{})).Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s item=%s", prefix, r.PathValue("id"))
			})
			return r
		}
		r := chi.NewRouter()
		r.Mount("/v1", sub("/v1"))
		r.Mount("/v2", sub("/v2"))
		wr := serveHTTP(t, r)
		for _, v := range []string{"/v1", "/v2", "/v1", "/v2"} {
			if got := wr.get(t, "GET", v+"/items/7"); got.body != v+" item=7" {
				t.Fatalf("%s got %q (%s)", v, got.body, got.cacheStatus())
			}
		}
		if s := c.Stats(); s.Hits != 2 {
			t.Errorf("hits = %d, want 2", s.Hits)
		}
	})
	t.Run("one sub-router mounted twice with its local pattern bypasses", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		sub := chi.NewRouter()
		sub.With(c.MustRoute("/items/{id}", policy.Policy{})).Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s item=%s", r.Pattern, r.PathValue("id"))
		})
		r := chi.NewRouter()
		r.Mount("/v1", sub)
		r.Mount("/v2", sub)
		wr := serveHTTP(t, r)
		wr.get(t, "GET", "/v1/items/7")
		if got := wr.get(t, "GET", "/v2/items/7"); got.body != "/v2/items/{id} item=7" {
			t.Fatalf("v2 got %q (%s)", got.body, got.cacheStatus())
		}
	})
	t.Run("http.StripPrefix", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		inner := http.NewServeMux()
		inner.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s item=%s", r.RequestURI, r.PathValue("id"))
		})))
		outer := http.NewServeMux()
		outer.Handle("/v1/", http.StripPrefix("/v1", inner))
		outer.Handle("/v2/", http.StripPrefix("/v2", inner))
		wr := serveHTTP(t, outer)
		for _, v := range []string{"/v1", "/v2", "/v1", "/v2"} {
			if got := wr.get(t, "GET", v+"/items/7"); got.body != v+"/items/7 item=7" {
				t.Fatalf("%s got %q (%s)", v, got.body, got.cacheStatus())
			}
		}
		if s := c.Stats(); s.Hits != 2 {
			t.Errorf("hits = %d, want 2", s.Hits)
		}
	})
	t.Run("no router", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		h := c.Handler("/items/{id}", policy.Policy{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Path)
		}))
		wr := serveHTTP(t, h)
		wr.get(t, "GET", "/items/1")
		if got := wr.get(t, "GET", "/other"); got.body != "/other" {
			t.Fatalf("/other got %q (%s)", got.body, got.cacheStatus())
		}
	})
}

// Path 2, the scheme: http and https requests never share an entry.
func TestAttackScheme(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	h := mux(t, c, "GET /s", policy.Policy{}, &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			io.WriteString(w, "secure")
			return
		}
		io.WriteString(w, "plain")
	}})
	plain, secure := serveHTTP(t, h), serveTLS(t, h)
	plain.get(t, "GET", "/s", "Host", "svc.example")
	if got := secure.get(t, "GET", "/s", "Host", "svc.example"); got.body != "secure" {
		t.Fatalf("https got %q (%s)", got.body, got.cacheStatus())
	}
	if got := plain.get(t, "GET", "/s", "Host", "svc.example"); got.body != "plain" || !got.isHit() {
		t.Fatalf("http got %q (%s)", got.body, got.cacheStatus())
	}
}

// Path 3: the never-store rules hold whatever the case of the header
// names, and what a handler sets after WriteHeader (which no client is
// sent) is not stored either.
func TestAttackStorageDecisions(t *testing.T) {
	tests := []struct {
		name string
		fn   func(w http.ResponseWriter, r *http.Request)
	}{
		{name: "lowercase cache-control private", fn: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["cache-control"] = []string{"private"}
			fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
		}},
		{name: "lowercase set-cookie", fn: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["set-cookie"] = []string{"session=" + r.Header.Get("X-User")}
			fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
		}},
		{name: "lowercase vary", fn: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["vary"] = []string{"X-User"}
			fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
		}},
		{name: "two cache-control lines", fn: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Cache-Control"] = []string{"max-age=60"}
			w.Header()["cache-control"] = []string{"no-store"}
			fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
		}},
		{name: "trailer", fn: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
			w.Header().Set("X-Checksum", r.Header.Get("X-User"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			wr := serveHTTP(t, mux(t, c, "GET /me", policy.Policy{}, &origin{fn: tt.fn}))
			wr.get(t, "GET", "/me", "X-User", "alice")
			got := wr.get(t, "GET", "/me", "X-User", "bob")
			if got.body != "for bob" {
				t.Fatalf("bob got %q (%s)", got.body, got.cacheStatus())
			}
			if strings.Contains(got.header.Get("Set-Cookie"), "alice") {
				t.Fatalf("bob got alice's cookie")
			}
			if s := c.Stats(); s.Stored != 0 {
				t.Errorf("stored %d responses", s.Stored)
			}
		})
	}

	t.Run("headers set after WriteHeader", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		wr := serveHTTP(t, mux(t, c, "GET /late", policy.Policy{}, &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			w.Header().Set("Set-Cookie", "session=alice")
			w.Header().Set("Cache-Control", "private")
			w.Header().Set("X-Late", "1")
			io.WriteString(w, "public body")
		}}))
		first := wr.get(t, "GET", "/late")
		second := wr.get(t, "GET", "/late")
		for i, got := range []result{first, second} {
			for _, name := range []string{"Set-Cookie", "X-Late"} {
				if v := got.header.Get(name); v != "" {
					t.Errorf("response %d carries %s: %q (%s)", i+1, name, v, got.cacheStatus())
				}
			}
			if cc := got.header.Get("Cache-Control"); cc != "" {
				t.Errorf("response %d carries Cache-Control %q", i+1, cc)
			}
		}
		if !second.isHit() || second.body != "public body" {
			t.Errorf("second: %q %q, want the first response from the cache", second.cacheStatus(), second.body)
		}
	})
}

// Path 4: a background refresh sends the handler only what the entry is
// keyed on, so one hit near refresh time cannot rewrite everyone's entry
// with an unkeyed header of its own.
func TestAttackRefreshReplaysHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		var mu sync.Mutex
		var seen []http.Header
		o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
			host := r.Header.Get("X-Forwarded-Host")
			if host == "" {
				host = r.Host
			}
			fmt.Fprintf(w, `<a href="https://%s/next">%s %s</a>`, host, r.Header.Get("Accept-Language"), r.URL.RawQuery)
		}}
		h := mux(t, c, "GET /page", policy.Policy{
			TTL: 10 * time.Second, RefreshAhead: 0.5,
			Vary: []string{"Accept-Language"}, QueryParams: []string{"q"},
			ForwardHeaders: []string{"X-Request-Id"},
		}, o)
		do(h, "GET", "/page?q=1", "Accept-Language", "fr")
		time.Sleep(6 * time.Second) // past the refresh point
		// The attacker's hit schedules the refresh.
		hit := do(h, "GET", "/page?q=1&utm=x", "Accept-Language", "fr",
			"X-Forwarded-Host", "evil.example", "X-Request-Id", "r-1", "X-Original-Url", "/admin")
		if !hit.isHit() {
			t.Fatalf("attacker's request: %q", hit.cacheStatus())
		}
		synctest.Wait()
		if n := o.calls.Load(); n != 2 {
			t.Fatalf("origin calls = %d, want a refresh", n)
		}
		victim := do(h, "GET", "/page?q=1", "Accept-Language", "fr")
		if strings.Contains(victim.body, "evil") || victim.body != `<a href="https://example.com/next">fr q=1</a>` {
			t.Fatalf("victim got %q (%s)", victim.body, victim.cacheStatus())
		}
		mu.Lock()
		refresh := seen[len(seen)-1]
		mu.Unlock()
		want := http.Header{"Accept-Language": {"fr"}, "X-Request-Id": {"r-1"}}
		if fmt.Sprint(refresh) != fmt.Sprint(want) {
			t.Errorf("the refresh sent headers %v, want %v", refresh, want)
		}
	})
}

// Path 5: a GET with a body is keyed without it, so it bypasses.
func TestAttackFatGET(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	wr := serveHTTP(t, mux(t, c, "GET /search", policy.Policy{}, &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "results for %q", b)
	}}))
	attack := wr.send(t, "GET", "/search", strings.NewReader("<script>"))
	if !strings.Contains(attack.cacheStatus(), "detail=body") {
		t.Errorf("fat GET: Cache-Status %q, want a bypass", attack.cacheStatus())
	}
	if got := wr.get(t, "GET", "/search"); got.body != `results for ""` {
		t.Fatalf("victim got %q (%s)", got.body, got.cacheStatus())
	}
}

// Path 5: a handler that hijacks the connection leaves no entry.
func TestAttackHijack(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	wr := serveHTTP(t, mux(t, c, "GET /ws", policy.Policy{}, &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Hijack") == "" {
			io.WriteString(w, "plain answer")
			return
		}
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		bw.Flush()
	}}))
	// A fresh connection, since the hijacked one is closed.
	conn, err := net.Dial("tcp", wr.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: example.com\r\nX-Hijack: 1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	conn.Close()
	if string(b) != "hijacked" {
		t.Fatalf("hijacking client got %q", b)
	}
	if got := wr.get(t, "GET", "/ws", "Host", "example.com"); got.body != "plain answer" {
		t.Fatalf("victim got %q (%s)", got.body, got.cacheStatus())
	}
	if s := c.Stats(); s.Stored != 1 {
		t.Errorf("stored %d entries, want only the victim's", s.Stored)
	}
}

// Path 6: an entry planted in the store with a time in the future is not
// fresh for longer than its lifetime from now.
func TestAttackPlantedFutureEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		c := newTestCache(t, store)
		h := mux(t, c, "GET /p", policy.Policy{TTL: time.Minute, MaxTTL: 10 * time.Minute}, textOrigin("origin"))
		plant(t, store, "GET /p", "/p", policy.Policy{}, &storage.Entry{
			Status: 200, Header: http.Header{"Content-Type": {"text/plain"}},
			Stored: time.Now().Add(100 * 24 * time.Hour), Fresh: 48 * time.Hour,
			Body: []byte("planted"),
		})
		// Never served: clamped to now at every read it would never age.
		if got := do(h, "GET", "/p"); got.body != "origin" {
			t.Fatalf("the planted entry was served: %q (%s)", got.body, got.cacheStatus())
		}
		if s := c.Stats(); s.EntriesRejected != 1 {
			t.Errorf("EntriesRejected = %d", s.EntriesRejected)
		}
		// A time within the clock skew of instances is now.
		plant(t, store, "GET /p", "/p", policy.Policy{}, &storage.Entry{
			Status: 200, Header: http.Header{"Content-Type": {"text/plain"}},
			Stored: time.Now().Add(30 * time.Second), Fresh: 48 * time.Hour,
			Body: []byte("skewed"),
		})
		if got := do(h, "GET", "/p"); got.body != "skewed" || got.header.Get("Age") != "0" {
			t.Fatalf("skewed entry: %q age %q", got.body, got.header.Get("Age"))
		}
		// Fresh for the route's MaxTTL at most.
		time.Sleep(30 * time.Minute)
		if got := do(h, "GET", "/p"); got.body != "origin" {
			t.Fatalf("after 30 minutes the planted entry is still served: %q (%s)", got.body, got.cacheStatus())
		}
	})
}

// gzipOf returns b gzipped.
func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// Path 7: a stored gzip body that decodes to far more than MaxBodyBytes
// is never decoded past the limit for a client that does not take gzip.
func TestAttackDecompressionBomb(t *testing.T) {
	bomb := gzipOf(t, make([]byte, 100<<20)) // 100 MiB of zeros in ~100 KB
	c := newTestCache(t, newMemStore(t))
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			io.WriteString(w, "small identity answer")
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(bomb)
	}}
	h := mux(t, c, "GET /bomb", policy.Policy{}, o)
	if got := do(h, "GET", "/bomb", "Accept-Encoding", "gzip"); !strings.Contains(got.cacheStatus(), "stored") {
		t.Fatalf("the bomb was not stored: %q", got.cacheStatus())
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := do(h, "GET", "/bomb")
	runtime.ReadMemStats(&after)
	if got.body != "small identity answer" {
		t.Fatalf("client without gzip got %d bytes (%s)", len(got.body), got.cacheStatus())
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("one request allocated %d MB", grew>>20)
	}
	if s := c.Stats(); s.OversizeDecodes == 0 {
		t.Error("OversizeDecodes = 0")
	}
}

// Path 8: a huge path segment and a huge Surrogate-Key cannot make the
// store hold huge keys or unbounded numbers of them.
func TestAttackKeySizes(t *testing.T) {
	store := &recordingStore{Store: newMemStore(t)}
	c := newTestCache(t, store)
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		if n := r.URL.Query().Get("tags"); n != "" {
			var tags []string
			for i := range 100_000 {
				tags = append(tags, fmt.Sprintf("t%d", i))
			}
			w.Header().Set("Surrogate-Key", strings.Join(tags, " "))
		}
		io.WriteString(w, "posts")
	}}
	wr := serveHTTP(t, mux(t, c, "GET /users/{id}/posts", policy.Policy{
		Tags: func(r *http.Request) []string { return []string{"user-" + r.PathValue("id")} },
	}, o))
	long := strings.Repeat("x", 900_000)
	wr.get(t, "GET", "/users/"+long+"/posts")
	wr.get(t, "GET", "/users/7/posts?tags=1")
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, bucket := range store.buckets {
		if len(bucket) > 200 {
			t.Errorf("a bucket of %d bytes was written", len(bucket))
		}
	}
	if len(store.tags) != 0 {
		t.Errorf("%d tags written; the long tag and the 100,000 Surrogate-Keys must create none", len(store.tags))
	}
	if s := c.Stats(); s.TagsRefused != 2 || s.LongKeys != 1 {
		t.Errorf("TagsRefused %d LongKeys %d, want 2 and 1", s.TagsRefused, s.LongKeys)
	}
}

// recordingStore records the buckets and tags every Set writes.
type recordingStore struct {
	storage.Store
	mu      sync.Mutex
	buckets []string
	tags    []string
}

func (s *recordingStore) Set(ctx context.Context, bucket, field string, v []byte, o storage.SetOptions) error {
	s.mu.Lock()
	s.buckets = append(s.buckets, bucket)
	s.tags = append(s.tags, o.Tags...)
	s.mu.Unlock()
	return s.Store.Set(ctx, bucket, field, v, o)
}

// Path 9: junk variants cannot push out the variant real clients use.
func TestAttackJunkVariants(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	h := mux(t, c, "GET /items/{id}", policy.Policy{MaxFields: 5}, textOrigin("item"))
	do(h, "GET", "/items/1?page=1")
	for i := range 20 {
		do(h, "GET", fmt.Sprintf("/items/1?junk=%d", i))
	}
	if got := do(h, "GET", "/items/1?page=1"); !got.isHit() {
		t.Fatalf("the real variant was pushed out: %q", got.cacheStatus())
	}
	if s := c.Stats(); s.VariantsRefused != 16 {
		t.Errorf("VariantsRefused = %d, want 16", s.VariantsRefused)
	}
}

// slowListener makes every accepted connection's send buffer small, so
// that a client that does not read stalls the server's writes to it.
type slowListener struct{ net.Listener }

func (l slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// stalledClient sends a GET for target and never reads the answer.
func stalledClient(t *testing.T, addr, target string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: svc\r\n\r\n", target)
}

// Path 10: a leader whose client reads slowly (or not at all) does not
// hold the requests waiting for its fill, here and on other instances.
func TestAttackSlowLeaderClient(t *testing.T) {
	for _, tt := range []struct {
		name      string
		cacheable bool
	}{{"cacheable", true}, {"not cacheable", false}} {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore(t)
			body := strings.Repeat("x", 4<<20)
			started := make(chan struct{}, 8)
			release := make(chan struct{})
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-release
				if !tt.cacheable {
					w.Header().Set("Cache-Control", "no-store")
				}
				io.WriteString(w, body)
			}}
			p := policy.Policy{MaxBodyBytes: 8 << 20, LockWait: time.Minute}
			a := newTestCache(t, store)
			b := newTestCache(t, store)
			srvA := httptest.NewUnstartedServer(mux(t, a, "GET /big", p, o))
			srvA.Listener = slowListener{srvA.Listener}
			srvA.Start()
			t.Cleanup(srvA.Close)
			wrB := serveHTTP(t, mux(t, b, "GET /big", p, o))

			stalledClient(t, srvA.Listener.Addr().String(), "/big")
			<-started // the stalled client's request leads
			done := make(chan result, 2)
			waiter := func(wr *wire) {
				go func() {
					req, _ := http.NewRequest("GET", wr.srv.URL+"/big", nil)
					req.Host = "svc"
					resp, err := wr.client.Do(req)
					if err != nil {
						done <- result{status: -1}
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					done <- result{status: resp.StatusCode, header: resp.Header, body: string(b)}
				}()
			}
			waiter(&wire{srv: srvA, client: srvA.Client()}) // same instance
			waiter(wrB)                                     // another instance
			time.Sleep(100 * time.Millisecond)              // let them start waiting
			close(release)
			for range 2 {
				select {
				case got := <-done:
					if got.body != body {
						t.Fatalf("waiter got %d bytes (%d, %s)", len(got.body), got.status, got.cacheStatus())
					}
				case <-time.After(10 * time.Second):
					t.Fatal("a waiter is still held by the stalled leader client after 10s")
				}
			}
		})
	}
}

// Cache-Status says "stored" only when the response was stored.
func TestCacheStatusStoredIsTrue(t *testing.T) {
	store := storeFuncs{Store: newMemStore(t), set: func() error { return storage.ErrRefused }}
	c := newTestCache(t, store)
	h := mux(t, c, "GET /s", policy.Policy{}, textOrigin("x"))
	if got := do(h, "GET", "/s"); strings.Contains(got.cacheStatus(), "stored") || !strings.Contains(got.cacheStatus(), "fwd-status=200") {
		t.Errorf("Cache-Status %q after a refused write", got.cacheStatus())
	}
	ok := newTestCache(t, newMemStore(t))
	h = mux(t, ok, "GET /s", policy.Policy{}, textOrigin("x"))
	if got := do(h, "GET", "/s"); !strings.HasSuffix(got.cacheStatus(), "; stored") {
		t.Errorf("Cache-Status %q after a write", got.cacheStatus())
	}
}

// A strong ETag of an origin-gzipped body is weakened when the body is
// served decoded: those are not the bytes the ETag names.
func TestETagWeakenedWhenDecoded(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	gz := gzipOf(t, []byte(strings.Repeat("hello ", 100)))
	h := mux(t, c, "GET /e", policy.Policy{}, &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz)
	}})
	do(h, "GET", "/e", "Accept-Encoding", "gzip")
	if got := do(h, "GET", "/e", "Accept-Encoding", "gzip"); got.header.Get("Etag") != `"v1"` {
		t.Errorf("gzip client: ETag %q, want the origin's", got.header.Get("Etag"))
	}
	if got := do(h, "GET", "/e"); got.header.Get("Etag") != `W/"v1"` {
		t.Errorf("identity client: ETag %q, want it weakened", got.header.Get("Etag"))
	}
}

// Lifetimes the origin sets are capped by MaxTTL.
func TestOriginLifetimeCapped(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	h := mux(t, c, "GET /long", policy.Policy{HonorOriginCacheControl: true}, textOrigin("x",
		"Cache-Control", "s-maxage=99999999999, stale-while-revalidate=99999999999"))
	do(h, "GET", "/long")
	in, err := c.Inspect(t.Context(), "http://example.com/long", nil)
	if err != nil || !in.Found {
		t.Fatalf("Inspect: %+v %v", in, err)
	}
	if in.TTLSec > int64(policy.DefaultMaxTTL/time.Second) {
		t.Errorf("TTL %ds, want at most %v", in.TTLSec, policy.DefaultMaxTTL)
	}
}
