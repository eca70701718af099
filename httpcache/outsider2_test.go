package httpcache_test

// A second outsider's attacks, on the features of "Writes invalidate
// reads, stale entries revalidate with 304": write routes and the
// catch-all invalidation, revalidation with If-None-Match /
// If-Modified-Since, the recorder holding storable responses, origins
// cancelled when their client leaves. Public API only, real net/http
// servers, memstore. Each test passes when the cache is safe and fails
// when a client gets what the origin would not have given it.
//
// The helpers (outsiderCache, outsiderMux, fetch, raw, resp) are those of
// outsider_test.go. Time is real (TTLs of a second or two): the requests
// go through real sockets, which a synctest bubble cannot wait on.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

// ---------------------------------------------------------------------
// Helpers

// send is fetch with a request body.
func send(t testing.TB, srv *httptest.Server, method, target, body string, header ...string) resp {
	t.Helper()
	r, err := request(srv, method, target, body, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return r
}

// request is send for a goroutine other than the test's: it returns an
// error instead of failing the test.
func request(srv *httptest.Server, method, target, body string, header ...string) (resp, error) {
	req, err := http.NewRequest(method, srv.URL+target, strings.NewReader(body))
	if err != nil {
		return resp{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := client.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: string(b)}, nil
}

// dropAfter sends a GET of target and goes away after d, closing its
// connection, as an impatient (or malicious) client does.
func dropAfter(srv *httptest.Server, target string, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+target, nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	if r, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
}

// store2 is a tiny item store: a value per id, read and written under a
// lock.
type store2 struct {
	mu   sync.Mutex
	vals map[string]string
}

func (s *store2) get(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vals[id]
	return v, ok
}

func (s *store2) set(id, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals[id] = v
}

// ---------------------------------------------------------------------
// Findings, all fixed: each comment tells the attack as it worked before
// the fix, and the test is the guard that it no longer does.

// Since origins are cancelled when their only client leaves, the client
// decides when the handler's context ends, yet what the handler answers
// then is still stored for everyone: only a 5xx after the cancellation
// is refused. Handlers commonly answer a cancelled context with nothing
// at all (which the cache turns into an empty 200), with a 404 (a query
// error taken for "not found"; 404 is stored by default) or with partial
// results. An attacker requests a URL and hangs up after a few
// milliseconds: every client then gets the degraded answer for the TTL.
func TestOutsider2ClientLeavingPoisonsEntry(t *testing.T) {
	// wait is a slow backend call that honours cancellation.
	wait := func(r *http.Request) bool {
		select {
		case <-r.Context().Done():
			return false
		case <-time.After(300 * time.Millisecond):
			return true
		}
	}
	handlers := map[string]http.HandlerFunc{
		"returns without writing": func(w http.ResponseWriter, r *http.Request) {
			if !wait(r) {
				return // the client is gone: nothing to say
			}
			fmt.Fprintf(w, "report %s", r.PathValue("id"))
		},
		"error taken for not found": func(w http.ResponseWriter, r *http.Request) {
			if !wait(r) {
				http.NotFound(w, r) // sql.ErrNoRows and context.Canceled alike
				return
			}
			fmt.Fprintf(w, "report %s", r.PathValue("id"))
		},
		"partial results": func(w http.ResponseWriter, r *http.Request) {
			items := []string{}
			if wait(r) {
				items = append(items, "report", r.PathValue("id"))
			}
			json.NewEncoder(w).Encode(items)
		},
	}
	want := map[string]string{
		"returns without writing":   "report 1",
		"error taken for not found": "report 1",
		"partial results":           `["report","1"]` + "\n",
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /reports/{id}", policy.Policy{TTL: time.Hour}, h)
			dropAfter(srv, "/reports/1", 50*time.Millisecond) // the attacker
			time.Sleep(500 * time.Millisecond)
			victim := fetch(t, srv, "GET", "/reports/1")
			if victim.status != http.StatusOK || victim.body != want[name] {
				t.Fatalf("victim got the answer to a cancelled request: %v (stored %d)", victim, c.Stats().Stored)
			}
		})
	}
}

// On a 200 fill, headers that middleware outside the cache set before
// the origin ran (a request id, a CORS Access-Control-Allow-Origin
// reflecting the request's Origin) belong to that response only and are
// not stored. When a fill revalidates an expired entry and the origin
// answers 304, the headers of the 304 replace the stored ones, and they
// include the outer middleware's: the attacker's Origin becomes
// everyone's Access-Control-Allow-Origin, the attacker's request id
// everyone's.
func TestOutsider2RevalidationStoresOuterHeaders(t *testing.T) {
	c := outsiderCache(t)
	m := http.NewServeMux()
	m.Handle("GET /doc", c.Handler("GET /doc", policy.Policy{TTL: time.Second}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "public document")
	})))
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			w.Header().Set("Access-Control-Allow-Origin", o)
		}
		if id := r.Header.Get("X-Request-Id"); id != "" {
			w.Header().Set("X-Request-Id", id)
		}
		m.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(outer)
	t.Cleanup(srv.Close)

	fetch(t, srv, "GET", "/doc", "Origin", "https://first.example", "X-Request-Id", "first")
	if got := fetch(t, srv, "GET", "/doc", "Origin", "https://good.example", "X-Request-Id", "good"); got.header.Get("Access-Control-Allow-Origin") != "https://good.example" {
		t.Fatalf("the 200 fill stored the outer headers already: %v %v", got, got.header)
	}
	time.Sleep(1200 * time.Millisecond) // expired, kept for its validators
	attack := fetch(t, srv, "GET", "/doc", "Origin", "https://evil.example", "X-Request-Id", "attacker")
	t.Logf("attacker: %v", attack)
	victim := fetch(t, srv, "GET", "/doc", "Origin", "https://good.example", "X-Request-Id", "victim")
	if acao, id := victim.header.Get("Access-Control-Allow-Origin"), victim.header.Get("X-Request-Id"); acao != "https://good.example" || id != "victim" {
		t.Fatalf("victim (%s) got Access-Control-Allow-Origin %q and X-Request-Id %q", victim.cs(), acao, id)
	}
}

// A write route purges when its handler writes the status, "before that
// answer reaches the client", and never again. A handler that writes its
// answer before it commits (json.NewEncoder(w).Encode(item) followed by a
// deferred tx.Commit(), or WriteHeader(204) then the update) leaves a
// window between the purge and the commit in which any read refills the
// entry with the old data, and that fill's fence is the post-purge
// generation, so it is stored. Without the cache the writer's client
// gets the answer only once the handler returned (net/http buffers it),
// and every read after that sees the new value; with it, the old value is
// served for the whole TTL.
func TestOutsider2WriteAnsweredBeforeCommit(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"1": "one"}}
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := db.get(r.PathValue("id"))
		io.WriteString(w, v)
	})))
	m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", httpcache.PurgeRoute("GET /items/{id}"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// tx := db.Begin(); defer tx.Commit()
		defer func() {
			time.Sleep(300 * time.Millisecond) // the commit's round trip
			db.set(r.PathValue("id"), string(b))
		}()
		w.WriteHeader(http.StatusNoContent)
	})))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	fetch(t, srv, "GET", "/items/1")
	done := make(chan resp)
	go func() {
		w, err := request(srv, "PUT", "/items/1", "uno")
		if err != nil {
			w.body = err.Error()
		}
		done <- w
	}()
	time.Sleep(100 * time.Millisecond)
	during := fetch(t, srv, "GET", "/items/1") // some reader, while the write commits
	t.Logf("read during the write: %v", during)
	if w := <-done; w.status != http.StatusNoContent {
		t.Fatalf("write: %v", w)
	}
	if got := fetch(t, srv, "GET", "/items/1"); got.body != "uno" {
		t.Fatalf("read after the write returned got the old value: %v", got)
	}
}

// A fill that read the old data before a write is refused by the
// purge's fence, but it is still handed to the requests of the process
// waiting on its flight, including requests that began after the write
// had returned: the writer reads its own write back and gets the old
// value (with "collapsed", as if it were current).
func TestOutsider2ReadAfterWriteCollapsesOntoOldFill(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"1": "one"}}
	read := make(chan struct{})
	var once sync.Once
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := db.get(r.PathValue("id"))
		once.Do(func() {
			close(read)
			time.Sleep(600 * time.Millisecond) // a slow read, of the old value
		})
		io.WriteString(w, v)
	})))
	m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", httpcache.PurgeRoute("GET /items/{id}"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		db.set(r.PathValue("id"), string(b))
		w.WriteHeader(http.StatusNoContent)
	})))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	go request(srv, "GET", "/items/1", "") // a slow fill, started before the write
	<-read
	if w := send(t, srv, "PUT", "/items/1", "uno"); w.status != http.StatusNoContent {
		t.Fatalf("write: %v", w)
	}
	// The write has returned: this read starts after it.
	if got := fetch(t, srv, "GET", "/items/1"); got.body != "uno" {
		t.Fatalf("read started after the write returned got the old value: %v", got)
	}
}

// PurgeTarget (the default of Cache.Writes) finds the cached route of the
// write's URL by matching r.URL.Path, the decoded path, while ServeMux
// routes by the escaped path and gives the handler "a/b" for the segment
// "a%2Fb". An id with an encoded slash (a file name, GitLab's
// "group%2Fproject") is cached under its bucket, but the write's purge
// matches no route: the old body is served after the write.
func TestOutsider2PurgeTargetEncodedSlash(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"docs/readme": "old"}}
	m := http.NewServeMux()
	m.Handle("GET /files/{name}", c.Handler("GET /files/{name}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := db.get(r.PathValue("name"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v)
	})))
	m.Handle("PUT /files/{name}", c.MustWrites("PUT /files/{name}")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		db.set(r.PathValue("name"), string(b))
		w.WriteHeader(http.StatusNoContent)
	})))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	if err := c.VerifyRoutes(); err != nil {
		t.Fatal(err)
	}

	if got := fetch(t, srv, "GET", "/files/docs%2Freadme"); got.body != "old" {
		t.Fatalf("setup: %v", got)
	}
	if w := send(t, srv, "PUT", "/files/docs%2Freadme", "new"); w.status != http.StatusNoContent {
		t.Fatalf("write: %v", w)
	}
	if got := fetch(t, srv, "GET", "/files/docs%2Freadme"); got.body != "new" {
		t.Fatalf("after the write: %v (invalidated %d)", got, c.RouteStats()["PUT /files/{name}"].Invalidated)
	}
}

// RFC 9111 section 4.3.4: when a 304 carries a strong validator, only
// stored responses with that validator are updated; none matching, the
// cache must not use the 304. The cache sends both of its validators and
// applies any 304 to the stale entry. An origin that evaluates
// If-Modified-Since alone (Last-Modified has a one-second resolution)
// answers 304 with its new ETag after a second write within the same
// second: the old body is stored again, fresh, labelled with the new
// ETag, and served as current (and conditional clients holding the new
// representation are told their copy matches the old body).
func TestOutsider2NotModifiedWithAnotherETag(t *testing.T) {
	c := outsiderCache(t)
	lm := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	body, etag := "one", `"v1"`
	srv := outsiderMux(t, c, "GET /doc", policy.Policy{TTL: time.Second}, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, e := body, etag
		mu.Unlock()
		w.Header().Set("Etag", e)
		w.Header().Set("Last-Modified", lm.Format(http.TimeFormat))
		if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !lm.After(ims) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, b)
	})
	fetch(t, srv, "GET", "/doc")
	mu.Lock()
	body, etag = "two", `"v2"` // written again within the same second
	mu.Unlock()
	time.Sleep(1200 * time.Millisecond)
	for i := range 2 {
		got := fetch(t, srv, "GET", "/doc")
		if got.body != "two" {
			t.Fatalf("request %d: body %q with ETag %s (%s): a 304 for \"v2\" updated the entry of \"v1\"", i, got.body, got.header.Get("Etag"), got.cs())
		}
	}
}

// A 200 that is not storable (private, no-store, a Vary the policy does
// not key on) is never shared with the requests collapsed onto its fill:
// they fetch their own. A 304 that answers a revalidation is: the stale
// entry, updated with the 304's headers, goes to every waiter even when
// those headers say the answer is private. A personalised header of the
// leader's 304 reaches the other clients of the key.
func TestOutsider2PrivateNotModifiedShared(t *testing.T) {
	c := outsiderCache(t)
	srv := outsiderMux(t, c, "GET /home", policy.Policy{TTL: time.Second}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		if u := r.Header.Get("X-User"); u != "" { // a signed-in user (an unkeyed header), answered privately
			w.Header().Set("Cache-Control", "private")
			w.Header().Set("X-Account", u)
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			time.Sleep(300 * time.Millisecond)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "home page")
	})
	fetch(t, srv, "GET", "/home") // anonymous: public, stored
	time.Sleep(1200 * time.Millisecond)
	go request(srv, "GET", "/home", "", "X-User", "alice")
	time.Sleep(100 * time.Millisecond)
	bob := fetch(t, srv, "GET", "/home", "X-User", "bob")
	if a := bob.header.Get("X-Account"); a != "bob" {
		t.Fatalf("bob got X-Account %q (%s)", a, bob.cs())
	}
}

// An entry updated by a revalidation's 304 is stored again without its
// Surrogate-Key tags: the stored entry never kept them (Surrogate-Key is
// not stored), and the 304's own Surrogate-Key is dropped with the other
// unstored headers before the tags are computed, so the store is told of
// none, even when the 304 repeats them. The bucket lives on, fresh, while
// its tag set expires at the old lifetime: a write purging the tag then
// misses it, and the old body is served as fresh.
func TestOutsider2RevalidationDropsSurrogateKeys(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"1": "one"}}
	r := chi.NewRouter()
	r.With(c.MustRoute("/items/{id}", policy.Policy{TTL: 2 * time.Second})).Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, _ := db.get(r.PathValue("id"))
		etag := `"` + v + `"`
		w.Header().Set("Etag", etag)
		w.Header().Set("Surrogate-Key", "item-"+r.PathValue("id")) // on the 304 too
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, v)
	})
	r.With(c.MustWrites("/items/{id}", httpcache.PurgeTags(func(r *http.Request) []string {
		return []string{"item-" + r.PathValue("id")}
	}))).Put("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		db.set(r.PathValue("id"), string(b))
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	fetch(t, srv, "GET", "/items/1")    // t=0: stored, tagged
	time.Sleep(3 * time.Second)         // expired, kept for its validators
	fetch(t, srv, "GET", "/items/1")    // t=3: revalidated, fresh until t=5
	time.Sleep(1500 * time.Millisecond) // t=4.5: the tag's lifetime is over
	if w := send(t, srv, "PUT", "/items/1", "uno"); w.status != http.StatusNoContent {
		t.Fatalf("write: %v", w)
	}
	if got := fetch(t, srv, "GET", "/items/1"); got.body != "uno" {
		t.Fatalf("after the tagged write: %v (invalidated %d)", got, c.RouteStats()["/items/{id}"].Invalidated)
	}
}

// The origin is cancelled when its client leaves only if nobody waits at
// that moment; it is never checked again. A second request for the same
// key that waits and then leaves too keeps the origin running for
// nobody until FillTimeout (30s): two dropped requests per key bring
// back the exhaustion the cancellation was to end.
func TestOutsider2OriginRunsForNobodyAfterWaiterLeaves(t *testing.T) {
	c := outsiderCache(t)
	var running atomic.Int64
	srv := outsiderMux(t, c, "GET /slow/{id}", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "done")
	})
	const n = 5
	var wg sync.WaitGroup
	for i := range n {
		target := fmt.Sprintf("/slow/%d", i)
		wg.Go(func() { dropAfter(srv, target, 200*time.Millisecond) }) // leads
		wg.Go(func() {
			// Waits for the leader's fill, and leaves after its client.
			time.Sleep(50 * time.Millisecond)
			dropAfter(srv, target, 350*time.Millisecond)
		})
	}
	wg.Wait()
	deadline := time.Now().Add(1500 * time.Millisecond)
	for running.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := running.Load(); r > 0 {
		t.Fatalf("%d of %d origin calls still running 1.5s after every client of theirs went away", r, n)
	}
}

// Under http.StripPrefix (the README: declare the pattern the inner mux
// routes by), a catch-all's write purges its own URL, but the Location
// of its answer is resolved as is, against the inner patterns: the
// client-facing "/api/items/3" of a created item matches no route, and
// the 404 cached for it before the create stays.
func TestOutsider2StripPrefixLocationNotPurged(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"1": "one"}}
	inner := http.NewServeMux()
	inner.Handle("/items/{id}", c.Handler("/items/{id}", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := db.get(r.PathValue("id"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v)
	})))
	inner.Handle("/items", c.Handler("/items", policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			io.WriteString(w, "list")
			return
		}
		b, _ := io.ReadAll(r.Body)
		id, v, _ := strings.Cut(string(b), "=")
		db.set(id, v)
		w.Header().Set("Location", "/api/items/"+id)
		w.WriteHeader(http.StatusCreated)
	})))
	m := http.NewServeMux()
	m.Handle("/api/", http.StripPrefix("/api", inner))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	if got := fetch(t, srv, "GET", "/api/items/3"); got.status != http.StatusNotFound {
		t.Fatalf("setup: %v", got)
	}
	if w := send(t, srv, "POST", "/api/items", "3=three"); w.status != http.StatusCreated {
		t.Fatalf("create: %v", w)
	}
	if got := fetch(t, srv, "GET", "/api/items/3"); got.status != http.StatusOK || got.body != "three" {
		t.Fatalf("the created item (its Location) after the create: %v", got)
	}
}

// ---------------------------------------------------------------------
// Probes that held (they pass while the cache is safe)

// Revalidation as a client sees it: a HEAD gets headers without a body;
// the client's own validators never reach the origin (it sees the
// stored ETag only); a 304 carrying Content-Length or Content-Encoding
// does not change the stored body; a non-matching conditional client
// gets the whole body; an expired 404 is fetched again, not revalidated.
func TestOutsider2RevalidationHeld(t *testing.T) {
	c := outsiderCache(t)
	var mu sync.Mutex
	var seen []string
	srv := outsiderMux(t, c, "GET /doc/{id}", policy.Policy{TTL: time.Second}, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.Header.Get("If-None-Match")+" "+r.Header.Get("If-Modified-Since"))
		mu.Unlock()
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Content-Type", "text/plain")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Content-Length", "3")
			w.Header().Set("Content-Encoding", "br")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, strings.Repeat("document ", 40))
	})
	body := strings.Repeat("document ", 40)
	fetch(t, srv, "GET", "/doc/1")
	fetch(t, srv, "GET", "/doc/missing")
	time.Sleep(1200 * time.Millisecond)
	head := raw(t, srv, "HEAD /doc/1 HTTP/1.1\r\nHost: "+hostOf(srv)+"\r\nIf-None-Match: \"v0\"\r\nIf-Modified-Since: "+time.Now().Format(http.TimeFormat)+"\r\nConnection: close\r\n\r\n")
	if head.status != http.StatusOK || head.body != "" || head.header.Get("Content-Encoding") != "" {
		t.Errorf("HEAD revalidation: %v %v", head, head.header)
	}
	for _, ae := range []string{"", "gzip"} {
		got := fetch(t, srv, "GET", "/doc/1", "Accept-Encoding", ae, "If-None-Match", `"other"`)
		if got.status != http.StatusOK || got.header.Get("Content-Encoding") == "br" {
			t.Errorf("after the 304 (Accept-Encoding %q): %v %v", ae, got, got.header)
		}
		if ae == "" && got.body != body {
			t.Errorf("after the 304: %v", got)
		}
	}
	if got := fetch(t, srv, "GET", "/doc/1", "If-None-Match", `"v1"`); got.status != http.StatusNotModified {
		t.Errorf("matching conditional: %v", got)
	}
	if got := fetch(t, srv, "GET", "/doc/missing"); got.status != http.StatusNotFound {
		t.Errorf("expired 404: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if strings.Contains(s, "v0") || strings.Contains(s, "other") || strings.HasPrefix(s, "HEAD") {
			t.Errorf("the origin saw %q", s)
		}
	}
}

// Writes that must purge nothing: a 4xx/5xx answer, a safe method
// (HEAD, OPTIONS) on a catch-all, a write route reached by its GET; and
// a write through a chi sub-router (whole patterns) purges its bucket
// and only it.
func TestOutsider2WritesHeld(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"1": "one", "2": "two"}}
	get := func(w http.ResponseWriter, r *http.Request) {
		v, _ := db.get(chi.URLParam(r, "id"))
		fmt.Fprintf(w, "%s/%s", chi.URLParam(r, "tenant"), v)
	}
	r := chi.NewRouter()
	r.Route("/t/{tenant}", func(r chi.Router) {
		r.With(c.MustRoute("/t/{tenant}/items/{id}", policy.Policy{TTL: time.Hour})).Get("/items/{id}", get)
		r.With(c.MustWrites("/t/{tenant}/items/{id}", httpcache.PurgeRoute("/t/{tenant}/items/{id}"))).Put("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			switch string(b) {
			case "bad":
				http.Error(w, "bad", http.StatusBadRequest)
				return
			case "boom":
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			db.set(chi.URLParam(r, "id"), string(b))
			w.WriteHeader(http.StatusNoContent)
		})
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	if err := c.VerifyRoutes(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"/t/a/items/1", "/t/b/items/1", "/t/a/items/2"} {
		fetch(t, srv, "GET", u)
	}
	for _, b := range []string{"bad", "boom"} {
		send(t, srv, "PUT", "/t/a/items/1", b)
		if got := fetch(t, srv, "GET", "/t/a/items/1"); !got.hit() {
			t.Errorf("a failed write (%s) purged: %v", b, got)
		}
	}
	send(t, srv, "PUT", "/t/a/items/1", "uno")
	if got := fetch(t, srv, "GET", "/t/a/items/1"); got.hit() || got.body != "a/uno" {
		t.Errorf("after the write: %v", got)
	}
	if got := fetch(t, srv, "GET", "/t/a/items/2"); !got.hit() {
		t.Errorf("another item purged: %v", got)
	}
}

// A background refresh (refresh ahead) that read the old value before a
// write is fenced like a fill: after the write, the new value is served.
func TestOutsider2WriteRacingRefreshHeld(t *testing.T) {
	c := outsiderCache(t)
	db := &store2{vals: map[string]string{"1": "one"}}
	var calls atomic.Int64
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: 2 * time.Second, RefreshAhead: 0.5}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := db.get(r.PathValue("id"))
		if calls.Add(1) == 2 {
			time.Sleep(500 * time.Millisecond) // the refresh: read the old value, answer late
		}
		io.WriteString(w, v)
	})))
	m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}", httpcache.PurgeRoute("GET /items/{id}"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		db.set(r.PathValue("id"), string(b))
		w.WriteHeader(http.StatusNoContent)
	})))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	fetch(t, srv, "GET", "/items/1")
	time.Sleep(1100 * time.Millisecond)
	fetch(t, srv, "GET", "/items/1") // a hit that schedules the refresh
	time.Sleep(100 * time.Millisecond)
	send(t, srv, "PUT", "/items/1", "uno")
	for range 3 {
		if got := fetch(t, srv, "GET", "/items/1"); got.body != "uno" {
			t.Fatalf("after the write: %v", got)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if calls.Load() < 3 {
		t.Fatalf("no refresh ran (%d origin calls)", calls.Load())
	}
}
