package httpcache_test

// Attacks on the cache from an outsider's point of view: only the public
// API, real net/http servers, memstore. Each test is an
// origin that reflects some input, an attacker's request, then a victim's
// request without that input; a test passes when the victim gets its own
// response (the cache is safe) and fails when it gets the attacker's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// ---------------------------------------------------------------------
// Helpers

func outsiderCache(t testing.TB, opts ...httpcache.Option) *httpcache.Cache {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := httpcache.New(store, append([]httpcache.Option{httpcache.WithLogger(quiet)}, opts...)...)
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

// outsiderMux serves pattern through the cache to h on a ServeMux.
func outsiderMux(t testing.TB, c *httpcache.Cache, pattern string, p policy.Policy, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	m := http.NewServeMux()
	m.Handle(pattern, c.Handler(pattern, p, h))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return srv
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (r resp) cs() string     { return r.header.Get("Cache-Status") }
func (r resp) hit() bool      { return strings.Contains(r.cs(), "; hit") }
func (r resp) String() string { return fmt.Sprintf("%d %q (%s)", r.status, r.body, r.cs()) }

// fetch sends a request with a client that does not add or undo any
// content coding; header is name, value pairs ("Host" sets the Host).
func fetch(t testing.TB, srv *httptest.Server, method, target string, header ...string) resp {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+target, nil)
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
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	if srv.TLS != nil {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.DisableCompression = true
		client = &http.Client{Transport: tr}
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	defer client.CloseIdleConnections()
	r, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: string(b)}
}

// raw sends the bytes of one request on a new connection and reads the
// response (HEAD responses have no body).
func raw(t testing.TB, srv *httptest.Server, request string) resp {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(request, " ")
	r, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: string(b)}
}

func hostOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// ---------------------------------------------------------------------
// Findings

// An absolute-form request line ("GET scheme://user@host/path HTTP/1.1")
// is keyed like "GET /path" with that Host: the key takes the path of the
// request target and r.Host, and drops the scheme and the userinfo. The
// handler sees them all, in r.RequestURI and r.URL (String, Scheme,
// User). A handler that reflects the request URI (a self link, a login
// "next" parameter, a form action) stores the attacker's scheme and
// userinfo for every client of the path.
func TestOutsiderAbsoluteFormTarget(t *testing.T) {
	reflectors := map[string]http.HandlerFunc{
		"RequestURI": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<a href="%s">self</a>`, r.RequestURI)
		},
		"URL.String": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<form action="%s"></form>`, r.URL.String())
		},
	}
	for name, h := range reflectors {
		for _, target := range []string{"javascript://%s/page", "http://evil.example@%s/page", "https://%s/page"} {
			t.Run(name+" "+strings.Split(target, ":")[0], func(t *testing.T) {
				c := outsiderCache(t)
				srv := outsiderMux(t, c, "GET /page", policy.Policy{}, h)
				host := hostOf(srv)
				// The attacker: an absolute-form target whose authority is
				// the service's own Host.
				attack := raw(t, srv, "GET "+fmt.Sprintf(target, host)+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
				t.Logf("attacker: %v", attack)
				// The victim: an ordinary origin-form request.
				victim := fetch(t, srv, "GET", "/page")
				if strings.Contains(victim.body, "javascript") || strings.Contains(victim.body, "evil") || strings.Contains(victim.body, "://") {
					t.Fatalf("victim got the attacker's response: %v", victim)
				}
			})
		}
	}
}

// A bucket that reached MaxFields refuses new variants "until some
// expire" (README, policy.MaxFields). Dead fields are only removed when
// somebody reads them, and every store of a variant the bucket already
// holds grows the bucket's lifetime: one flood of junk query strings, and
// a single real variant kept alive by traffic, keep the bucket full for
// ever. No new real variant is ever stored again, although every junk
// variant expired long ago.
func TestOutsiderFullBucketDrainsAfterJunkExpires(t *testing.T) {
	c := outsiderCache(t)
	// Refresh ahead keeps a hot entry fresh: its refreshes store it again
	// before it expires, which grows the bucket's lifetime.
	p := policy.Policy{TTL: time.Second, RefreshAhead: 0.5, MaxFields: 5}
	srv := outsiderMux(t, c, "GET /list", p, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "list %s", r.URL.Query().Encode())
	})
	fetch(t, srv, "GET", "/list?page=1") // real traffic
	for i := range 4 {                   // the attacker fills the bucket, once
		fetch(t, srv, "GET", fmt.Sprintf("/list?junk=%d", i))
	}
	// The real variant stays hot; every junk variant expires after 1s.
	for range 10 {
		time.Sleep(250 * time.Millisecond)
		fetch(t, srv, "GET", "/list?page=1")
	}
	// A new real variant, 1.5s after the junk expired.
	fetch(t, srv, "GET", "/list?page=2")
	if got := fetch(t, srv, "GET", "/list?page=2"); !got.hit() {
		t.Fatalf("page=2 is not cached although every junk variant expired 1.5s ago: %v; VariantsRefused=%d",
			got, c.Stats().VariantsRefused)
	}
}

// A handler that does not set Content-Type gets one from net/http's
// sniffing (text/plain; charset=utf-8 for text). The cache stores the
// header as the handler set it (without Content-Type) and gzips the body;
// a hit for a gzip client carries Content-Encoding, which turns net/http's
// sniffing off, so it goes out without any Content-Type (and without the
// charset) where the origin's response had one: the browser sniffs
// instead.
func TestOutsiderSniffedContentTypeOnGzipHits(t *testing.T) {
	c := outsiderCache(t)
	body := strings.Repeat("hello <b>world</b> ", 40) // compressible, > 192 bytes
	srv := outsiderMux(t, c, "GET /text", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})
	miss := fetch(t, srv, "GET", "/text", "Accept-Encoding", "gzip")
	hit := fetch(t, srv, "GET", "/text", "Accept-Encoding", "gzip")
	if !hit.hit() {
		t.Fatalf("not a hit: %v", hit)
	}
	if miss.header.Get("Content-Type") != hit.header.Get("Content-Type") {
		t.Fatalf("Content-Type on the miss %q, on the gzip hit %q (Content-Encoding %q)",
			miss.header.Get("Content-Type"), hit.header.Get("Content-Type"), hit.header.Get("Content-Encoding"))
	}
}

// A fill runs the origin on a request detached from its client's
// cancellation, bounded only by FillTimeout (30s by default), even when
// nobody waits for it. Without the cache the handler's context ends when
// its client goes away; with it, each request an attacker sends and drops
// at once keeps an origin call (and a server goroutine, and a response
// buffer) busy for up to 30 seconds: cheap requests, expensive origin
// work that piles up.
func TestOutsiderOriginCanceledWhenOnlyClientLeaves(t *testing.T) {
	c := outsiderCache(t)
	var running atomic.Int64
	srv := outsiderMux(t, c, "GET /slow/{id}", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		select {
		case <-r.Context().Done():
			return
		case <-time.After(4 * time.Second): // a slow query that honours cancellation
		}
		io.WriteString(w, "done")
	})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/slow/%d", srv.URL, i), nil)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			if r, err := (&http.Client{Transport: tr}).Do(req); err == nil {
				r.Body.Close()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(1500 * time.Millisecond)
	for running.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := running.Load(); r > 0 {
		t.Fatalf("%d of %d origin calls still running 1.5s after their (only) clients went away", r, n)
	}
}

// The admin inspect view (and Cache.Inspect) of an https URL builds a
// request without TLS, so it computes the field of the http variant: an
// entry cached for https clients is reported as not found, and what it
// reports is another variant's entry.
func TestOutsiderAdminInspectHTTPS(t *testing.T) {
	c := outsiderCache(t)
	m := http.NewServeMux()
	m.Handle("GET /p", c.Handler("GET /p", policy.Policy{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	})))
	srv := httptest.NewTLSServer(m)
	t.Cleanup(srv.Close)
	fetch(t, srv, "GET", "/p")
	if got := fetch(t, srv, "GET", "/p"); !got.hit() {
		t.Fatalf("not cached: %v", got)
	}
	admin, err := c.AdminHandler(httpcache.WithAdminToken("ops", "0123456789abcdef-token"))
	if err != nil {
		t.Fatal(err)
	}
	asrv := httptest.NewServer(admin)
	t.Cleanup(asrv.Close)
	got := fetch(t, asrv, "GET", "/admin/inspect?url="+url.QueryEscape(srv.URL+"/p"), "Authorization", "Bearer 0123456789abcdef-token")
	var in httpcache.Inspection
	if err := json.Unmarshal([]byte(got.body), &in); err != nil {
		t.Fatalf("inspect: %v %s", err, got.body)
	}
	if !in.Found {
		t.Fatalf("inspect of the cached https URL: %s", got.body)
	}
}

// The query is keyed as net/url.URL.Query decodes it, so "?q=<x>" and
// "?q=%3Cx%3E" share an entry, while the handler sees them differently in
// r.RequestURI, r.URL.RawQuery, r.URL.String() and r.URL.RequestURI().
// Browsers always percent-encode '<', '>' and '"' in a query, so a
// handler that echoes its raw request URI unescaped cannot be exploited
// without the cache; with it, the attacker sends the raw bytes once and
// every browser asking for the encoded URL gets them.
func TestOutsiderRawQueryNormalisation(t *testing.T) {
	reflectors := map[string]func(r *http.Request) string{
		"RequestURI":       func(r *http.Request) string { return r.RequestURI },
		"URL.RawQuery":     func(r *http.Request) string { return r.URL.RawQuery },
		"URL.RequestURI()": func(r *http.Request) string { return r.URL.RequestURI() },
	}
	for name, reflect := range reflectors {
		t.Run(name, func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /search", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprintf(w, `<a href='%s'>this page</a>`, reflect(r))
			})
			attack := raw(t, srv, "GET /search?q=<script>alert(1)</script> HTTP/1.1\r\nHost: "+hostOf(srv)+"\r\nConnection: close\r\n\r\n")
			t.Logf("attacker: %v", attack)
			victim := fetch(t, srv, "GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
			if strings.Contains(victim.body, "<script>") {
				t.Fatalf("victim (a browser, which encodes '<') got the raw script: %v", victim)
			}
		})
	}
}

// ---------------------------------------------------------------------
// Probes that held (regression tests: they pass while the cache is safe)

// Query strings that net/url parses differently, or rejects, never share
// an entry with the clean query the handler would see differently.
func TestOutsiderQueryParsing(t *testing.T) {
	cases := []struct{ attack, victim string }{
		{"/q?a=1&a=2", "/q?a=1"},
		{"/q?a=2&a=1", "/q?a=1&a=2"},
		{"/q?a=1+2", "/q?a=1"},
		{"/q?a=1%2B2", "/q?a=1+2"},
		{"/q?a=1;b=2", "/q?a=1"},
		{"/q?a=1&b=%zz", "/q?a=1"},
		{"/q?a=1&" + strings.Repeat("x&", 10_001), "/q?a=1"},
		{"/q?a%00=1", "/q?a=1"},
		{"/q?a=1&&&", "/q?a=1&b"},
		{"/q?A=1", "/q?a=1"},
		{"/q?a", "/q?a=x"},
	}
	for _, tc := range cases {
		t.Run(tc.attack[:min(len(tc.attack), 24)], func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /q", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil {
					http.Error(w, "bad query", http.StatusNotFound)
					return
				}
				fmt.Fprintf(w, "%v", map[string][]string(r.Form))
			})
			fetch(t, srv, "GET", tc.attack)
			fetch(t, srv, "GET", tc.attack)
			direct := httptest.NewRequest("GET", tc.victim, nil)
			direct.ParseForm()
			want := fmt.Sprintf("%v", map[string][]string(direct.Form))
			if got := fetch(t, srv, "GET", tc.victim); got.status != 200 || got.body != want {
				t.Fatalf("victim %s got %v, want %q", tc.victim, got, want)
			}
		})
	}
}

// Paths a router normalises (or not) never share an entry with a path
// the handler sees differently.
func TestOutsiderPathNormalisation(t *testing.T) {
	reflect := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s raw=%s id=%s uri=%s", r.URL.Path, r.URL.RawPath, r.PathValue("id"), r.RequestURI)
	}
	type route struct {
		name string
		srv  func(t *testing.T, c *httpcache.Cache) *httptest.Server
	}
	routes := []route{
		{"servemux", func(t *testing.T, c *httpcache.Cache) *httptest.Server {
			return outsiderMux(t, c, "GET /items/{id}", policy.Policy{}, reflect)
		}},
		{"servemux rest", func(t *testing.T, c *httpcache.Cache) *httptest.Server {
			return outsiderMux(t, c, "GET /items/{id...}", policy.Policy{}, reflect)
		}},
		{"chi", func(t *testing.T, c *httpcache.Cache) *httptest.Server {
			r := chi.NewRouter()
			r.With(c.MustRoute("/items/{id}", policy.Policy{})).Get("/items/{id}", reflect)
			srv := httptest.NewServer(r)
			t.Cleanup(srv.Close)
			return srv
		}},
		{"chi wildcard", func(t *testing.T, c *httpcache.Cache) *httptest.Server {
			r := chi.NewRouter()
			r.With(c.MustRoute("/items/*", policy.Policy{})).Get("/items/*", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "star=%s uri=%s", chi.URLParam(r, "*"), r.RequestURI)
			})
			srv := httptest.NewServer(r)
			t.Cleanup(srv.Close)
			return srv
		}},
	}
	pairs := [][2]string{
		{"/items/a%2Fb", "/items/a/b"},
		{"/items/a%2fb", "/items/a%2Fb"},
		{"/items/%61", "/items/a"},
		{"/items/a/", "/items/a"},
		{"/items//a", "/items/a"},
		{"/items/./a", "/items/a"},
		{"/items/a;x=1", "/items/a"},
		{"/items/a%3Bx=1", "/items/a;x=1"},
		{"/items/A", "/items/a"},
	}
	for _, rt := range routes {
		for _, pair := range pairs {
			t.Run(rt.name+" "+pair[0], func(t *testing.T) {
				c := outsiderCache(t)
				srv := rt.srv(t, c)
				raw(t, srv, "GET "+pair[0]+" HTTP/1.1\r\nHost: "+hostOf(srv)+"\r\nConnection: close\r\n\r\n")
				victim := raw(t, srv, "GET "+pair[1]+" HTTP/1.1\r\nHost: "+hostOf(srv)+"\r\nConnection: close\r\n\r\n")
				if victim.status == http.StatusNotFound && victim.cs() == "" {
					return // not routed to the cached route at all
				}
				if !strings.Contains(victim.body, "uri="+pair[1]) {
					t.Fatalf("victim %s got %v", pair[1], victim)
				}
			})
		}
	}
}

// The Host is keyed as sent: case, port, trailing dot, none (HTTP/1.0).
func TestOutsiderHostVariants(t *testing.T) {
	c := outsiderCache(t)
	srv := outsiderMux(t, c, "GET /h", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s", r.Host)
	})
	hosts := []string{"svc.example", "SVC.example", "svc.example.", "svc.example:80", "svc.example:0080", "evil.example"}
	for _, h := range hosts {
		raw(t, srv, "GET /h HTTP/1.1\r\nHost: "+h+"\r\nConnection: close\r\n\r\n")
	}
	raw(t, srv, "GET /h HTTP/1.0\r\n\r\n")
	for _, h := range hosts {
		if got := raw(t, srv, "GET /h HTTP/1.1\r\nHost: "+h+"\r\nConnection: close\r\n\r\n"); got.body != "host="+h {
			t.Errorf("Host %q got %v", h, got)
		}
	}
	if got := raw(t, srv, "GET /h HTTP/1.0\r\n\r\n"); got.body != "host=" {
		t.Errorf("HTTP/1.0 without Host got %v", got)
	}
	if got := raw(t, srv, "GET http://svc.example/h HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"); got.body != "host=svc.example" {
		t.Errorf("absolute form got %v", got)
	}
}

// Responses that must not be stored, in every spelling.
func TestOutsiderNeverStored(t *testing.T) {
	tests := map[string]func(w http.ResponseWriter, r *http.Request, user string){
		"Set-Cookie":     func(w http.ResponseWriter, r *http.Request, u string) { w.Header().Set("Set-Cookie", "s="+u) },
		"SET-COOKIE raw": func(w http.ResponseWriter, r *http.Request, u string) { w.Header()["SET-COOKIE"] = []string{"s=" + u} },
		"set-cookie2":    func(w http.ResponseWriter, r *http.Request, u string) { w.Header()["set-cookie2"] = []string{"s=" + u} },
		"CC PRIVATE":     func(w http.ResponseWriter, r *http.Request, u string) { w.Header().Set("Cache-Control", "PRIVATE") },
		"CC private=x": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Cache-Control", `private="X-User"`)
		},
		"CC no-cache=x": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Cache-Control", `no-cache="Set-Cookie"`)
		},
		"CC two lines": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header()["Cache-Control"] = []string{"public", "no-store"}
		},
		"CC tab": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Cache-Control", "max-age=9,\tprivate")
		},
		"CC quoted comma": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Cache-Control", `x="a, b", no-store`)
		},
		"Vary *": func(w http.ResponseWriter, r *http.Request, u string) { w.Header().Set("Vary", "*") },
		"Vary lower": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header()["vary"] = []string{"accept-encoding", "x-user"}
		},
		"Vary list": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Vary", "Accept-Encoding,X-User")
		},
		"Vary Cookie": func(w http.ResponseWriter, r *http.Request, u string) { w.Header().Set("Vary", "Cookie") },
		"Content-Range": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Content-Range", "bytes 0-3/10")
		},
		"Trailer prefix":    func(w http.ResponseWriter, r *http.Request, u string) { w.Header().Set(http.TrailerPrefix+"X-User", u) },
		"trailer lowercase": func(w http.ResponseWriter, r *http.Request, u string) { w.Header()["trailer"] = []string{"X-User"} },
		"Surrogate no-store": func(w http.ResponseWriter, r *http.Request, u string) {
			w.Header().Set("Surrogate-Control", "no-store")
		},
		"flush": func(w http.ResponseWriter, r *http.Request, u string) {
			io.WriteString(w, "x")
			w.(http.Flusher).Flush()
		},
		"ResponseController flush": func(w http.ResponseWriter, r *http.Request, u string) {
			io.WriteString(w, "x")
			http.NewResponseController(w).Flush()
		},
		"unwrapped write": func(w http.ResponseWriter, r *http.Request, u string) {
			if uw, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
				uw.Unwrap().WriteHeader(200)
			}
		},
		"short body": func(w http.ResponseWriter, r *http.Request, u string) { w.Header().Set("Content-Length", "100000") },
		"206":        func(w http.ResponseWriter, r *http.Request, u string) { w.WriteHeader(http.StatusPartialContent) },
	}
	for name, set := range tests {
		t.Run(name, func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /me", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
				u := r.Header.Get("X-User")
				set(w, r, u)
				fmt.Fprintf(w, "for %s", u)
			})
			fetch(t, srv, "GET", "/me", "X-User", "alice")
			got := fetch(t, srv, "GET", "/me", "X-User", "bob")
			if strings.Contains(got.body, "alice") || strings.Contains(fmt.Sprint(got.header), "alice") {
				t.Fatalf("bob got alice's response: %v %v", got, got.header)
			}
			if s := c.Stats(); s.Stored != 0 {
				t.Errorf("stored %d", s.Stored)
			}
		})
	}
}

// Range and conditional requests of the first client never decide what
// the others get.
func TestOutsiderRangeAndConditional(t *testing.T) {
	modtime := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	content := strings.Repeat("0123456789", 30)
	attacks := [][]string{
		{"Range", "bytes=0-3"},
		{"Range", "bytes=9999-"},
		{"If-None-Match", `"v1"`},
		{"If-None-Match", "*"},
		{"If-Modified-Since", modtime.Add(time.Hour).Format(http.TimeFormat)},
		{"If-Match", `"other"`},
		{"If-Unmodified-Since", modtime.Add(-time.Hour).Format(http.TimeFormat)},
		{"Range", "bytes=0-3", "If-Range", `"v1"`},
	}
	for _, a := range attacks {
		t.Run(strings.Join(a, " "), func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /file", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"v1"`)
				http.ServeContent(w, r, "f.txt", modtime, strings.NewReader(content))
			})
			first := fetch(t, srv, "GET", "/file", a...)
			t.Logf("attacker: %d (%s)", first.status, first.cs())
			for i := range 2 {
				got := fetch(t, srv, "GET", "/file")
				if got.status != 200 || got.body != content {
					t.Fatalf("victim %d got %v", i, got)
				}
			}
			// A conditional victim gets 304 only when it matches.
			if got := fetch(t, srv, "GET", "/file", "If-None-Match", `"v2"`); got.status != 200 {
				t.Fatalf("non-matching If-None-Match got %v", got)
			}
			if got := fetch(t, srv, "HEAD", "/file"); got.status != 200 || got.body != "" {
				t.Fatalf("HEAD got %v", got)
			}
		})
	}
}

// HEAD and GET share an entry; the origin always runs a GET, so a HEAD
// first never stores an empty body.
func TestOutsiderHeadFirst(t *testing.T) {
	c := outsiderCache(t)
	srv := outsiderMux(t, c, "GET /x", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("X-Method", "HEAD")
			return
		}
		io.WriteString(w, "full body")
	})
	raw(t, srv, "HEAD /x HTTP/1.1\r\nHost: "+hostOf(srv)+"\r\nConnection: close\r\n\r\n")
	if got := fetch(t, srv, "GET", "/x"); got.body != "full body" || got.header.Get("X-Method") != "" {
		t.Fatalf("GET after HEAD got %v %v", got, got.header)
	}
}

// A client that does not accept the stored coding always gets the body
// decoded, whatever its Accept-Encoding says.
func TestOutsiderAcceptEncoding(t *testing.T) {
	body := strings.Repeat("compressible text ", 50)
	for _, ae := range []string{"", "identity", "gzip;q=0", "gzip;q=0.000", "*;q=0", "br", "deflate", "x-gzip;q=0", "gzip;q=0, *", "GZIP;Q=0", "identity;q=0"} {
		t.Run(ae, func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /t", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, body)
			})
			fetch(t, srv, "GET", "/t", "Accept-Encoding", "gzip")
			h := []string{}
			if ae != "" {
				h = []string{"Accept-Encoding", ae}
			}
			got := fetch(t, srv, "GET", "/t", h...)
			if got.header.Get("Content-Encoding") == "gzip" {
				if !strings.Contains(strings.ToLower(ae), "gzip") && ae != "identity;q=0" && !strings.Contains(ae, "*") {
					t.Fatalf("Accept-Encoding %q got gzip", ae)
				}
				return
			}
			if got.body != body {
				t.Fatalf("Accept-Encoding %q got %d bytes (%s)", ae, len(got.body), got.cs())
			}
		})
	}
}

// A background refresh (refresh ahead, stale while revalidate) sends the
// handler only what the key holds: the attacker's headers on the hit that
// triggers it never reach the entry.
func TestOutsiderRefreshForwarding(t *testing.T) {
	for _, p := range map[string]policy.Policy{
		"refresh-ahead": {TTL: 600 * time.Millisecond, RefreshAhead: 0.5, ForwardHeaders: []string{"X-Request-Id"}},
		"swr":           {TTL: 300 * time.Millisecond, StaleWhileRevalidate: 5 * time.Second, ForwardHeaders: []string{"X-Request-Id"}},
	} {
		c := outsiderCache(t)
		var calls atomic.Int64
		srv := outsiderMux(t, c, "GET /page/{id}", p, func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			host := r.Header.Get("X-Forwarded-Host")
			if host == "" {
				host = r.Host
			}
			fmt.Fprintf(w, "https://%s/%s %s %s %s %s", host, r.PathValue("id"), r.Header.Get("Accept-Language"),
				r.Header.Get("Cookie"), r.Header.Get("X-Http-Method-Override"), r.URL.RawQuery)
		})
		fetch(t, srv, "GET", "/page/1?a=1", "Host", "svc.example")
		time.Sleep(400 * time.Millisecond)
		fetch(t, srv, "GET", "/page/1?a=1", "Host", "svc.example", "X-Forwarded-Host", "evil.example",
			"Accept-Language", "evil", "X-HTTP-Method-Override", "DELETE", "X-Request-Id", "evil-trace")
		time.Sleep(300 * time.Millisecond)
		if calls.Load() < 2 {
			t.Fatalf("no refresh ran")
		}
		if got := fetch(t, srv, "GET", "/page/1?a=1", "Host", "svc.example"); strings.Contains(got.body, "evil") || strings.Contains(got.body, "DELETE") {
			t.Fatalf("victim got %v", got)
		}
	}
}

// chi nesting: groups, With, inline middleware that reads path values of
// parents, Mount under a parameter.
func TestOutsiderChiNesting(t *testing.T) {
	p := policy.Policy{}
	echo := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "t=%s id=%s uri=%s", chi.URLParam(r, "tenant"), chi.URLParam(r, "id"), r.RequestURI)
	}
	t.Run("Mount under a parameter, local pattern", func(t *testing.T) {
		c := outsiderCache(t)
		sub := chi.NewRouter()
		sub.With(c.MustRoute("/items/{id}", p)).Get("/items/{id}", echo)
		r := chi.NewRouter()
		r.Mount("/t/{tenant}", sub)
		srv := httptest.NewServer(r)
		defer srv.Close()
		fetch(t, srv, "GET", "/t/a/items/1")
		if got := fetch(t, srv, "GET", "/t/b/items/1"); !strings.Contains(got.body, "t=b") {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("Group with middleware", func(t *testing.T) {
		c := outsiderCache(t)
		r := chi.NewRouter()
		r.Route("/t/{tenant}", func(r chi.Router) {
			r.Group(func(r chi.Router) {
				r.Use(c.MustRoute("/t/{tenant}/items/{id}", p))
				r.Get("/items/{id}", echo)
				r.Get("/other/{id}", echo) // routed by another pattern
			})
		})
		srv := httptest.NewServer(r)
		defer srv.Close()
		fetch(t, srv, "GET", "/t/a/items/1")
		fetch(t, srv, "GET", "/t/a/other/1")
		if got := fetch(t, srv, "GET", "/t/b/items/1"); !strings.Contains(got.body, "t=b") {
			t.Fatalf("got %v", got)
		}
		if got := fetch(t, srv, "GET", "/t/a/other/1"); got.hit() {
			t.Fatalf("a route declared for one pattern cached another: %v", got)
		}
	})
	t.Run("regexp param", func(t *testing.T) {
		c := outsiderCache(t)
		r := chi.NewRouter()
		r.With(c.MustRoute("/r/{id:[a-z]+}", p)).Get("/r/{id:[a-z]+}", echo)
		srv := httptest.NewServer(r)
		defer srv.Close()
		fetch(t, srv, "GET", "/r/abc")
		if got := fetch(t, srv, "GET", "/r/abd"); !strings.Contains(got.body, "id=abd") {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("StripPrefix to chi", func(t *testing.T) {
		c := outsiderCache(t)
		r := chi.NewRouter()
		r.With(c.MustRoute("/items/{id}", p)).Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "path=%s", r.URL.Path)
		})
		m := http.NewServeMux()
		m.Handle("/a/", http.StripPrefix("/a", r))
		m.Handle("/b/", http.StripPrefix("/b", r))
		srv := httptest.NewServer(m)
		defer srv.Close()
		fetch(t, srv, "GET", "/a/items/1")
		if got := fetch(t, srv, "GET", "/b/items/1"); got.hit() {
			t.Fatalf("got %v", got)
		}
	})
}

// Collapsed requests for different variants never get each other's fill.
func TestOutsiderCollapsedVariants(t *testing.T) {
	c := outsiderCache(t)
	srv := outsiderMux(t, c, "GET /v", policy.Policy{Vary: []string{"Accept-Language"}, StaleIfError: time.Minute}, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	var wg sync.WaitGroup
	var bad atomic.Value
	for i := range 30 {
		lang := []string{"en", "fr", "de"}[i%3]
		wg.Go(func() {
			got := fetch(t, srv, "GET", "/v", "Accept-Language", lang)
			if got.body != "lang="+lang {
				bad.Store(fmt.Sprintf("%s got %v", lang, got))
			}
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

// The admin API: tokens, strict JSON.
func TestOutsiderAdmin(t *testing.T) {
	c := outsiderCache(t)
	outsiderMux(t, c, "GET /users/{id}", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {})
	admin, err := c.AdminHandler(httpcache.WithAdminToken("ops", "0123456789abcdef-token"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin)
	defer srv.Close()
	post := func(body string, header ...string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/admin/purge", strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	auth := []string{"Authorization", "Bearer 0123456789abcdef-token"}
	for _, h := range [][]string{
		nil,
		{"Authorization", "Bearer"},
		{"Authorization", "Bearer "},
		{"Authorization", "Basic 0123456789abcdef-token"},
		{"Authorization", "Bearer 0123456789abcdef-toke"},
		{"Authorization", "Bearer x", "Authorization", "Bearer 0123456789abcdef-token"},
	} {
		if got := post(`{"all": true}`, h...); got == 200 {
			t.Errorf("purge with %q: %d", h, got)
		}
	}
	for _, body := range []string{
		`{"all": true, "all": false}`, `{"All": true}`, `{"all": "true"}`, `{"all": true} {}`, `{"route": "GET /users/{id}", "params": {"id": "1", "id": "2"}}`,
		`{"al\u006c": true, "all": true}`, `{"params": {}}`, `[{"all": true}]`, `{"all": true, "tag": "x"}`, `{"route": null}`,
	} {
		if got := post(body, auth...); got != 400 {
			t.Errorf("purge %s: %d, want 400", body, got)
		}
	}
	if got := post(`{"route": "GET /users/{id}", "params": {"id": "1"}}`, auth...); got != 200 {
		t.Errorf("valid purge: %d", got)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"tag": "`)
	buf.WriteString(strings.Repeat("a", 70<<10))
	buf.WriteString(`"}`)
	if got := post(buf.String(), auth...); got != 400 {
		t.Errorf("oversized body: %d", got)
	}
}

// The origin's lifetimes and error answers: capped, and never a way to
// keep one client's answer for others.
func TestOutsiderOriginDirectives(t *testing.T) {
	c := outsiderCache(t)
	srv := outsiderMux(t, c, "GET /o/{case}", policy.Policy{HonorOriginCacheControl: true, MaxTTL: time.Hour}, func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("case") {
		case "huge":
			w.Header().Set("Surrogate-Control", "max-age=99999999999")
		case "private-smaxage":
			w.Header().Set("Cache-Control", "s-maxage=600, private")
		case "surrogate-over-private":
			w.Header().Set("Cache-Control", "private")
			w.Header().Set("Surrogate-Control", "max-age=600")
		case "maxage0":
			w.Header().Set("Cache-Control", "max-age=0")
		case "nocache-upper":
			w.Header().Set("Cache-Control", "NO-CACHE")
		}
		fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
	})
	for _, tc := range []struct {
		name   string
		stored bool
	}{{"huge", true}, {"private-smaxage", false}, {"surrogate-over-private", false}, {"maxage0", false}, {"nocache-upper", false}} {
		fetch(t, srv, "GET", "/o/"+tc.name, "X-User", "alice")
		got := fetch(t, srv, "GET", "/o/"+tc.name, "X-User", "bob")
		if got.hit() != tc.stored {
			t.Errorf("%s: %v", tc.name, got)
		}
		if tc.stored {
			if ttl := got.cs(); !strings.Contains(ttl, "ttl=3599") && !strings.Contains(ttl, "ttl=3600") {
				t.Errorf("%s: lifetime not capped: %s", tc.name, ttl)
			}
		}
	}
}

// AllowAuthorized with the credentials in Vary: one variant per
// credential, and refreshes run with the credential of the variant.
func TestOutsiderAllowAuthorizedVary(t *testing.T) {
	c := outsiderCache(t)
	var calls atomic.Int64
	srv := outsiderMux(t, c, "GET /me", policy.Policy{AllowAuthorized: true, Vary: []string{"Authorization"}, TTL: 400 * time.Millisecond, RefreshAhead: 0.5},
		func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			fmt.Fprintf(w, "user=%s cookie=%s", r.Header.Get("Authorization"), r.Header.Get("Cookie"))
		})
	fetch(t, srv, "GET", "/me", "Authorization", "alice")
	fetch(t, srv, "GET", "/me", "Authorization", "bob")
	time.Sleep(250 * time.Millisecond)
	fetch(t, srv, "GET", "/me", "Authorization", "alice", "Cookie", "evil=1") // triggers alice's refresh
	time.Sleep(200 * time.Millisecond)
	for _, u := range []string{"alice", "bob"} {
		if got := fetch(t, srv, "GET", "/me", "Authorization", u); got.body != "user="+u+" cookie=" {
			t.Errorf("%s got %v", u, got)
		}
	}
	if got := fetch(t, srv, "GET", "/me"); got.body != "user= cookie=" {
		t.Errorf("anonymous got %v", got)
	}
}

// PurgeURL (and the admin "url" purge) picks the route a URL belongs to
// by path specificity alone, ignoring the host of ServeMux host patterns,
// which ServeMux prefers: for a service with "GET svc.example/items/{id}"
// and "GET /items/{id}", a purge of http://svc.example/items/1 removes the
// bucket of the generic route, and the entry clients of svc.example are
// served stays: content an operator purged (say, leaked data) is still
// served for its whole lifetime.
func TestOutsiderPurgeURLHostPattern(t *testing.T) {
	c := outsiderCache(t)
	var version atomic.Int64
	h := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s v%d", name, version.Load())
		})
	}
	m := http.NewServeMux()
	m.Handle("GET svc.example/items/{id}", c.Handler("GET svc.example/items/{id}", policy.Policy{TTL: time.Hour}, h("host")))
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour}, h("generic")))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	if got := fetch(t, srv, "GET", "/items/1", "Host", "svc.example"); got.body != "host v0" {
		t.Fatalf("got %v", got)
	}
	version.Store(1)
	if _, err := c.PurgeURL(context.Background(), "http://svc.example/items/1"); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, srv, "GET", "/items/1", "Host", "svc.example"); got.body != "host v1" {
		t.Fatalf("after PurgeURL the purged response is still served: %v", got)
	}
}
