package httpcache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// discard is a reusable ResponseWriter that drops the body.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkHitPath measures the middleware's own cost per fresh hit, with
// the in-process store so that no network time hides it: key derivation,
// one store read, envelope decode, headers and body write. The Redis
// benchmarks in integration/ put this next to a round trip.
func BenchmarkHitPath(b *testing.B) {
	for _, size := range []int{200, 2048} {
		for _, ae := range []string{"gzip", ""} {
			b.Run(fmt.Sprintf("body=%d/accept=%q", size, ae), func(b *testing.B) {
				c, err := New(newMemStore(b), WithLogger(quietLogger()))
				if err != nil {
					b.Fatal(err)
				}
				body := strings.Repeat(`{"k":"v","n":12345},`, size/20)
				h := mux(b, c, "GET /users/{id}", policy.Policy{TTL: time.Hour}, textOrigin(body, "Content-Type", "application/json", "Etag", `"x"`))
				r := httptest.NewRequest("GET", "/users/15?page=2", nil)
				if ae != "" {
					r.Header.Set("Accept-Encoding", ae)
				}
				benchHits(b, h, r)
			})
		}
	}
}

// BenchmarkHitPathCompression is the in-process hit path of a 2 KB JSON
// item stored with each compression, to a client that accepts gzip.
func BenchmarkHitPathCompression(b *testing.B) {
	for _, comp := range []policy.Compression{policy.CompressGzip, policy.CompressDictionary, policy.CompressNone} {
		b.Run(string(comp), func(b *testing.B) {
			c, err := New(newMemStore(b), WithLogger(quietLogger()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close(context.Background()) })
			h := mux(b, c, "GET /items/{id}", policy.Policy{TTL: time.Hour, Compression: comp}, itemOrigin())
			if comp == policy.CompressDictionary {
				deadline := time.Now().Add(5 * time.Second)
				for id := 1; c.Stats().DictionariesTrained == 0; id++ {
					if time.Now().After(deadline) {
						b.Fatal("no dictionary")
					}
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/items/%d", id), nil))
				}
			}
			r := httptest.NewRequest("GET", "/items/4711", nil)
			r.Header.Set("Accept-Encoding", "gzip")
			benchHits(b, h, r)
		})
	}
}

// benchHits fills r's entry, then measures hits on it.
func benchHits(b *testing.B, h http.Handler, r *http.Request) {
	b.Helper()
	h.ServeHTTP(httptest.NewRecorder(), r)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
	if !strings.Contains(w.h.Get("Cache-Status"), "hit") {
		b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
	}
}
