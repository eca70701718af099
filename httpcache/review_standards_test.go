package httpcache_test

// An outsider's review of standards mode (policy.Policy{Standards: true}):
// each test is an origin, an attacker's (or first client's) request and a
// victim's request, through the public API with real net/http servers and
// memstore. A test passes when the victim gets its own, correct response.
// Run: go test -race -run 'Review' ./httpcache/

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// ---------------------------------------------------------------------
// Helpers (prefixed rs to stay clear of the package's other test files)

const rsPattern = "GET /r/{id}"

type rsEnv struct {
	t     *testing.T
	store *memstore.Store
	cache *httpcache.Cache
	srv   *httptest.Server
	calls atomic.Int64
}

func rsNewCache(t *testing.T, store *memstore.Store, opts ...httpcache.Option) *httpcache.Cache {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := httpcache.New(store, append([]httpcache.Option{httpcache.WithLogger(quiet), httpcache.WithoutStartupHealthCheck()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func rsServe(t *testing.T, c *httpcache.Cache, p policy.Policy, h http.Handler) *httptest.Server {
	t.Helper()
	m := http.NewServeMux()
	m.Handle(rsPattern, c.Handler(rsPattern, p, h))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return srv
}

// rsSetup builds a cache over a fresh memstore with one route served by h;
// e.calls counts the handler's calls.
func rsSetup(t *testing.T, p policy.Policy, h func(e *rsEnv, w http.ResponseWriter, r *http.Request)) *rsEnv {
	t.Helper()
	store, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &rsEnv{t: t, store: store}
	e.cache = rsNewCache(t, store)
	e.srv = rsServe(t, e.cache, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		h(e, w, r)
	}))
	return e
}

func std() policy.Policy { return policy.Policy{Standards: true} }

type rsResp struct {
	status int
	header http.Header
	body   string
}

func (r rsResp) String() string {
	return fmt.Sprintf("%d %q (Cache-Status: %s)", r.status, r.body, r.header.Get("Cache-Status"))
}

var rsClient = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// get sends method target with header pairs (name, value, name, value...);
// a name given twice makes two field lines.
func (e *rsEnv) do(method, target string, hdr ...string) rsResp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+target, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := rsClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return rsResp{res.StatusCode, res.Header, string(b)}
}

func (e *rsEnv) get(target string, hdr ...string) rsResp {
	e.t.Helper()
	return e.do("GET", target, hdr...)
}

func (e *rsEnv) want(r rsResp, status int, body string, what string) {
	e.t.Helper()
	if r.status != status || r.body != body {
		e.t.Errorf("%s: got %s, want %d %q", what, r, status, body)
	}
}

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// ---------------------------------------------------------------------
// Vary: variant confusion across the secondary key

// The baseline: an origin that varies on Accept-Language (not in the
// policy's Vary) gets one variant per language.
func TestReviewStdVaryBasic(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "attacker fr")
	e.want(e.get("/r/1", "Accept-Language", "en"), 200, "lang=en", "victim en")
	e.want(e.get("/r/1"), 200, "lang=", "victim without Accept-Language")
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "fr again")
	if r := e.get("/r/1", "Accept-Language", "en"); !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Errorf("en not served from its variant: %s", r)
	}
}

// Requests collapsed onto one fill must not be handed a response that
// varies on a header in which they differ from the filling request.
func TestReviewStdVaryCollapsedWaiter(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	var wg sync.WaitGroup
	var victim [5]rsResp
	wg.Add(1)
	go func() { defer wg.Done(); e.get("/r/1", "Accept-Language", "fr") }()
	time.Sleep(80 * time.Millisecond)
	for i := range victim {
		wg.Add(1)
		go func() { defer wg.Done(); victim[i] = e.get("/r/1", "Accept-Language", "en") }()
	}
	wg.Wait()
	for _, v := range victim {
		e.want(v, 200, "lang=en", "collapsed victim en")
	}
}

// The secondary key must hold the names of the headers, not only their
// values: after the origin moves from Vary: X-A to Vary: X-B, a request
// with X-B: v must not get the variant stored for X-A: v.
func TestReviewStdVaryNamesInSecondaryKey(t *testing.T) {
	t.Parallel()
	var phase atomic.Int32
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if phase.Load() == 0 {
			w.Header().Set("Vary", "X-A")
			fmt.Fprintf(w, "A=%s", r.Header.Get("X-A"))
			return
		}
		w.Header().Set("Vary", "X-B")
		fmt.Fprintf(w, "B=%s", r.Header.Get("X-B"))
	})
	e.want(e.get("/r/1", "X-A", "v"), 200, "A=v", "attacker X-A: v")
	phase.Store(1)
	e.want(e.get("/r/1", "X-A", "w"), 200, "B=", "X-A: w (secondary miss, origin now varies on X-B)")
	e.want(e.get("/r/1", "X-B", "v"), 200, "B=v", "victim X-B: v")
}

// Reordering Accept-Language changes the client's preference: "fr, en"
// and "en, fr" are distinct selecting values (RFC 9111 section 4.1 allows
// reordering only where order is not significant).
func TestReviewStdVaryValueOrder(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "first=%s", strings.TrimSpace(strings.Split(r.Header.Get("Accept-Language"), ",")[0]))
	})
	e.want(e.get("/r/1", "Accept-Language", "fr, en"), 200, "first=fr", "attacker fr, en")
	e.want(e.get("/r/1", "Accept-Language", "en, fr"), 200, "first=en", "victim en, fr")
}

// A header of unknown syntax is case-sensitive: X-Token: ABC and abc are
// different variants.
func TestReviewStdVaryValueCase(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-Token")
		fmt.Fprintf(w, "token=%s", r.Header.Get("X-Token"))
	})
	e.want(e.get("/r/1", "X-Token", "ABC"), 200, "token=ABC", "attacker ABC")
	e.want(e.get("/r/1", "X-Token", "abc"), 200, "token=abc", "victim abc")
}

// An absent header matches only an absent header (RFC 9111 section 4.1),
// not an empty one.
func TestReviewStdVaryAbsentVsEmpty(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-A")
		_, present := r.Header["X-A"]
		fmt.Fprintf(w, "present=%v", present)
	})
	e.want(e.get("/r/1", "X-A", ""), 200, "present=true", "attacker empty X-A")
	e.want(e.get("/r/1"), 200, "present=false", "victim without X-A")
}

// Two varying headers: values must not be joined ambiguously.
func TestReviewStdVaryTwoHeadersJoin(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-A, X-B")
		fmt.Fprintf(w, "a=%q b=%q", r.Header.Values("X-A"), r.Header.Values("X-B"))
	})
	e.want(e.get("/r/1", "X-A", "x", "X-B", "y,z"), 200, `a=["x"] b=["y,z"]`, "attacker")
	e.want(e.get("/r/1", "X-A", "x,y", "X-B", "z"), 200, `a=["x,y"] b=["z"]`, "victim 1")
	e.want(e.get("/r/1", "X-A", "x,y"), 200, `a=["x,y"] b=[]`, "victim 2")
	e.want(e.get("/r/1", "X-B", "x,y"), 200, `a=[] b=["x,y"]`, "victim 3")
}

// A value of unknown syntax is not a list: "a,b" and "a, b" are different
// bytes to a handler that reads them whole.
func TestReviewStdVaryUnknownHeaderWhitespace(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-Sig")
		fmt.Fprintf(w, "sig=%s", r.Header.Get("X-Sig"))
	})
	e.want(e.get("/r/1", "X-Sig", `"a,b"`), 200, `sig="a,b"`, "attacker")
	e.want(e.get("/r/1", "X-Sig", `"a, b"`), 200, `sig="a, b"`, "victim")
}

// A background refresh sends only keyed headers; it must not store the
// response to a request without Accept-Language under the fr variant.
func TestReviewStdVaryRefreshAhead(t *testing.T) {
	t.Parallel()
	p := std()
	p.RefreshAhead = 0.3
	e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "fill fr")
	time.Sleep(1500 * time.Millisecond)
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "hit fr that triggers refresh")
	time.Sleep(500 * time.Millisecond)
	for range 3 {
		e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "fr after refresh")
	}
}

// Same with the response's own stale-while-revalidate.
func TestReviewStdVaryStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "fill fr")
	time.Sleep(2200 * time.Millisecond)
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "stale fr (triggers revalidation)")
	time.Sleep(500 * time.Millisecond)
	for range 3 {
		e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "fr after revalidation")
	}
}

// Vary: Accept-Encoding is answered by the cache, which decodes for
// clients that do not accept the stored coding. A coding it cannot decode
// must not reach a client that did not ask for it.
func TestReviewStdVaryAcceptEncodingUnknownCoding(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "br") {
			w.Header().Set("Content-Encoding", "br")
			w.Write([]byte("\x0b\x02\x80brotli-bytes\x03"))
			return
		}
		fmt.Fprint(w, "plain")
	})
	r := e.get("/r/1", "Accept-Encoding", "br")
	if r.header.Get("Content-Encoding") != "br" {
		t.Fatalf("attacker: %s", r)
	}
	v := e.get("/r/1", "Accept-Encoding", "gzip")
	if v.header.Get("Content-Encoding") != "" || v.body != "plain" {
		t.Errorf("victim accepting gzip only: got %s Content-Encoding %q, want 200 \"plain\"", v, v.header.Get("Content-Encoding"))
	}
	v = e.get("/r/1")
	if v.header.Get("Content-Encoding") != "" || v.body != "plain" {
		t.Errorf("victim without Accept-Encoding: got %s Content-Encoding %q, want 200 \"plain\"", v, v.header.Get("Content-Encoding"))
	}
}

// no-transform: a client that does not accept the stored coding goes to
// the origin rather than get it decoded by the cache.
func TestReviewStdVaryNoTransform(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, no-transform")
		w.Header().Set("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write([]byte("gz-variant"))
			zw.Close()
			w.Write(b.Bytes())
			return
		}
		fmt.Fprint(w, "identity-variant")
	})
	e.get("/r/1", "Accept-Encoding", "gzip")
	v := e.get("/r/1")
	if v.body != "identity-variant" || v.header.Get("Content-Encoding") != "" {
		t.Errorf("victim without gzip: got %s, want the origin's identity variant", v)
	}
}

// Secondary keys are variants like the others: MaxFields bounds them.
func TestReviewStdVaryExhaustionBounded(t *testing.T) {
	t.Parallel()
	p := std()
	p.MaxFields = 4
	e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "User-Agent")
		fmt.Fprintf(w, "ua=%s", r.Header.Get("User-Agent"))
	})
	for i := range 20 {
		ua := fmt.Sprintf("junk-%d", i)
		e.want(e.get("/r/1", "User-Agent", ua), 200, "ua="+ua, "junk")
	}
	before := e.calls.Load()
	for i := range 20 {
		ua := fmt.Sprintf("junk-%d", i)
		e.want(e.get("/r/1", "User-Agent", ua), 200, "ua="+ua, "junk again")
	}
	served := 20 - (e.calls.Load() - before)
	if served > 4 {
		t.Errorf("%d of 20 User-Agent variants served from the cache with MaxFields 4: secondary keys are not bounded", served)
	}
	if s := e.cache.Stats(); s.VariantsRefused == 0 {
		t.Errorf("variants_refused = 0 after 20 variants with MaxFields 4")
	}
}

// Vary: * is never stored.
func TestReviewStdVaryStar(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "*")
		fmt.Fprintf(w, "ip=%s", r.Header.Get("X-Real-Ip"))
	})
	e.want(e.get("/r/1", "X-Real-Ip", "evil"), 200, "ip=evil", "attacker")
	e.want(e.get("/r/1", "X-Real-Ip", "good"), 200, "ip=good", "victim")
}

// A vary marker written by a standards-mode instance, read by an instance
// of the same route in default mode (a policy file switched back, a
// rolling change): it must be a miss, not a body.
func TestReviewStdMarkerReadByDefaultMode(t *testing.T) {
	t.Parallel()
	store, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	a := &rsEnv{t: t, store: store, cache: rsNewCache(t, store)}
	a.srv = rsServe(t, a.cache, std(), h)
	b := &rsEnv{t: t, store: store, cache: rsNewCache(t, store)}
	b.srv = rsServe(t, b.cache, policy.Policy{TTL: time.Minute, Vary: []string{"Accept-Language"}}, h)
	c := &rsEnv{t: t, store: store, cache: rsNewCache(t, store)}
	c.srv = rsServe(t, c.cache, policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "default")
	}))
	a.want(a.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "standards fill fr")
	b.want(b.get("/r/1", "Accept-Language", "en"), 200, "lang=en", "default mode keyed on Accept-Language")
	c.want(c.get("/r/1"), 200, "default", "default mode unkeyed")
	// and the other way: an entry of the default mode read in standards mode
	a.want(a.get("/r/1", "Accept-Language", "en"), 200, "lang=en", "standards after default fills")
}

// ---------------------------------------------------------------------
// Authorization (RFC 9111 section 3.5)

// A personalised response to an authorized request without public,
// s-maxage or must-revalidate is not stored.
func TestReviewStdAuthResponseNotStored(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "user=%s", r.Header.Get("Authorization"))
	})
	e.want(e.get("/r/1", "Authorization", "alice"), 200, "user=alice", "alice")
	e.want(e.get("/r/1"), 200, "user=", "anonymous victim")
	e.want(e.get("/r/1", "Authorization", "bob"), 200, "user=bob", "bob")
}

// Anonymous requests collapsed onto an authorized request's fill must not
// get its (unstorable, personalised) response.
func TestReviewStdAuthCollapsedWaiter(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "user=%s", r.Header.Get("Authorization"))
	})
	var wg sync.WaitGroup
	var anon [4]rsResp
	var bob rsResp
	wg.Add(1)
	go func() { defer wg.Done(); e.get("/r/1", "Authorization", "alice") }()
	time.Sleep(80 * time.Millisecond)
	for i := range anon {
		wg.Add(1)
		go func() { defer wg.Done(); anon[i] = e.get("/r/1") }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); bob = e.get("/r/1", "Authorization", "bob") }()
	wg.Wait()
	for _, v := range anon {
		e.want(v, 200, "user=", "collapsed anonymous victim")
	}
	e.want(bob, 200, "user=bob", "collapsed bob")
}

// An authorized request collapsed onto an anonymous fill whose response
// lacks public/s-maxage/must-revalidate must not be answered with it
// (the README: stored responses without those are not served to it).
func TestReviewStdAuthCollapsedOnAnonymousFill(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "user=%s", r.Header.Get("Authorization"))
	})
	var wg sync.WaitGroup
	var alice rsResp
	wg.Add(1)
	go func() { defer wg.Done(); e.get("/r/1") }()
	time.Sleep(80 * time.Millisecond)
	wg.Add(1)
	go func() { defer wg.Done(); alice = e.get("/r/1", "Authorization", "alice") }()
	wg.Wait()
	e.want(alice, 200, "user=alice", "alice collapsed on an anonymous fill")
	e.want(e.get("/r/1", "Authorization", "alice"), 200, "user=alice", "alice on a stored anonymous entry")
}

// A 304 to an authorized revalidation must not write that user's headers
// into the entry every client gets.
func TestReviewStdAuth304DoesNotLeakHeaders(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("ETag", `"v1"`)
		if u := r.Header.Get("Authorization"); u != "" {
			w.Header().Set("X-User", u)
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "page")
	})
	e.want(e.get("/r/1"), 200, "page", "anonymous fill")
	time.Sleep(2200 * time.Millisecond)
	r := e.get("/r/1", "Authorization", "alice")
	t.Logf("alice after stale: %s X-User=%q", r, r.header.Get("X-User"))
	v := e.get("/r/1")
	if u := v.header.Get("X-User"); u != "" {
		t.Errorf("anonymous victim got X-User: %q from alice's revalidation (%s)", u, v)
	}
}

// must-revalidate makes an authorized response shareable (documented);
// Vary: Authorization keeps one variant per credential.
func TestReviewStdAuthVaryAuthorization(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Vary", "Authorization")
		fmt.Fprintf(w, "user=%s", r.Header.Get("Authorization"))
	})
	e.want(e.get("/r/1", "Authorization", "alice"), 200, "user=alice", "alice")
	e.want(e.get("/r/1", "Authorization", "bob"), 200, "user=bob", "bob")
	e.want(e.get("/r/1"), 200, "user=", "anonymous")
	e.want(e.get("/r/1", "Authorization", "alice"), 200, "user=alice", "alice again")
}

// Proxy-Authorization is a credential too: in both modes a response to it
// must not be served to others.
func TestReviewStdProxyAuthorization(t *testing.T) {
	t.Parallel()
	for _, p := range []policy.Policy{std(), {TTL: time.Minute}} {
		e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			if p.Standards {
				w.Header().Set("Cache-Control", "max-age=60")
			}
			fmt.Fprintf(w, "proxy-user=%s", r.Header.Get("Proxy-Authorization"))
		})
		e.want(e.get("/r/1", "Proxy-Authorization", "Basic YWxpY2U6eA=="), 200, "proxy-user=Basic YWxpY2U6eA==", fmt.Sprintf("standards=%v attacker", p.Standards))
		e.want(e.get("/r/1"), 200, "proxy-user=", fmt.Sprintf("standards=%v victim", p.Standards))
	}
}

// Cookie requests bypass in both modes; Set-Cookie responses are never
// stored, even with a trailer or a CDN-Cache-Control.
func TestReviewStdCookies(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("CDN-Cache-Control", "max-age=60")
		c, _ := r.Cookie("sid")
		if c != nil {
			fmt.Fprintf(w, "sid=%s", c.Value)
			return
		}
		if r.URL.Query().Get("login") != "" {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: "secret"})
		}
		fmt.Fprint(w, "anon")
	})
	e.want(e.get("/r/1", "Cookie", "sid=alice"), 200, "sid=alice", "cookie attacker")
	e.want(e.get("/r/1"), 200, "anon", "victim")
	r := e.get("/r/2?login=1")
	if r.header.Get("Set-Cookie") == "" {
		t.Fatalf("login: %s", r)
	}
	if v := e.get("/r/2?login=1"); v.header.Get("Set-Cookie") != "" && strings.Contains(v.header.Get("Cache-Status"), "hit") {
		t.Errorf("Set-Cookie served from the cache: %s", v)
	}
}

// A cookie set as a trailer after the body.
func TestReviewStdSetCookieTrailer(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
		w.Header().Set(http.TrailerPrefix+"Set-Cookie", "sid=secret-"+r.Header.Get("X-Who"))
	})
	e.get("/r/1", "X-Who", "alice")
	req, _ := http.NewRequest("GET", e.srv.URL+"/r/1", nil)
	res, err := rsClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(res.Body)
	res.Body.Close()
	if c := res.Trailer.Get("Set-Cookie") + res.Header.Get("Set-Cookie"); strings.Contains(c, "alice") {
		t.Errorf("victim got alice's cookie: %q", c)
	}
}

// ---------------------------------------------------------------------
// Ranges and If-Range (RFC 9110 section 14, 13.1.5)

const rsBody = "0123456789abcdefghijklmnopqrstuvwxyz"

func rsRangeOrigin(cc, etag, lastModified string) func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
	return func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", cc)
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		if lastModified != "" {
			w.Header().Set("Last-Modified", lastModified)
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, rsBody)
	}
}

func TestReviewStdRangeBasic(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), rsRangeOrigin("max-age=60", `"s1"`, ""))
	e.want(e.get("/r/1"), 200, rsBody, "fill")
	r := e.get("/r/1", "Range", "bytes=2-5")
	e.want(r, 206, "2345", "single range")
	if cr := r.header.Get("Content-Range"); cr != "bytes 2-5/36" {
		t.Errorf("Content-Range %q, want bytes 2-5/36", cr)
	}
	e.want(e.get("/r/1", "Range", "bytes=-3"), 206, "xyz", "suffix range")
	// a last-pos past int64: 206 of the rest, or the Range ignored (RFC 9110 14.2 allows it)
	if r := e.get("/r/1", "Range", "bytes=30-999999999999999999999"); !(r.status == 206 && r.body == "uvwxyz") && !(r.status == 200 && r.body == rsBody) {
		t.Errorf("huge last-pos: %s", r)
	}
	e.want(e.get("/r/1", "Range", "bytes=0-1,4-5"), 200, rsBody, "two ranges")
	r = e.get("/r/1", "Range", "bytes=100-")
	if r.status != 416 || r.header.Get("Content-Range") != "bytes */36" {
		t.Errorf("unsatisfiable: %s Content-Range %q, want 416 bytes */36", r, r.header.Get("Content-Range"))
	}
	e.want(e.get("/r/1"), 200, rsBody, "victim after the 416")
	e.want(e.get("/r/1", "Range", "bytes=5-2"), 200, rsBody, "invalid range (last < first) ignored")
	e.want(e.get("/r/1", "Range", "items=0-1"), 200, rsBody, "unknown unit ignored")
	e.want(e.do("HEAD", "/r/1", "Range", "bytes=0-1"), 200, "", "HEAD with Range")
	if c := e.calls.Load(); c != 1 {
		t.Errorf("origin called %d times, want 1", c)
	}
}

// A Range request that fills the entry: the whole response is stored and
// other clients (waiting for the fill, or coming after) get the whole 200.
func TestReviewStdRangeFillAndCollapse(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"s1"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(rsBody))
	})
	var wg sync.WaitGroup
	var attacker rsResp
	var victims [3]rsResp
	wg.Add(1)
	go func() { defer wg.Done(); attacker = e.get("/r/1", "Range", "bytes=0-3") }()
	time.Sleep(80 * time.Millisecond)
	for i := range victims {
		wg.Add(1)
		go func() { defer wg.Done(); victims[i] = e.get("/r/1") }()
	}
	wg.Wait()
	e.want(attacker, 206, "0123", "attacker's range")
	for _, v := range victims {
		e.want(v, 200, rsBody, "collapsed victim")
	}
	e.want(e.get("/r/1"), 200, rsBody, "later victim")
}

// Conditional requests that fill: a client's If-None-Match on a miss must
// not leave a 304 for the others.
func TestReviewStdConditionalFillAndCollapse(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"s1"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(rsBody))
	})
	var wg sync.WaitGroup
	var attacker rsResp
	var victims [3]rsResp
	wg.Add(1)
	go func() { defer wg.Done(); attacker = e.get("/r/1", "If-None-Match", `"s1"`) }()
	time.Sleep(80 * time.Millisecond)
	for i := range victims {
		wg.Add(1)
		go func() { defer wg.Done(); victims[i] = e.get("/r/1") }()
	}
	wg.Wait()
	e.want(attacker, 304, "", "attacker's conditional")
	for _, v := range victims {
		e.want(v, 200, rsBody, "collapsed victim")
	}
	e.want(e.get("/r/1"), 200, rsBody, "later victim")
}

// If-Range needs a strong validator that matches (RFC 9110 13.1.5);
// otherwise the whole 200.
func TestReviewStdIfRange(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), rsRangeOrigin("max-age=60", `"s1"`, ""))
	e.get("/r/1")
	e.want(e.get("/r/1", "Range", "bytes=0-1", "If-Range", `"s1"`), 206, "01", "matching strong etag")
	e.want(e.get("/r/1", "Range", "bytes=0-1", "If-Range", `"old"`), 200, rsBody, "other etag")
	e.want(e.get("/r/1", "Range", "bytes=0-1", "If-Range", `W/"s1"`), 200, rsBody, "weak etag in If-Range")

	w := rsSetup(t, std(), rsRangeOrigin("max-age=60", `W/"w1"`, ""))
	w.get("/r/1")
	w.want(w.get("/r/1", "Range", "bytes=0-1", "If-Range", `W/"w1"`), 200, rsBody, "stored weak etag")
	w.want(w.get("/r/1", "Range", "bytes=0-1", "If-Range", `"w1"`), 200, rsBody, "stored weak etag, strong in If-Range")

	// Last-Modified equal to Date is weak: If-Range with it gives the 200.
	now := time.Now()
	lm := httpDate(now)
	d := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", lm)
		rsRangeOrigin("max-age=60", "", lm)(e, w, r)
	})
	d.get("/r/1")
	d.want(d.get("/r/1", "Range", "bytes=0-1", "If-Range", lm), 200, rsBody, "If-Range with a weak Last-Modified")
	// and a strong one (a minute before Date) works
	lm2 := httpDate(now.Add(-time.Minute))
	s := rsSetup(t, std(), rsRangeOrigin("max-age=60", "", lm2))
	s.get("/r/1")
	s.want(s.get("/r/1", "Range", "bytes=0-1", "If-Range", lm2), 206, "01", "If-Range with a strong Last-Modified")
	s.want(s.get("/r/1", "Range", "bytes=0-1", "If-Range", httpDate(now.Add(-2*time.Minute))), 200, rsBody, "If-Range with another date")
}

// Range applies to a stored 200 only.
func TestReviewStdRangeOnStoredError(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(404)
		fmt.Fprint(w, "not found page")
	})
	e.want(e.get("/r/1"), 404, "not found page", "fill")
	e.want(e.get("/r/1", "Range", "bytes=0-2"), 404, "not found page", "Range on a stored 404")
}

// A Range on an entry the cache stored gzipped: the 206 must be a slice of
// the very representation that client would get as a 200 (same coding,
// same length), or a client resuming a download assembles garbage.
func TestReviewStdRangeOnCacheGzippedEntry(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("hello readthrough ", 100)
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"big"`)
		fmt.Fprint(w, big)
	})
	e.get("/r/1")
	for _, ae := range []string{"", "gzip"} {
		full := e.get("/r/1", "Accept-Encoding", ae)
		part := e.get("/r/1", "Accept-Encoding", ae, "Range", "bytes=10-19")
		if part.status != 206 {
			t.Errorf("Accept-Encoding %q: range got %s", ae, part)
			continue
		}
		if full.header.Get("Content-Encoding") != part.header.Get("Content-Encoding") {
			t.Errorf("Accept-Encoding %q: 200 in %q, 206 in %q", ae, full.header.Get("Content-Encoding"), part.header.Get("Content-Encoding"))
		}
		if part.body != full.body[10:20] {
			t.Errorf("Accept-Encoding %q: 206 body %q is not bytes 10-19 of the 200 %q", ae, part.body, full.body[10:20])
		}
		if cr := part.header.Get("Content-Range"); !strings.HasSuffix(cr, fmt.Sprintf("/%d", len(full.body))) {
			t.Errorf("Accept-Encoding %q: Content-Range %q, full length %d", ae, cr, len(full.body))
		}
		if full.header.Get("Content-Encoding") == "gzip" && full.header.Get("ETag") == `"big"` {
			t.Errorf("the cache's gzip of the body carries the origin's strong ETag %q of the identity body (RFC 9110 8.8.3: a strong validator is per representation)", full.header.Get("ETag"))
		}
	}
}

// ---------------------------------------------------------------------
// Conditional requests answered from the cache

// A stored 404 is not a current representation: If-None-Match must not
// turn it into a 304 (RFC 9110 13.2.1: preconditions apply to 2xx only).
func TestReviewStdConditionalOnStoredError(t *testing.T) {
	t.Parallel()
	for _, p := range []policy.Policy{std(), {TTL: time.Minute}} {
		e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("ETag", `"e404"`)
			w.WriteHeader(404)
			fmt.Fprint(w, "missing")
		})
		e.want(e.get("/r/1"), 404, "missing", "fill")
		e.want(e.get("/r/1", "If-None-Match", "*"), 404, "missing", fmt.Sprintf("standards=%v If-None-Match: *", p.Standards))
		e.want(e.get("/r/1", "If-None-Match", `"e404"`), 404, "missing", fmt.Sprintf("standards=%v If-None-Match: the 404's etag", p.Standards))
	}
}

// A 304 whose validator names another representation is not used.
func TestReviewStdRevalidation304OtherValidator(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1")
		k := n.Add(1)
		if k > 1 && r.Header.Get("If-None-Match") != "" {
			w.Header().Set("ETag", `"other"`)
			w.WriteHeader(304)
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, k))
		fmt.Fprintf(w, "v%d", k)
	})
	e.want(e.get("/r/1"), 200, "v1", "fill")
	time.Sleep(2200 * time.Millisecond)
	r := e.get("/r/1")
	if r.status != 200 || r.body == "v1" {
		t.Errorf("after a 304 naming another etag: %s, want a fresh unconditional answer", r)
	}
}

// ---------------------------------------------------------------------
// Date, Age, MaxTTL

// A Date in the future must not make an entry live longer than its
// max-age: age is max(0, now - Date) at reception, plus resident time.
func TestReviewStdDateInFuture(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", httpDate(time.Now().Add(time.Hour)))
		w.Header().Set("Cache-Control", "max-age=2")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	e.want(e.get("/r/1"), 200, "n=1", "fill")
	time.Sleep(3500 * time.Millisecond)
	r := e.get("/r/1")
	e.want(r, 200, "n=2", "after max-age=2 has passed with a Date an hour ahead")
}

func TestReviewStdExpiresWithDateInFuture(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		d := time.Now().Add(time.Hour)
		w.Header().Set("Date", httpDate(d))
		w.Header().Set("Expires", httpDate(d.Add(2*time.Second)))
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	e.want(e.get("/r/1"), 200, "n=1", "fill")
	time.Sleep(3500 * time.Millisecond)
	e.want(e.get("/r/1"), 200, "n=2", "after Expires - Date = 2s, Date an hour ahead")
}

// A Date in the past counts as age.
func TestReviewStdDateInPast(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", httpDate(time.Now().Add(-57*time.Second)))
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	e.want(e.get("/r/1"), 200, "n=1", "fill")
	time.Sleep(4500 * time.Millisecond)
	e.want(e.get("/r/1"), 200, "n=2", "60 s after Date")
}

// The origin's Age counts; a huge or overflowing Age is not storable and
// an invalid one does not crash or extend anything.
func TestReviewStdAge(t *testing.T) {
	t.Parallel()
	for _, age := range []string{"57", "99999999999999999999999", "1e3", "-5", "5, 57"} {
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Age", age)
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "n=%d", e.calls.Load())
		})
		r := e.get("/r/1")
		e.want(r, 200, "n=1", "fill, Age "+age)
		if a := r.header.Get("Age"); age == "57" && a != "57" && a != "58" {
			t.Errorf("Age %s: the first client got Age %q", age, a)
		}
	}
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Age", "57")
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	e.get("/r/1")
	time.Sleep(4 * time.Second)
	e.want(e.get("/r/1"), 200, "n=2", "Age 57 max-age=60, 4 s later")
	o := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Age", "99999999999999999999999")
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	o.get("/r/1")
	o.want(o.get("/r/1"), 200, "n=2", "an overflowing Age means stale (RFC 9111 1.2.2)")
}

// MaxTTL caps every lifetime the origin sets: max-age, s-maxage, Expires,
// CDN-Cache-Control, heuristics, and the stale windows.
func TestReviewStdMaxTTLCaps(t *testing.T) {
	t.Parallel()
	old := httpDate(time.Now().Add(-10 * 365 * 24 * time.Hour))
	cases := map[string]func(h http.Header){
		"max-age":  func(h http.Header) { h.Set("Cache-Control", "max-age=3600") },
		"s-maxage": func(h http.Header) { h.Set("Cache-Control", "s-maxage=99999999999") },
		"Expires":  func(h http.Header) { h.Set("Expires", httpDate(time.Now().Add(100*365*24*time.Hour))) },
		"Expires-old-Date": func(h http.Header) {
			h.Set("Date", old)
			h.Set("Expires", httpDate(time.Now().Add(100*365*24*time.Hour)))
		},
		"CDN-Cache-Control": func(h http.Header) { h.Set("CDN-Cache-Control", "max-age=3600") },
		"Surrogate-Control": func(h http.Header) { h.Set("Surrogate-Control", "max-age=3600") },
		"heuristic":         func(h http.Header) { h.Set("Last-Modified", old) },
		"public-heuristic":  func(h http.Header) { h.Set("Cache-Control", "public"); h.Set("Last-Modified", old) },
		"swr":               func(h http.Header) { h.Set("Cache-Control", "max-age=1, stale-while-revalidate=99999999") },
		"sie":               func(h http.Header) { h.Set("Cache-Control", "max-age=1, stale-if-error=99999999") },
	}
	for name, set := range cases {
		p := std()
		p.MaxTTL = 2 * time.Second
		var fail atomic.Bool
		e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			if fail.Load() {
				w.WriteHeader(503)
				fmt.Fprint(w, "down")
				return
			}
			set(w.Header())
			fmt.Fprintf(w, "n=%d", e.calls.Load())
		})
		name := name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e.t = t
			e.want(e.get("/r/1"), 200, "n=1", "fill")
			time.Sleep(4500 * time.Millisecond)
			if name == "sie" {
				fail.Store(true)
				e.want(e.get("/r/1"), 503, "down", "stale-if-error past MaxTTL")
				return
			}
			r := e.get("/r/1")
			if name == "swr" {
				if r.body == "n=1" {
					t.Errorf("stale-while-revalidate past MaxTTL: got %s", r)
				}
				return
			}
			e.want(r, 200, "n=2", "past MaxTTL 2s")
		})
	}
}

// ---------------------------------------------------------------------
// Stale: never past must-revalidate / proxy-revalidate / s-maxage

func TestReviewStdNoStalePastRevalidate(t *testing.T) {
	t.Parallel()
	for _, cc := range []string{
		"max-age=1, must-revalidate, stale-if-error=60",
		"max-age=1, proxy-revalidate, stale-if-error=60",
		"s-maxage=1, stale-if-error=60",
		"max-age=1, must-revalidate, stale-while-revalidate=60",
		"s-maxage=1, stale-while-revalidate=60",
		"no-cache, stale-if-error=60, max-age=60",
	} {
		var fail atomic.Bool
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			if fail.Load() {
				w.WriteHeader(500)
				fmt.Fprint(w, "origin error")
				return
			}
			w.Header().Set("Cache-Control", cc)
			w.Header().Set("ETag", `"x"`)
			fmt.Fprintf(w, "n=%d", e.calls.Load())
		})
		cc := cc
		t.Run(cc, func(t *testing.T) {
			t.Parallel()
			e.t = t
			e.want(e.get("/r/1"), 200, "n=1", "fill")
			time.Sleep(2200 * time.Millisecond)
			if strings.Contains(cc, "stale-while-revalidate") {
				r := e.get("/r/1")
				if r.body == "n=1" {
					t.Errorf("%s: stale served while revalidating: %s", cc, r)
				}
				return
			}
			fail.Store(true)
			r := e.get("/r/1")
			if r.body == "n=1" {
				t.Errorf("%s: stale served on error: %s", cc, r)
			}
		})
	}
}

// The response's own stale-if-error is honoured (positive control), and
// a request's max-stale is not.
func TestReviewStdStaleIfErrorAndMaxStale(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	p := std()
	p.HonorRequestCacheControl = true
	e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	e.get("/r/1")
	time.Sleep(2200 * time.Millisecond)
	e.want(e.get("/r/1", "Cache-Control", "max-stale=3600"), 200, "n=2", "max-stale is not honoured")
	time.Sleep(2200 * time.Millisecond)
	fail.Store(true)
	e.want(e.get("/r/1"), 200, "n=2", "stale-if-error")
}

// ---------------------------------------------------------------------
// What is stored: directives, field names, targeted fields

func TestReviewStdNotStored(t *testing.T) {
	t.Parallel()
	cases := map[string]func(h http.Header){
		"two-lines-private":   func(h http.Header) { h.Add("Cache-Control", "max-age=60"); h.Add("Cache-Control", "private") },
		"two-lines-no-store":  func(h http.Header) { h.Add("Cache-Control", "public, max-age=60"); h.Add("Cache-Control", "no-store") },
		"lowercase-name":      func(h http.Header) { h.Set("Cache-Control", "max-age=60"); h["cache-control"] = []string{"no-store"} },
		"uppercase-directive": func(h http.Header) { h.Set("Cache-Control", "max-age=60, PRIVATE") },
		"no-space":            func(h http.Header) { h.Set("Cache-Control", "max-age=60,no-store") },
		"cdn-lowercase-name": func(h http.Header) {
			h.Set("Cache-Control", "max-age=60")
			h["cdn-cache-control"] = []string{"no-store"}
		},
		"cdn-invalid-sf-upper": func(h http.Header) { h.Set("Cache-Control", "private"); h.Set("CDN-Cache-Control", "Max-Age=60") },
		"cdn-invalid-sf-str":   func(h http.Header) { h.Set("Cache-Control", "private"); h.Set("CDN-Cache-Control", `max-age="60"`) },
		"cdn-private":          func(h http.Header) { h.Set("Cache-Control", "max-age=60"); h.Set("CDN-Cache-Control", "private") },
		"surrogate-no-store":   func(h http.Header) { h.Set("Cache-Control", "max-age=60"); h.Set("Surrogate-Control", "no-store") },
		"private-unquoted":     func(h http.Header) { h.Set("Cache-Control", "max-age=60, private") },
		"vary-star-second":     func(h http.Header) { h.Set("Cache-Control", "max-age=60"); h.Add("Vary", "X-A"); h.Add("Vary", "*") },
		"invalid-expires":      func(h http.Header) { h.Set("Cache-Control", "public"); h.Set("Expires", "0") },
		"invalid-expires-lm": func(h http.Header) {
			h.Set("Expires", "yesterday")
			h.Set("Last-Modified", httpDate(time.Now().Add(-time.Hour*24*30)))
		},
		"two-max-age":   func(h http.Header) { h.Set("Cache-Control", "max-age=60, max-age=30") },
		"s-maxage-zero": func(h http.Header) { h.Set("Cache-Control", "max-age=60, s-maxage=0") },
		"must-understand-418": func(h http.Header) {
			h.Set("Cache-Control", "must-understand, no-store, max-age=60")
			h.Set("X-Status", "418")
		},
		"max-age-garbage": func(h http.Header) {
			h.Set("Cache-Control", "max-age=abc")
			h.Set("Last-Modified", httpDate(time.Now().Add(-time.Hour*24*30)))
		},
		"max-age-negative": func(h http.Header) { h.Set("Cache-Control", "max-age=-1, public") },
		"206": func(h http.Header) {
			h.Set("Cache-Control", "max-age=60")
			h.Set("Content-Range", "bytes 0-1/10")
			h.Set("X-Status", "206")
		},
		"expires-two-lines": func(h http.Header) { h.Add("Expires", httpDate(time.Now().Add(time.Hour))); h.Add("Expires", "0") },
	}
	for name, set := range cases {
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			set(w.Header())
			status := 200
			if s := w.Header().Get("X-Status"); s != "" {
				fmt.Sscan(s, &status)
				w.Header().Del("X-Status")
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, "n=%d u=%s", e.calls.Load(), r.Header.Get("X-User"))
		})
		name := name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e.t = t
			a := e.get("/r/1", "X-User", "alice")
			v := e.get("/r/1")
			if strings.Contains(v.body, "alice") || strings.Contains(v.body, "n=1") {
				t.Errorf("%s: attacker %s, victim %s: want the victim's own response", name, a, v)
			}
		})
	}
}

// Positive controls: what standards mode must store.
func TestReviewStdStored(t *testing.T) {
	t.Parallel()
	cases := map[string]func(h http.Header){
		"max-age":          func(h http.Header) { h.Set("Cache-Control", "max-age=60") },
		"cdn-over-private": func(h http.Header) { h.Set("Cache-Control", "private"); h.Set("CDN-Cache-Control", "max-age=60") },
		"expires":          func(h http.Header) { h.Set("Expires", httpDate(time.Now().Add(time.Hour))) },
		"heuristic":        func(h http.Header) { h.Set("Last-Modified", httpDate(time.Now().Add(-time.Hour*24*30))) },
		"must-understand":  func(h http.Header) { h.Set("Cache-Control", "must-understand, no-store, max-age=60") },
		"302-explicit": func(h http.Header) {
			h.Set("Cache-Control", "max-age=60")
			h.Set("Location", "/x")
			h.Set("X-Status", "302")
		},
		"upper-directive":    func(h http.Header) { h.Set("Cache-Control", "MAX-AGE=60") },
		"private-field-only": func(h http.Header) { h.Set("Cache-Control", `max-age=60, private="X-Secret"`); h.Set("X-Secret", "s") },
	}
	for name, set := range cases {
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			set(w.Header())
			status := 200
			if s := w.Header().Get("X-Status"); s != "" {
				fmt.Sscan(s, &status)
				w.Header().Del("X-Status")
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, "n=%d", e.calls.Load())
		})
		name := name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e.t = t
			e.get("/r/1")
			if v := e.get("/r/1"); v.body != "n=1" {
				t.Errorf("%s: second request %s, want a hit", name, v)
			}
		})
	}
}

// private="X" and no-cache="X" strip those fields from what is stored,
// whatever the case of the names and the form of the list.
func TestReviewStdQualifiedPrivateStripped(t *testing.T) {
	t.Parallel()
	for _, cc := range []string{
		`max-age=60, private="X-User"`,
		`max-age=60, private="x-user"`,
		`max-age=60, no-cache="X-Other, X-User"`,
		`max-age=60, private=X-User`,
		`max-age=60, private="X-Other", private="X-User"`,
	} {
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", cc)
			w.Header().Set("X-User", r.Header.Get("X-Who"))
			w.Header().Set("X-Other", "o")
			fmt.Fprint(w, "page")
		})
		e.get("/r/1", "X-Who", "alice")
		v := e.get("/r/1", "X-Who", "bob")
		if u := v.header.Get("X-User"); u == "alice" {
			t.Errorf("%s: victim got X-User: alice (%s)", cc, v)
		}
	}
}

// ---------------------------------------------------------------------
// Requests: HEAD, request directives

// A HEAD miss must not store an empty body for GET.
func TestReviewStdHeadFill(t *testing.T) {
	t.Parallel()
	for _, p := range []policy.Policy{std(), {TTL: time.Minute}} {
		e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			if r.Method == "HEAD" {
				w.Header().Set("Content-Length", "4")
				return
			}
			fmt.Fprint(w, "body")
		})
		e.do("HEAD", "/r/1")
		e.want(e.get("/r/1"), 200, "body", fmt.Sprintf("standards=%v GET after HEAD", p.Standards))
	}
}

// Request directives: no-store and only-if-cached do not leave anything
// for others; with HonorRequestCacheControl off, no-cache and max-age=0
// are ignored.
func TestReviewStdRequestDirectives(t *testing.T) {
	t.Parallel()
	p := std()
	p.HonorRequestCacheControl = true
	e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "n=%d host=%s", e.calls.Load(), r.Header.Get("X-Forwarded-Host"))
	})
	r := e.get("/r/1", "Cache-Control", "only-if-cached")
	if r.status != 504 {
		t.Errorf("only-if-cached on a miss: %s, want 504", r)
	}
	e.get("/r/1", "Cache-Control", "no-store", "X-Forwarded-Host", "evil")
	v := e.get("/r/1")
	if strings.Contains(v.body, "evil") {
		t.Errorf("no-store request stored: %s", v)
	}
	e.want(e.get("/r/1", "Cache-Control", "only-if-cached"), 200, v.body, "only-if-cached on a stored entry")

	q := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "n=%d", e.calls.Load())
	})
	q.get("/r/1")
	for _, cc := range []string{"no-cache", "max-age=0", "min-fresh=1000"} {
		q.want(q.get("/r/1", "Cache-Control", cc), 200, "n=1", "ignored without HonorRequestCacheControl: "+cc)
	}
	q.want(q.get("/r/1", "Pragma", "no-cache"), 200, "n=1", "Pragma: no-cache ignored")
}

// With HonorRequestCacheControl, no-cache revalidates with the stored
// validators and the client gets the full body, not the origin's 304.
func TestReviewStdRequestNoCacheRevalidates(t *testing.T) {
	t.Parallel()
	p := std()
	p.HonorRequestCacheControl = true
	e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(304)
			return
		}
		fmt.Fprint(w, "full body")
	})
	e.want(e.get("/r/1"), 200, "full body", "fill")
	e.want(e.get("/r/1", "Cache-Control", "no-cache"), 200, "full body", "no-cache")
	time.Sleep(1100 * time.Millisecond) // max-age=0 accepts an age of 0
	e.want(e.get("/r/1", "Cache-Control", "max-age=0", "If-None-Match", `"v1"`), 304, "", "max-age=0 with the client's own validator")
	e.want(e.get("/r/1"), 200, "full body", "victim")
	if c := e.calls.Load(); c != 3 {
		t.Errorf("origin calls %d, want 3", c)
	}
}

// A 5xx the origin gives a lifetime is stored (documented); one without
// is not, so an attacker's bad request cannot poison the URL.
func TestReviewStdErrorPoisoning(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Oversize") != "" {
			http.Error(w, "bad header", 400)
			return
		}
		if r.Header.Get("X-Method-Override") != "" {
			w.Header().Set("Allow", "GET")
			w.WriteHeader(405)
			return
		}
		w.Header().Set("Last-Modified", httpDate(time.Now().Add(-24*time.Hour)))
		fmt.Fprint(w, "ok")
	})
	e.get("/r/1", "X-Oversize", "1")
	e.want(e.get("/r/1"), 200, "ok", "victim after a 400")
	e.get("/r/2", "X-Method-Override", "DELETE")
	e.want(e.get("/r/2"), 200, "ok", "victim after a 405 without a lifetime")
}

// An authorized request on a stale entry it may not be served (no public,
// s-maxage or must-revalidate): the cache revalidates with the entry's
// validators, and the origin's 304 must become a whole answer for the
// client, not an empty 200.
func TestReviewStdAuthOnStaleEntryGetsBody(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "page")
	})
	e.want(e.get("/r/1"), 200, "page", "anonymous fill")
	time.Sleep(2200 * time.Millisecond)
	e.want(e.get("/r/1", "Authorization", "alice"), 200, "page", "alice on the stale entry")
	e.want(e.get("/r/1", "Authorization", "alice", "Range", "bytes=0-1"), 200, "page", "alice, a range, on the revalidated entry")
	e.want(e.get("/r/1"), 200, "page", "anonymous after")
}

// A 304 that revalidates an entry is held to MaxTTL and to its Date like
// a 200.
func TestReviewStdRevalidation304Lifetime(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]func(h http.Header){
		"max-age past MaxTTL": func(h http.Header) { h.Set("Cache-Control", "max-age=3600") },
		"Date in future": func(h http.Header) {
			h.Set("Cache-Control", "max-age=2")
			h.Set("Date", httpDate(time.Now().Add(time.Hour)))
		},
		"Expires": func(h http.Header) { h.Del("Cache-Control"); h.Set("Expires", httpDate(time.Now().Add(time.Hour))) },
	} {
		p := std()
		p.MaxTTL = 3 * time.Second
		e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=1")
			w.Header().Set("ETag", `"v1"`)
			if r.Header.Get("If-None-Match") == `"v1"` {
				set(w.Header())
				w.WriteHeader(http.StatusNotModified)
				return
			}
			fmt.Fprint(w, "page")
		})
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e.t = t
			e.get("/r/1")
			time.Sleep(1500 * time.Millisecond)
			e.want(e.get("/r/1"), 200, "page", "revalidated")
			c := e.calls.Load()
			time.Sleep(4000 * time.Millisecond)
			e.want(e.get("/r/1"), 200, "page", "later")
			if e.calls.Load() == c {
				t.Errorf("%s: entry revalidated by a 304 still fresh 4 s later (MaxTTL 3s, or max-age=2)", name)
			}
		})
	}
}

// Each variant is revalidated with its own validator, and a 304 updates
// that variant only.
func TestReviewStdVaryRevalidation(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		lang := r.Header.Get("Accept-Language")
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("Vary", "Accept-Language")
		if inm := r.Header.Get("If-None-Match"); inm != "" {
			// an origin that answers 304 to any validator it knows
			w.Header().Set("ETag", inm)
			w.WriteHeader(304)
			return
		}
		w.Header().Set("ETag", `"`+lang+`"`)
		fmt.Fprintf(w, "lang=%s", lang)
	})
	e.get("/r/1", "Accept-Language", "fr")
	e.get("/r/1", "Accept-Language", "en")
	time.Sleep(1500 * time.Millisecond)
	e.want(e.get("/r/1", "Accept-Language", "en"), 200, "lang=en", "en revalidated")
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "fr revalidated")
	e.want(e.get("/r/1", "Accept-Language", "de"), 200, "lang=de", "de")
	e.want(e.get("/r/1", "Accept-Language", "en", "If-None-Match", `"fr"`), 200, "lang=en", "en with fr's etag")
}

// HEAD fills and Vary.
func TestReviewStdVaryHead(t *testing.T) {
	t.Parallel()
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("X-Lang", r.Header.Get("Accept-Language"))
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e.do("HEAD", "/r/1", "Accept-Language", "fr")
	e.want(e.get("/r/1", "Accept-Language", "en"), 200, "lang=en", "GET en after HEAD fr")
	if r := e.do("HEAD", "/r/1", "Accept-Language", "de"); r.header.Get("X-Lang") != "de" {
		t.Errorf("HEAD de: X-Lang %q", r.header.Get("X-Lang"))
	}
}

// The default mode, for the same inputs, behaves as before: a response
// varying on an unkeyed header is not stored, Authorization bypasses, a
// Range gets the whole 200, a Date an hour ahead changes nothing.
func TestReviewStdDefaultModeUnchanged(t *testing.T) {
	t.Parallel()
	p := policy.Policy{TTL: time.Minute}
	e := rsSetup(t, p, func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("vary") != "" {
			w.Header().Set("Vary", "Accept-Language")
		}
		if r.URL.Query().Get("future") != "" {
			w.Header().Set("Date", httpDate(time.Now().Add(time.Hour)))
			w.Header().Set("Cache-Control", "max-age=1")
		}
		fmt.Fprintf(w, "lang=%s user=%s", r.Header.Get("Accept-Language"), r.Header.Get("Authorization"))
	})
	e.get("/r/1?vary=1", "Accept-Language", "fr")
	e.want(e.get("/r/1?vary=1", "Accept-Language", "en"), 200, "lang=en user=", "default mode Vary")
	e.get("/r/2", "Authorization", "alice")
	e.want(e.get("/r/2"), 200, "lang= user=", "default mode Authorization")
	r := e.get("/r/2", "Authorization", "alice")
	if !strings.Contains(r.header.Get("Cache-Status"), "bypass") {
		t.Errorf("default mode Authorization: %s, want a bypass", r)
	}
	e.want(e.get("/r/2", "Range", "bytes=0-1"), 200, "lang= user=", "default mode Range")
	e.get("/r/3?future=1")
	time.Sleep(1500 * time.Millisecond)
	if r := e.get("/r/3?future=1"); !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Errorf("default mode: the origin's Date/max-age changed the policy TTL: %s", r)
	}
	if r := e.get("/r/2"); r.header.Get("Age") == "" {
		t.Logf("default mode hit without Age: %s", r)
	}
}

// An authorized request on a stale entry it may not be served, within the
// entry's stale-while-revalidate or stale-if-error window: it gets a
// whole answer of its own (from the origin), never an empty one.
func TestReviewStdAuthOnStaleWindows(t *testing.T) {
	t.Parallel()
	for _, cc := range []string{"max-age=1, stale-while-revalidate=60", "max-age=1, stale-if-error=60"} {
		var fail atomic.Bool
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			if fail.Load() {
				w.WriteHeader(503)
				fmt.Fprint(w, "down")
				return
			}
			w.Header().Set("Cache-Control", cc)
			fmt.Fprintf(w, "user=%s", r.Header.Get("Authorization"))
		})
		t.Run(cc, func(t *testing.T) {
			t.Parallel()
			e.t = t
			e.get("/r/1")
			time.Sleep(2200 * time.Millisecond)
			if strings.Contains(cc, "stale-if-error") {
				fail.Store(true)
				r := e.get("/r/1", "Authorization", "alice")
				if !(r.status == 503 && r.body == "down") {
					t.Errorf("alice, origin down: got %s, want the origin's 503 (the anonymous entry is not for her)", r)
				}
				return
			}
			e.want(e.get("/r/1", "Authorization", "alice"), 200, "user=alice", "alice in the swr window")
		})
	}
}

// Vary in odd but valid forms: several field lines, a lowercase field
// name, a lowercase member, empty members, Accept-Encoding next to another.
func TestReviewStdVaryForms(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]func(h http.Header){
		"two-lines":          func(h http.Header) { h.Add("Vary", "Accept-Encoding"); h.Add("Vary", "X-A") },
		"lowercase-name":     func(h http.Header) { h["vary"] = []string{"X-A"} },
		"lowercase-member":   func(h http.Header) { h.Set("Vary", "x-a") },
		"empty-members":      func(h http.Header) { h.Set("Vary", " , X-A ,") },
		"with-encoding":      func(h http.Header) { h.Set("Vary", "Accept-Encoding, X-A") },
		"cdn-cc-and-vary":    func(h http.Header) { h.Set("CDN-Cache-Control", "max-age=60"); h.Set("Vary", "X-A") },
		"mixed-lower-canon":  func(h http.Header) { h.Set("Vary", "Accept-Encoding"); h["vary"] = []string{"X-A"} },
		"tab-separated-list": func(h http.Header) { h.Set("Vary", "Accept-Encoding,\tX-A") },
	} {
		e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			set(w.Header())
			fmt.Fprintf(w, "a=%s", r.Header.Get("X-A"))
		})
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e.t = t
			e.want(e.get("/r/1", "X-A", "evil"), 200, "a=evil", "attacker")
			e.want(e.get("/r/1", "X-A", "good"), 200, "a=good", "victim")
			e.want(e.get("/r/1"), 200, "a=", "victim without X-A")
		})
	}
}

// A purge of a URL removes its secondary-key variants too, and a fill that
// races the purge does not bring a variant back.
func TestReviewStdPurgeVariants(t *testing.T) {
	t.Parallel()
	var version atomic.Int32
	version.Store(1)
	e := rsSetup(t, std(), func(e *rsEnv, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "v%d lang=%s", version.Load(), r.Header.Get("Accept-Language"))
	})
	e.get("/r/1", "Accept-Language", "fr")
	e.get("/r/1", "Accept-Language", "en")
	version.Store(2)
	if _, err := e.cache.PurgeURL(context.Background(), e.srv.URL+"/r/1"); err != nil {
		t.Fatal(err)
	}
	e.want(e.get("/r/1", "Accept-Language", "fr"), 200, "v2 lang=fr", "fr after purge")
	e.want(e.get("/r/1", "Accept-Language", "en"), 200, "v2 lang=en", "en after purge")
	version.Store(3)
	if _, err := e.cache.PurgeBucket(context.Background(), rsPattern, map[string]string{"id": "1"}); err != nil {
		t.Fatal(err)
	}
	e.want(e.get("/r/1", "Accept-Language", "en"), 200, "v3 lang=en", "en after bucket purge")
}

// Two instances on one store: a request of another instance waiting on
// the fill lock must read its own variant, not the filler's, and an
// anonymous request must not take an authorized fill's response.
func TestReviewStdVaryAcrossInstances(t *testing.T) {
	t.Parallel()
	store, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/r/2" {
			fmt.Fprintf(w, "user=%s", r.Header.Get("Authorization"))
			return
		}
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	a := &rsEnv{t: t, store: store, cache: rsNewCache(t, store, httpcache.WithLocker(store))}
	a.srv = rsServe(t, a.cache, std(), h)
	b := &rsEnv{t: t, store: store, cache: rsNewCache(t, store, httpcache.WithLocker(store))}
	b.srv = rsServe(t, b.cache, std(), h)
	var wg sync.WaitGroup
	var en, anon rsResp
	wg.Add(2)
	go func() { defer wg.Done(); a.get("/r/1", "Accept-Language", "fr") }()
	go func() { defer wg.Done(); a.get("/r/2", "Authorization", "alice") }()
	time.Sleep(80 * time.Millisecond)
	wg.Add(2)
	go func() { defer wg.Done(); en = b.get("/r/1", "Accept-Language", "en") }()
	go func() { defer wg.Done(); anon = b.get("/r/2") }()
	wg.Wait()
	b.want(en, 200, "lang=en", "instance B, en, while A fills fr")
	b.want(anon, 200, "user=", "instance B, anonymous, while A fills alice's")
	b.want(b.get("/r/1", "Accept-Language", "fr"), 200, "lang=fr", "B reads fr")
	a.want(a.get("/r/1", "Accept-Language", "en"), 200, "lang=en", "A reads en")
}
