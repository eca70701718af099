package httpcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// items is a tiny service: GET reads an item, PUT and DELETE change it,
// POST /items creates one (201, Location).
type items struct {
	mu   sync.Mutex
	vals map[string]string
	gets atomic.Int64
}

func newItems() *items { return &items{vals: map[string]string{"1": "one", "2": "two"}} }

func (it *items) get(w http.ResponseWriter, r *http.Request) {
	it.gets.Add(1)
	it.mu.Lock()
	v, ok := it.vals[r.PathValue("id")]
	it.mu.Unlock()
	if !ok {
		http.Error(w, "no such item", http.StatusNotFound)
		return
	}
	w.Header().Set("Etag", `"`+v+`"`)
	io.WriteString(w, v)
}

func (it *items) put(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if string(b) == "conflict" {
		http.Error(w, "conflict", http.StatusConflict)
		return
	}
	it.mu.Lock()
	it.vals[r.PathValue("id")] = string(b)
	it.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (it *items) create(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	id, v, _ := strings.Cut(string(b), "=")
	it.mu.Lock()
	it.vals[id] = v
	it.mu.Unlock()
	w.Header().Set("Location", "/items/"+id)
	w.WriteHeader(http.StatusCreated)
}

// A write through a write route purges the cached item before its answer
// reaches the client; a failed write purges nothing.
func TestWritesInvalidate(t *testing.T) {
	build := map[string]func(c *Cache, it *items) http.Handler{
		"chi": func(c *Cache, it *items) http.Handler {
			r := chi.NewRouter()
			r.With(c.MustRoute("/items/{id}", policy.Policy{TTL: time.Hour})).Get("/items/{id}", it.get)
			r.With(c.MustWrites("/items/{id}", PurgeRoute("/items/{id}"))).Put("/items/{id}", it.put)
			r.With(c.MustWrites("/items/{id}", PurgeRoute("/items/{id}"))).Delete("/items/{id}", it.put)
			return r
		},
		"servemux": func(c *Cache, it *items) http.Handler {
			m := http.NewServeMux()
			m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(it.get)))
			m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", PurgeRoute("GET /items/{id}"))(http.HandlerFunc(it.put)))
			return m
		},
	}
	for name, mk := range build {
		t.Run(name, func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			it := newItems()
			wr := serveHTTP(t, mk(c, it))
			if err := c.VerifyRoutes(); err != nil {
				t.Fatal(err)
			}
			wr.get(t, "GET", "/items/1")
			if got := wr.get(t, "GET", "/items/1"); !got.isHit() || got.body != "one" {
				t.Fatalf("before the write: %q %q", got.cacheStatus(), got.body)
			}
			if got := wr.send(t, "PUT", "/items/1", strings.NewReader("conflict")); got.status != http.StatusConflict {
				t.Fatalf("failed write: %d", got.status)
			}
			if got := wr.get(t, "GET", "/items/1"); !got.isHit() {
				t.Errorf("a failed write invalidated: %q", got.cacheStatus())
			}
			if got := wr.send(t, "PUT", "/items/1", strings.NewReader("uno")); got.status != http.StatusNoContent {
				t.Fatalf("write: %d", got.status)
			}
			if got := wr.get(t, "GET", "/items/1"); got.isHit() || got.body != "uno" {
				t.Errorf("after the write: %q %q, want a miss with the new body", got.cacheStatus(), got.body)
			}
			if s := c.RouteStats()[map[string]string{"chi": "/items/{id}", "servemux": "PUT /items/{id}"}[name]]; s.Invalidations != 1 || s.Invalidated != 1 {
				t.Errorf("write route stats: invalidations %d, invalidated %d", s.Invalidations, s.Invalidated)
			}
		})
	}
}

// Unknown methods are unsafe: they invalidate too.
func TestWritesUnknownMethod(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(it.get)))
	m.Handle("FROB /items/{id}", c.MustWrites("FROB /items/{id}", PurgeRoute("GET /items/{id}"))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	wr := serveHTTP(t, m)
	wr.get(t, "GET", "/items/1")
	if got := wr.get(t, "FROB", "/items/1"); got.status != 200 {
		t.Fatalf("FROB: %d", got.status)
	}
	if got := wr.get(t, "GET", "/items/1"); got.isHit() {
		t.Errorf("after FROB: %q, want a miss", got.cacheStatus())
	}
}

// A cached route whose handler also takes writes (a catch-all, as in a
// proxy) invalidates the request URL and the same-origin Location, as RFC
// 9111 section 4.4 says, without a write route.
func TestWritesThroughCachedRoute(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	m := http.NewServeMux()
	m.Handle("/items/{id}", c.Handler("/items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			it.get(w, r)
		default:
			it.put(w, r)
		}
	})))
	m.Handle("/items", c.Handler("/items", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			it.mu.Lock()
			fmt.Fprintf(w, "%d items", len(it.vals))
			it.mu.Unlock()
		default:
			it.create(w, r)
		}
	})))
	wr := serveHTTP(t, m)
	for _, target := range []string{"/items/1", "/items/3", "/items"} {
		wr.get(t, "GET", target)
	}
	wr.send(t, "POST", "/items/1", strings.NewReader("uno"))
	if got := wr.get(t, "GET", "/items/1"); got.isHit() || got.body != "uno" {
		t.Errorf("after POST /items/1: %q %q", got.cacheStatus(), got.body)
	}
	// POST /items creates item 3: the list and the new item's URL (its
	// Location) are invalidated.
	if got := wr.get(t, "GET", "/items/3"); got.status != http.StatusNotFound {
		t.Fatalf("GET /items/3 before the create: %d", got.status)
	}
	wr.send(t, "POST", "/items", strings.NewReader("3=three"))
	if got := wr.get(t, "GET", "/items"); got.isHit() || got.body != "3 items" {
		t.Errorf("the list after the create: %q %q", got.cacheStatus(), got.body)
	}
	if got := wr.get(t, "GET", "/items/3"); got.status != http.StatusOK || got.body != "three" {
		t.Errorf("the created item: %d %q %q", got.status, got.cacheStatus(), got.body)
	}
}

// A Location of another origin is not this cache's to invalidate.
func TestWritesOtherOriginLocation(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(it.get)))
	m.Handle("POST /elsewhere", c.MustWrites("POST /elsewhere")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://other.example/items/1")
		w.WriteHeader(http.StatusSeeOther)
	})))
	wr := serveHTTP(t, m)
	wr.get(t, "GET", "/items/1")
	wr.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	wr.get(t, "POST", "/elsewhere")
	if got := wr.get(t, "GET", "/items/1"); !got.isHit() {
		t.Errorf("another origin's Location invalidated the item: %q", got.cacheStatus())
	}
}

// PurgeBuckets and PurgeTags purge what the write request computes.
func TestWritesComputedPurges(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	r := chi.NewRouter()
	r.With(c.MustRoute("/items/{id}", policy.Policy{TTL: time.Hour,
		Tags: func(r *http.Request) []string { return []string{"item-" + r.PathValue("id")} },
	})).Get("/items/{id}", it.get)
	// A bulk write names the items it changes in its query.
	r.With(c.MustWrites("/bulk", PurgeBuckets("/items/{id}", func(r *http.Request) []map[string]string {
		var out []map[string]string
		for _, id := range strings.Split(r.URL.Query().Get("ids"), ",") {
			out = append(out, map[string]string{"id": id})
		}
		return out
	}))).Post("/bulk", func(w http.ResponseWriter, r *http.Request) {})
	r.With(c.MustWrites("/tagged/{id}", PurgeTags(func(r *http.Request) []string {
		return []string{"item-" + r.PathValue("id")}
	}))).Post("/tagged/{id}", func(w http.ResponseWriter, r *http.Request) {})
	wr := serveHTTP(t, r)
	if err := c.VerifyRoutes(); err != nil {
		t.Fatal(err)
	}
	wr.get(t, "GET", "/items/1")
	wr.get(t, "GET", "/items/2")
	wr.get(t, "POST", "/bulk?ids=1")
	if a, b := wr.get(t, "GET", "/items/1"), wr.get(t, "GET", "/items/2"); a.isHit() || !b.isHit() {
		t.Errorf("after the bulk write of 1: item 1 %q, item 2 %q", a.cacheStatus(), b.cacheStatus())
	}
	wr.get(t, "POST", "/tagged/2")
	if got := wr.get(t, "GET", "/items/2"); got.isHit() {
		t.Errorf("after the tagged write of 2: %q", got.cacheStatus())
	}
}

// Write routes that cannot work are refused at declaration or by
// VerifyRoutes.
func TestWritesDeclaration(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	c.MustRoute("/users/{user}/items/{id}", policy.Policy{})
	if _, err := c.Writes("/items/{id}", PurgeRoute("/users/{user}/items/{id}")); err == nil || !strings.Contains(err.Error(), `"user"`) {
		t.Errorf("a write lacking a bucket parameter: %v", err)
	}
	if _, err := c.Writes("/items/{id", PurgeRoute("/x")); err == nil {
		t.Error("a malformed write pattern was accepted")
	}
	if _, err := c.Writes("/later/{id}", PurgeRoute("/nowhere/{id}")); err != nil {
		t.Fatal(err) // the route may be declared later
	}
	if err := c.VerifyRoutes(); err == nil || !strings.Contains(err.Error(), `"/nowhere/{id}"`) {
		t.Errorf("VerifyRoutes with a purge of an undeclared route: %v", err)
	}
}

// failingPurges is a store whose purges fail, as a Redis that is down.
type failingPurges struct{ *memstore.Store }

func (failingPurges) PurgeBucket(context.Context, string) (int64, error) {
	return 0, errors.New("test: redis down")
}

// A write whose invalidation fails still succeeds; the failure is counted
// and reported.
func TestWritesStoreDown(t *testing.T) {
	var reported atomic.Int64
	c := newTestCache(t, failingPurges{newMemStore(t)}, WithOnError(func(context.Context, error) { reported.Add(1) }))
	it := newItems()
	r := chi.NewRouter()
	r.With(c.MustRoute("/items/{id}", policy.Policy{TTL: time.Hour})).Get("/items/{id}", it.get)
	r.With(c.MustWrites("/items/{id}", PurgeRoute("/items/{id}"))).Put("/items/{id}", it.put)
	wr := serveHTTP(t, r)
	wr.get(t, "GET", "/items/1")
	if got := wr.send(t, "PUT", "/items/1", strings.NewReader("uno")); got.status != http.StatusNoContent {
		t.Fatalf("the write failed with the store: %d", got.status)
	}
	if s := c.RouteStats()["/items/{id}"]; s.InvalidationErrors != 1 || reported.Load() != 1 {
		t.Errorf("invalidation errors %d, reported %d; want 1 and 1", s.InvalidationErrors, reported.Load())
	}
}

// slowPurges is a store whose tag and route purges take longer than the
// store timeout, as SSCAN and SCAN batches over a large Redis do.
type slowPurges struct{ *memstore.Store }

func (s slowPurges) PurgeTag(ctx context.Context, tag string) (int64, error) {
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Store.PurgeTag(ctx, tag)
}

// A write's tag purge walks the keyspace: it is not held to the store
// timeout of one command, and its slowness does not open the circuit for
// the whole service's reads.
func TestWritesSlowBulkPurge(t *testing.T) {
	c := newTestCache(t, slowPurges{newMemStore(t)}, WithStoreTimeout(100*time.Millisecond), WithBreaker(2, time.Minute))
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
	for range 3 {
		wr.get(t, "GET", "/items/1")
		wr.send(t, "PUT", "/items/1", strings.NewReader("uno"))
	}
	if s := c.RouteStats()["PUT /items/{id}"]; s.Invalidations != 3 || s.InvalidationErrors != 0 {
		t.Errorf("slow tag purges: %d made, %d failed; want 3 and 0", s.Invalidations, s.InvalidationErrors)
	}
	if got := wr.get(t, "GET", "/items/2"); !got.isHit() {
		t.Errorf("another item after slow purges: %q, want a hit (the circuit closed)", got.cacheStatus())
	}
}

// What a write route purges, and when: a chi pattern's rendering counts
// as routed by it; the write's own URL and a Content-Location naming it
// are purged once; a Content-Location is purged like a Location; a body
// longer than net/http's buffer is purged before it goes out; a failed
// answer after a flush, OPTIONS, and an informational status purge
// nothing; a store that cannot purge is refused at declaration.
func TestWritesPurgeRules(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	var reads atomic.Int64
	get := func(w http.ResponseWriter, r *http.Request) { reads.Add(1); it.get(w, r) }
	r := chi.NewRouter()
	r.With(c.MustRoute("/items/{id}/", policy.Policy{TTL: time.Hour})).Get("/items/{id}/", get)
	r.With(c.MustRoute("/other/{id}", policy.Policy{TTL: time.Hour})).Get("/other/{id}", get)
	r.With(c.MustWrites("/items/{id}/", PurgeRoute("/items/{id}/"))).Put("/items/{id}/", it.put)
	r.With(c.MustWrites("/self/{id}")).Post("/self/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Location", "/other/"+r.PathValue("id"))
		w.WriteHeader(http.StatusOK)
	})
	r.With(c.MustWrites("/big/{id}", PurgeBuckets("/other/{id}", func(r *http.Request) []map[string]string {
		return []map[string]string{{"id": r.PathValue("id")}}
	}))).Post("/big/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 64<<10)) // out before the handler returns...
		<-r.Context().Done()                           // ...which it does when the client has read it
	})
	fails := r.With(c.MustWrites("/fails/{id}", PurgeBuckets("/other/{id}", func(r *http.Request) []map[string]string {
		return []map[string]string{{"id": r.PathValue("id")}}
	})))
	fails.Options("/fails/{id}", func(w http.ResponseWriter, r *http.Request) {})
	fails.Post("/fails/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusConflict)
		http.NewResponseController(w).Flush()
		io.WriteString(w, "conflict")
	})
	wr := serveHTTP(t, r)

	wr.get(t, "GET", "/items/1/")
	wr.get(t, "GET", "/items/2/")
	wr.send(t, "PUT", "/items/1/", strings.NewReader("uno")) // chi reports "/items/{id}"
	if a, b := wr.get(t, "GET", "/items/1/"), wr.get(t, "GET", "/items/2/"); a.isHit() || !b.isHit() {
		t.Errorf("a write of item 1 routed by chi's rendering of the pattern: item 1 %q, item 2 %q (a whole-route purge?)", a.cacheStatus(), b.cacheStatus())
	}

	wr.get(t, "GET", "/other/1")
	wr.get(t, "POST", "/self/1")
	if got := wr.get(t, "GET", "/other/1"); got.isHit() {
		t.Errorf("Content-Location not purged: %q", got.cacheStatus())
	}

	wr.get(t, "GET", "/other/2")
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "POST", wr.srv.URL+"/big/2", nil)
	resp, err := wr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 4096)) // the answer arrived: the purge ran before it
	if got := wr.get(t, "GET", "/other/2"); got.isHit() {
		t.Errorf("a 64 KB answer went out before its purge: %q", got.cacheStatus())
	}
	cancel()
	resp.Body.Close()

	wr.get(t, "GET", "/other/3")
	wr.get(t, "OPTIONS", "/fails/3")
	wr.get(t, "POST", "/fails/3")
	if got := wr.get(t, "GET", "/other/3"); !got.isHit() {
		t.Errorf("OPTIONS, or a 409 after a 103 and a flush, purged: %q", got.cacheStatus())
	}
	if s := c.RouteStats()["/fails/{id}"]; s.Invalidations != 0 {
		t.Errorf("/fails: %d invalidations", s.Invalidations)
	}

	if _, err := newTestCache(t, storeWithoutPurges{newMemStore(t)}).Writes("/items/{id}"); !errors.Is(err, ErrCannotPurge) {
		t.Errorf("a write route on a store that cannot purge: %v, want ErrCannotPurge", err)
	}
}

// storeWithoutPurges is a store that is not a storage.Purger.
type storeWithoutPurges struct{ s *memstore.Store }

func (s storeWithoutPurges) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	return s.s.Get(ctx, bucket, field)
}

func (s storeWithoutPurges) Set(ctx context.Context, bucket, field string, value []byte, opts storage.SetOptions) error {
	return s.s.Set(ctx, bucket, field, value, opts)
}

func (s storeWithoutPurges) Delete(ctx context.Context, bucket, field string) error {
	return s.s.Delete(ctx, bucket, field)
}

// A purge makes this process's fills of what it purged unjoinable,
// whatever the purge: a request after it never collapses onto a fill
// that read the data before it, and the store refuses that fill's write.
// The bucket already holds another variant: a tag purge knows only the
// buckets stored under the tag, so a bucket's very first fill is not
// fenced by it (storage.Purger.PurgeTag).
func TestPurgesForgetFlights(t *testing.T) {
	for name, purge := range map[string]func(c *Cache) error{
		"bucket": func(c *Cache) error {
			_, err := c.PurgeBucket(t.Context(), "GET /items/{id}", map[string]string{"id": "1"})
			return err
		},
		"route": func(c *Cache) error { _, err := c.PurgeRoute(t.Context(), "GET /items/{id}"); return err },
		"tag":   func(c *Cache) error { _, err := c.PurgeTag(t.Context(), "items"); return err },
		"all":   func(c *Cache) error { _, err := c.PurgeAll(t.Context()); return err },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTestCache(t, newMemStore(t))
				it := newItems()
				var calls atomic.Int64
				read := make(chan struct{})
				m := http.NewServeMux()
				m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour, QueryParams: []string{"v"},
					Tags: func(*http.Request) []string { return []string{"items"} },
				}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					it.mu.Lock()
					v := it.vals[r.PathValue("id")]
					it.mu.Unlock()
					if r.URL.Query().Get("v") == "" && calls.Add(1) == 1 { // the first read is old and slow
						close(read)
						time.Sleep(time.Second)
					}
					io.WriteString(w, v)
				})))
				if got := do(m, "GET", "/items/1?v=other"); !strings.Contains(got.cacheStatus(), "stored") {
					t.Fatalf("another variant of the bucket: %q, want it stored", got.cacheStatus())
				}
				first := make(chan result)
				go func() { first <- do(m, "GET", "/items/1") }()
				<-read
				it.mu.Lock()
				it.vals["1"] = "uno"
				it.mu.Unlock()
				if err := purge(c); err != nil {
					t.Fatal(err)
				}
				if got := do(m, "GET", "/items/1"); got.body != "uno" {
					t.Errorf("a read after the purge: %q (%s), want the new value", got.body, got.cacheStatus())
				}
				if got := <-first; got.body != "one" {
					t.Errorf("the fill that began before the purge: %q, want the old value, to its own client", got.body)
				}
				if got := do(m, "GET", "/items/1"); got.body != "uno" {
					t.Errorf("a read after both: %q (%s), want the new value", got.body, got.cacheStatus())
				}
			})
		})
	}
}

// A fill that read the old data before a write, and stores after the
// write's purge, is refused by the purge's fence: the old body never
// comes back.
func TestWriteRacingFill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		c := newTestCache(t, store)
		it := newItems()
		read := make(chan struct{})
		slowGet := func(w http.ResponseWriter, r *http.Request) {
			it.mu.Lock()
			v := it.vals[r.PathValue("id")]
			it.mu.Unlock()
			close(read)             // read the old value...
			time.Sleep(time.Second) // ...and answer late
			io.WriteString(w, v)
		}
		m := http.NewServeMux()
		m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(slowGet)))
		m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", PurgeRoute("GET /items/{id}"))(http.HandlerFunc(it.put)))
		done := make(chan result)
		go func() { done <- do(m, "GET", "/items/1") }()
		<-read
		put := httptestRequest("PUT", "/items/1", "uno")
		if got := doRequest(m, put); got.status != http.StatusNoContent {
			t.Fatalf("write: %d", got.status)
		}
		if old := <-done; old.body != "one" {
			t.Fatalf("the racing fill answered %q", old.body)
		}
		if s := c.Stats(); s.PurgeRaces != 1 {
			t.Errorf("purge races %d, want the racing fill refused", s.PurgeRaces)
		}
		read = make(chan struct{})
		if got := do(m, "GET", "/items/1"); got.isHit() || got.body != "uno" {
			t.Errorf("after the write: %q %q, want a miss with the new body", got.cacheStatus(), got.body)
		}
	})
}

// A write whose answer goes out before the handler commits (a Flush,
// then the update) is purged before the answer goes out and again once
// the handler returned: a read between the two refills the entry with the
// old value, and the second purge takes it away. One whose short answer
// net/http holds until the handler returns is purged once, then.
func TestWriteStreamedBeforeCommit(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	it := newItems()
	flushed, readDone := make(chan struct{}), make(chan struct{})
	streamedPut := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "accepted\n")
		http.NewResponseController(w).Flush() // the client has the answer...
		close(flushed)
		<-readDone // ...a read refills the old value...
		it.mu.Lock()
		it.vals[r.PathValue("id")] = string(b) // ...and the update commits
		it.mu.Unlock()
	}
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(it.get)))
	m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", PurgeRoute("GET /items/{id}"))(http.HandlerFunc(streamedPut)))
	m.Handle("PUT /short/{id}", c.MustWrites("PUT /short/{id}", PurgeRoute("GET /items/{id}"))(http.HandlerFunc(it.put)))
	wr := serveHTTP(t, m)

	wr.get(t, "GET", "/items/1")
	done := make(chan result)
	go func() { done <- wr.send(t, "PUT", "/items/1", strings.NewReader("uno")) }()
	<-flushed
	if got := wr.get(t, "GET", "/items/1"); got.body != "one" {
		t.Fatalf("read before the commit: %q", got.body)
	}
	close(readDone)
	if got := <-done; got.status != http.StatusOK {
		t.Fatalf("write: %d", got.status)
	}
	if got := wr.get(t, "GET", "/items/1"); got.isHit() || got.body != "uno" {
		t.Errorf("after the write returned: %q %q, want a miss with the new body", got.cacheStatus(), got.body)
	}
	if s := c.RouteStats()["PUT /items/{id}"]; s.Invalidations != 2 {
		t.Errorf("streamed write: %d invalidations, want 2 (before the answer went out, after the handler returned)", s.Invalidations)
	}
	if got := wr.send(t, "PUT", "/short/1", strings.NewReader("eins")); got.status != http.StatusNoContent {
		t.Fatalf("short write: %d", got.status)
	}
	if s := c.RouteStats()["PUT /short/{id}"]; s.Invalidations != 1 {
		t.Errorf("short write: %d invalidations, want 1 (when the handler returned)", s.Invalidations)
	}
}

// etagOrigin answers with the body and ETag of version, and 304 to a
// matching If-None-Match; it counts both.
type etagOrigin struct {
	mu       sync.Mutex
	body     string
	version  int
	full     atomic.Int64
	notMod   atomic.Int64
	conds    atomic.Int64
	ignoreIf bool
}

func (o *etagOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	etag := fmt.Sprintf(`"v%d"`, o.version)
	body := o.body
	o.mu.Unlock()
	w.Header().Set("Etag", etag)
	w.Header().Set("X-Served", time.Now().UTC().Format(time.RFC3339))
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		o.conds.Add(1)
		if inm == etag && !o.ignoreIf {
			o.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	o.full.Add(1)
	io.WriteString(w, body)
}

// A stale entry with validators is revalidated: the origin's 304 keeps
// the stored body and updates the stored headers and freshness.
func TestRevalidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		pol  policy.Policy
		wait time.Duration
	}{
		{"stale-while-revalidate refresh", policy.Policy{TTL: 10 * time.Second, StaleWhileRevalidate: time.Minute}, 15 * time.Second},
		{"refresh ahead", policy.Policy{TTL: 10 * time.Second, RefreshAhead: 0.5}, 6 * time.Second},
		{"expired entry", policy.Policy{TTL: 10 * time.Second}, 15 * time.Second},
		{"stale-if-error window", policy.Policy{TTL: 10 * time.Second, StaleIfError: time.Minute}, 15 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTestCache(t, newMemStore(t))
				o := &etagOrigin{body: strings.Repeat("a large body ", 100), version: 1}
				h := mux(t, c, "GET /doc", tt.pol, o)
				first := do(h, "GET", "/doc")
				time.Sleep(tt.wait)
				got := do(h, "GET", "/doc")
				synctest.Wait() // a background refresh, if any
				if got.body != o.body {
					t.Fatalf("body %d bytes (%s)", len(got.body), got.cacheStatus())
				}
				if o.conds.Load() != 1 || o.notMod.Load() != 1 || o.full.Load() != 1 {
					t.Fatalf("origin: %d conditional, %d 304, %d full; want 1, 1, 1", o.conds.Load(), o.notMod.Load(), o.full.Load())
				}
				after := do(h, "GET", "/doc")
				if !after.isHit() || after.body != o.body || !strings.Contains(after.cacheStatus(), "ttl=10") {
					t.Errorf("after the 304: %q, %d bytes", after.cacheStatus(), len(after.body))
				}
				if after.header.Get("X-Served") == first.header.Get("X-Served") {
					t.Errorf("X-Served %q not updated by the 304", after.header.Get("X-Served"))
				}
				if s := c.Stats(); s.Revalidations != 1 || s.NotModified != 1 || s.BytesNotResent != int64(len(o.body)) && s.BytesNotResent == 0 {
					t.Errorf("stats: revalidations %d, 304s %d, bytes not resent %d", s.Revalidations, s.NotModified, s.BytesNotResent)
				}
			})
		})
	}
}

// A 304 that makes the response private or sets a cookie answers its own
// client only: that client gets the stored body with the 304's headers
// (its cookie included), the entry is not updated, and a request waiting
// for the same fill fetches its own response.
func TestRevalidationForOneClient(t *testing.T) {
	for _, tt := range []struct {
		name, header, value string
	}{
		{"private", "Cache-Control", "private"},
		{"set-cookie", "Set-Cookie", "session=alice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTestCache(t, newMemStore(t))
				var conds atomic.Int64
				origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Etag", `"v1"`)
					if u := r.Header.Get("X-User"); u != "" {
						w.Header().Set("X-Account", u)
						w.Header().Set(tt.header, tt.value)
					}
					if r.Header.Get("If-None-Match") == `"v1"` {
						conds.Add(1)
						time.Sleep(time.Second)
						w.WriteHeader(http.StatusNotModified)
						return
					}
					io.WriteString(w, "home page")
				})
				h := mux(t, c, "GET /home", policy.Policy{TTL: 10 * time.Second}, origin)
				do(h, "GET", "/home") // anonymous: stored
				time.Sleep(15 * time.Second)
				alice := make(chan result)
				go func() {
					req := httptestRequest("GET", "/home", "")
					req.Header.Set("X-User", "alice")
					alice <- doRequest(h, req)
				}()
				time.Sleep(100 * time.Millisecond) // alice leads the revalidation
				other := do(h, "GET", "/home")     // an anonymous request, collapsed onto it
				a := <-alice
				if a.body != "home page" || a.header.Get("X-Account") != "alice" || a.header.Get(tt.header) != tt.value {
					t.Errorf("alice: %q, X-Account %q, %s %q", a.body, a.header.Get("X-Account"), tt.header, a.header.Get(tt.header))
				}
				if other.header.Get("X-Account") != "" || other.header.Get(tt.header) == tt.value {
					t.Errorf("the collapsed request got alice's headers: X-Account %q, %s %q (%s)", other.header.Get("X-Account"), tt.header, other.header.Get(tt.header), other.cacheStatus())
				}
				after := do(h, "GET", "/home")
				if after.header.Get("X-Account") != "" || after.header.Get(tt.header) == tt.value {
					t.Errorf("the entry took alice's 304: X-Account %q (%s)", after.header.Get("X-Account"), after.cacheStatus())
				}
			})
		})
	}
}

// A 304 is decided on as a 200 is, on every header it carries: the
// ones the cache never stores still say whether and how long to keep the
// updated entry.
func TestRevalidationDecidesOnWhole304(t *testing.T) {
	for _, tt := range []struct {
		name, header, value string
		honor               bool
		wantHit             bool // right after the revalidation
		wantHitAfter        bool // 40s after it (policy TTL 10s)
	}{
		{"surrogate no-store", "Surrogate-Control", "no-store", false, false, false},
		{"surrogate max-age", "Surrogate-Control", "max-age=100", true, true, true},
		{"trailer", "Trailer", "X-Checksum", false, false, false},
		{"plain", "X-Other", "1", false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newTestCache(t, newMemStore(t))
				var conds atomic.Int64
				origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Etag", `"v1"`)
					if r.Header.Get("If-None-Match") == `"v1"` {
						conds.Add(1)
						w.Header().Set(tt.header, tt.value)
						w.WriteHeader(http.StatusNotModified)
						return
					}
					io.WriteString(w, "page")
				})
				h := mux(t, c, "GET /p", policy.Policy{TTL: 10 * time.Second, HonorOriginCacheControl: tt.honor}, origin)
				do(h, "GET", "/p")
				time.Sleep(15 * time.Second)
				if got := do(h, "GET", "/p"); got.body != "page" || got.header.Get("Surrogate-Control") != "" {
					t.Fatalf("revalidation: %q, Surrogate-Control %q (%s)", got.body, got.header.Get("Surrogate-Control"), got.cacheStatus())
				}
				if got := do(h, "GET", "/p"); got.isHit() != tt.wantHit {
					t.Errorf("right after the revalidation: %s, want hit %v", got.cacheStatus(), tt.wantHit)
				}
				time.Sleep(40 * time.Second)
				if got := do(h, "GET", "/p"); got.isHit() != tt.wantHitAfter {
					t.Errorf("40s after the revalidation: %s, want hit %v", got.cacheStatus(), tt.wantHitAfter)
				}
			})
		})
	}
}

// The origin's Surrogate-Key is kept with the entry, so that a
// revalidated entry keeps its tags, and never reaches a client: not on
// the fill, a hit, a revalidation or a client's own 304.
func TestSurrogateKeyKeptNotServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Etag", `"v1"`)
			w.Header().Set("Surrogate-Key", "doc-1 docs")
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.Header().Del("Surrogate-Key") // a 304 need not repeat it
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "document")
		})
		h := mux(t, c, "GET /doc", policy.Policy{TTL: 10 * time.Second}, origin)
		check := func(what string, got result) {
			t.Helper()
			if v, ok := got.header["Surrogate-Key"]; ok {
				t.Errorf("%s (%s): Surrogate-Key %q reached the client", what, got.cacheStatus(), v)
			}
		}
		check("fill", do(h, "GET", "/doc"))
		check("hit", do(h, "GET", "/doc"))
		check("conditional hit", do(h, "GET", "/doc", "If-None-Match", `"v1"`))
		time.Sleep(15 * time.Second)
		revalidated := do(h, "GET", "/doc")
		check("revalidation", revalidated)
		if !strings.Contains(revalidated.cacheStatus(), "fwd-status=304; stored") {
			t.Fatalf("not revalidated: %s", revalidated.cacheStatus())
		}
		check("hit after the revalidation", do(h, "GET", "/doc"))
		time.Sleep(8 * time.Second) // past the first fill's lifetime: only the revalidation's tags are left
		if n, err := c.PurgeTag(context.Background(), "doc-1"); err != nil || n != 1 {
			t.Errorf("PurgeTag after the revalidation: %d, %v; want the entry's tag kept", n, err)
		}
	})
}

// When the client waits for the revalidation, it gets the stored body
// (a 200), not the origin's 304; a client that is itself conditional gets
// a 304 of its own.
func TestRevalidationAnswersTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		o := &etagOrigin{body: "body", version: 1}
		h := mux(t, c, "GET /doc", policy.Policy{TTL: 10 * time.Second}, o)
		do(h, "GET", "/doc")
		time.Sleep(15 * time.Second)
		got := do(h, "GET", "/doc")
		if got.status != http.StatusOK || got.body != "body" || !strings.Contains(got.cacheStatus(), "fwd-status=304; stored") {
			t.Fatalf("client after a revalidation: %d %q %q", got.status, got.body, got.cacheStatus())
		}
		time.Sleep(15 * time.Second)
		got = do(h, "GET", "/doc", "If-None-Match", `"v1"`)
		if got.status != http.StatusNotModified {
			t.Errorf("conditional client after a revalidation: %d %q", got.status, got.cacheStatus())
		}
	})
}

// A handler that ignores the validators answers 200: handled as a fill.
func TestRevalidationIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		o := &etagOrigin{body: "body", version: 1, ignoreIf: true}
		h := mux(t, c, "GET /doc", policy.Policy{TTL: 10 * time.Second}, o)
		do(h, "GET", "/doc")
		time.Sleep(15 * time.Second)
		o.mu.Lock()
		o.body = "new body"
		o.mu.Unlock()
		if got := do(h, "GET", "/doc"); got.body != "new body" || !strings.Contains(got.cacheStatus(), "fwd-status=200; stored") {
			t.Fatalf("%q %q", got.body, got.cacheStatus())
		}
		if s := c.Stats(); s.Revalidations != 1 || s.NotModified != 0 {
			t.Errorf("revalidations %d, 304s %d", s.Revalidations, s.NotModified)
		}
	})
}

// A client's conditional request on a miss is answered from the fill: the
// cache fetches the whole response with its own headers, stores it, and
// answers the client 304 when its validator matches.
func TestConditionalClientOnMiss(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	o := &etagOrigin{body: "body", version: 1}
	h := mux(t, c, "GET /doc", policy.Policy{TTL: time.Hour}, o)
	got := do(h, "GET", "/doc", "If-None-Match", `"v1"`)
	if got.status != http.StatusNotModified || !strings.Contains(got.cacheStatus(), "stored") {
		t.Fatalf("conditional miss: %d %q", got.status, got.cacheStatus())
	}
	if o.full.Load() != 1 || o.conds.Load() != 0 {
		t.Errorf("origin: %d full, %d conditional; want the whole response fetched", o.full.Load(), o.conds.Load())
	}
	if got := do(h, "GET", "/doc"); !got.isHit() || got.body != "body" {
		t.Errorf("next: %q %q", got.cacheStatus(), got.body)
	}
}

var _ storage.Purger = failingPurges{}

// selects follows RFC 9111 section 4.3.4: a strong ETag in the 304
// names only the stored response with that strong ETag, a weak one any
// stored ETag with the same opaque tag, a Last-Modified (without an
// ETag) the stored response with the same date, and a 304 with neither
// the response it was asked about.
func TestSelects(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	const lm, other = "Mon, 02 Jan 2006 15:04:05 GMT", "Tue, 03 Jan 2006 15:04:05 GMT"
	tests := []struct {
		name                string
		give304, giveStored http.Header
		want                bool
	}{
		{"strong equal", h("Etag", `"a"`), h("Etag", `"a"`), true},
		{"strong other", h("Etag", `"a"`), h("Etag", `"b"`), false},
		{"strong against a weak stored", h("Etag", `"a"`), h("Etag", `W/"a"`), false},
		{"weak against a strong stored", h("Etag", `W/"a"`), h("Etag", `"a"`), true},
		{"weak against a weak stored", h("Etag", `W/"a"`), h("Etag", `W/"a"`), true},
		{"weak other", h("Etag", `W/"a"`), h("Etag", `W/"b"`), false},
		{"etag against none stored", h("Etag", `"a"`), h(), false},
		{"etag wins over last-modified", h("Etag", `"b"`, "Last-Modified", lm), h("Etag", `"a"`, "Last-Modified", lm), false},
		{"last-modified equal", h("Last-Modified", lm), h("Last-Modified", lm), true},
		{"last-modified other", h("Last-Modified", lm), h("Last-Modified", other), false},
		{"last-modified against none stored", h("Last-Modified", lm), h("Etag", `"a"`), false},
		{"no validator", h("X-Other", "1"), h("Etag", `"a"`), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := selects(tt.give304, tt.giveStored); got != tt.want {
				t.Errorf("selects(%v, %v) = %v, want %v", tt.give304, tt.giveStored, got, tt.want)
			}
		})
	}
}

// A fill asks the origin for the whole representation: the client's
// preconditions and range are not forwarded (the answer is stored for
// everyone), and a stored 404 is never answered with a 304, even to a
// client whose If-None-Match names its ETag (RFC 9110 section 13.1.2: a
// 304 stands for a 200).
func TestFillIsUnconditional(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	var seen sync.Map
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
			if v := r.Header.Get(name); v != "" {
				seen.Store(name, v)
			}
		}
		w.Header().Set("Etag", `"e"`)
		if r.URL.Path == "/gone" {
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, "body")
	})
	h := mux(t, c, "GET /{p}", policy.Policy{TTL: time.Hour}, origin)
	got := do(h, "GET", "/doc", "If-Match", `"x"`, "If-Unmodified-Since", "Mon, 02 Jan 2006 15:04:05 GMT",
		"If-Range", `"e"`, "Range", "bytes=0-1", "If-None-Match", `"zzz"`, "If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT")
	if got.status != 200 || got.body != "body" {
		t.Errorf("fill: %d %q, want the whole 200", got.status, got.body)
	}
	seen.Range(func(k, v any) bool {
		t.Errorf("the origin saw the client's %s: %v", k, v)
		return true
	})
	do(h, "GET", "/gone")
	for _, cond := range []string{"If-None-Match", "If-Modified-Since"} {
		value := `"e"`
		if cond == "If-Modified-Since" {
			value = time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
		}
		if got := do(h, "GET", "/gone", cond, value); got.status != http.StatusNotFound || !got.isHit() {
			t.Errorf("a stored 404 to a client with %s: %d (%s), want the 404", cond, got.status, got.cacheStatus())
		}
	}
}

// An entry read back is held to the route's rules: a planted origin time
// (which XFetch would take as a reason to refresh on every hit) is no
// longer than the route's fill timeout, and never negative.
func TestClampTimesOriginTime(t *testing.T) {
	rt := &route{policy: policy.Policy{TTL: time.Minute, FillTimeout: 10 * time.Second}.WithDefaults()}
	for _, tt := range []struct{ give, want time.Duration }{
		{time.Hour, 10 * time.Second},
		{-time.Second, 0},
		{2 * time.Second, 2 * time.Second},
	} {
		e := &storage.Entry{Stored: time.Now(), Fresh: time.Minute, OriginTime: tt.give}
		if err := rt.clampTimes(e, time.Now()); err != nil || e.OriginTime != tt.want {
			t.Errorf("origin time %v read back as %v (%v), want %v", tt.give, e.OriginTime, err, tt.want)
		}
	}
}
