package httpcache_test

// Review D: an outside attacker's look at what is stored and for how long
// (decide.go), how entries are served back (serve.go) and how collapsed
// requests share a fill (miss.go). Real net/http servers, memstore, the
// public API only; helpers from outsider_test.go. Each test fails while
// the problem it names is there.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// The tests of this file come from the fourth outside review
// (2026-12-06): each comment tells what the reviewer found, and the test
// guards the fix. Its fifth finding (one request whose answer cannot be
// shared sends the waiters collapsed on it to the origin) is a design
// choice left open, described in that day's closing note.

// must-revalidate (RFC 9111 section 5.2.2.2), proxy-revalidate (5.2.2.8)
// and s-maxage (5.2.2.10, which implies proxy-revalidate for a shared
// cache) forbid serving the response stale without validating it first,
// and override stale-while-revalidate and stale-if-error (RFC 5861
// section 4). With HonorOriginCacheControl the cache takes the origin's
// max-age but ignores these directives, so the policy's stale windows
// serve a response the origin said must never be served stale: once in
// the background-revalidate window (SWR) and once after the origin
// failed (SIE).
func TestReviewDMustRevalidateServedStale(t *testing.T) {
	for _, cc := range []string{"max-age=1, must-revalidate", "max-age=1, proxy-revalidate", "s-maxage=1"} {
		for name, p := range map[string]policy.Policy{
			"swr": {HonorOriginCacheControl: true, TTL: time.Minute, StaleWhileRevalidate: time.Minute},
			"sie": {HonorOriginCacheControl: true, TTL: time.Minute, StaleIfError: time.Minute},
		} {
			t.Run(cc+"/"+name, func(t *testing.T) {
				t.Parallel() // each waits a real second
				c := outsiderCache(t)
				var calls atomic.Int64
				srv := outsiderMux(t, c, "GET /balance", p, func(w http.ResponseWriter, r *http.Request) {
					n := calls.Add(1)
					if n > 1 {
						// the origin changed (or fails): the old answer
						// must not be served without revalidation
						http.Error(w, "origin down", http.StatusServiceUnavailable)
						return
					}
					w.Header().Set("Cache-Control", cc)
					io.WriteString(w, "balance=100 (v1)")
				})
				fetch(t, srv, "GET", "/balance")
				time.Sleep(1100 * time.Millisecond) // past max-age / s-maxage
				got := fetch(t, srv, "GET", "/balance")
				if got.body == "balance=100 (v1)" {
					t.Fatalf("stale response served despite %q: %v", cc, got)
				}
			})
		}
	}
}

// A response's Age (RFC 9111 section 4.2.3) counts against its freshness
// lifetime: an origin that is itself a proxy (httputil.ReverseProxy in
// front of a CDN or another cache) hands over a response already 55 s old
// with max-age=60, which has 5 s of freshness left. The cache drops the
// origin's Age (envelope: "Describe one transfer") and starts the whole
// max-age from its own store time: the response is served as fresh for
// 60 s more (115 s in all) and every hit says Age: 0.
func TestReviewDOriginAgeIgnored(t *testing.T) {
	c := outsiderCache(t)
	srv := outsiderMux(t, c, "GET /proxied", policy.Policy{HonorOriginCacheControl: true, MaxTTL: time.Hour}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Age", "55")
		io.WriteString(w, "from upstream cache")
	})
	fetch(t, srv, "GET", "/proxied")
	got := fetch(t, srv, "GET", "/proxied")
	if !got.hit() {
		t.Fatalf("not a hit: %v", got)
	}
	age, _ := strconv.Atoi(got.header.Get("Age"))
	if age < 55 || !strings.Contains(got.cs(), "ttl=5") && !strings.Contains(got.cs(), "ttl=4") {
		t.Fatalf("hit says Age: %q, %s; want Age >= 55 and ttl <= 5 (the origin's response was 55 s old with max-age=60)",
			got.header.Get("Age"), got.cs())
	}
}

// RFC 9111 section 4.2.1: with several max-age directives a cache uses
// the first or treats the response as stale. parseCacheControl lets the
// last one win, so a handler's max-age=600 added after an outer
// middleware's max-age=0 (or one line "max-age=0, max-age=600") stores
// the response for ten minutes.
func TestReviewDDuplicateMaxAgeLastWins(t *testing.T) {
	for name, lines := range map[string][]string{
		"two lines": {"max-age=0", "max-age=600"},
		"one line":  {"max-age=0, max-age=600"},
	} {
		t.Run(name, func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /dup", policy.Policy{HonorOriginCacheControl: true, TTL: time.Minute}, func(w http.ResponseWriter, r *http.Request) {
				for _, l := range lines {
					w.Header().Add("Cache-Control", l)
				}
				fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
			})
			fetch(t, srv, "GET", "/dup", "X-User", "alice")
			if got := fetch(t, srv, "GET", "/dup", "X-User", "bob"); got.hit() {
				t.Fatalf("stored with Cache-Control %q: bob got %v", lines, got)
			}
		})
	}
}

// A 304 the cache answers carries the entry's ETag as stored, strong,
// while the 200 the same client got for the same entry carried it
// weakened (serveEntry weakens it for bodies the cache encoded or
// decoded, but returns for a 304 before doing so). The client then
// updates its copy (RFC 9111 section 4.3.4) to a strong validator for
// bytes the origin never produced: a later Range/If-Range against the
// origin or another cache splices different bytes together.
func TestReviewDNotModifiedKeepsStrongETag(t *testing.T) {
	body := strings.Repeat("compressible text ", 200)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(body))
	zw.Close()
	for name, tc := range map[string]struct {
		originGzip bool
		ae         string // the client's Accept-Encoding
	}{
		"cache-encoded, gzip client":      {false, "gzip"},
		"origin-encoded, identity client": {true, ""},
	} {
		t.Run(name, func(t *testing.T) {
			c := outsiderCache(t)
			srv := outsiderMux(t, c, "GET /doc", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Type", "text/plain")
				if tc.originGzip {
					w.Header().Set("Content-Encoding", "gzip")
					w.Write(gz.Bytes())
					return
				}
				io.WriteString(w, body)
			})
			h := []string{}
			if tc.ae != "" {
				h = []string{"Accept-Encoding", tc.ae}
			}
			fetch(t, srv, "GET", "/doc", "Accept-Encoding", "gzip") // fill
			full := fetch(t, srv, "GET", "/doc", h...)
			etag := full.header.Get("Etag")
			if !strings.HasPrefix(etag, "W/") {
				t.Fatalf("200 carried %q: the cache did not weaken the ETag of bytes that are not the origin's", etag)
			}
			nm := fetch(t, srv, "GET", "/doc", append(h, "If-None-Match", etag)...)
			if nm.status != http.StatusNotModified {
				t.Fatalf("conditional GET: %v", nm)
			}
			if got := nm.header.Get("Etag"); got != etag {
				t.Fatalf("200 carried ETag %s, the 304 for the same bytes carries %s", etag, got)
			}
		})
	}
}
