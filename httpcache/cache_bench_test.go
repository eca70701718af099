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

// BenchmarkHitPathTracer is the in-process hit path of BenchmarkHitPath
// (200 B body, gzip accepted) with no tracer, as every cache without
// WithTracer runs, and with a tracer that records nothing (it returns nil
// spans, as one that samples the request out does): the cost of the hook
// points themselves. Package otelcache measures an OpenTelemetry tracer.
func BenchmarkHitPathTracer(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"none", nil},
		{"sampled-out", []Option{WithTracer(sampledOut{})}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := New(newMemStore(b), append([]Option{WithLogger(quietLogger())}, tc.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			body := strings.Repeat(`{"k":"v","n":12345},`, 10)
			h := mux(b, c, "GET /users/{id}", policy.Policy{TTL: time.Hour}, textOrigin(body, "Content-Type", "application/json", "Etag", `"x"`))
			r := httptest.NewRequest("GET", "/users/15?page=2", nil)
			r.Header.Set("Accept-Encoding", "gzip")
			benchHits(b, h, r)
		})
	}
}

// sampledOut is a tracer whose spans record nothing.
type sampledOut struct{}

func (sampledOut) Start(ctx context.Context, _ Op, _ string) (context.Context, Span) { return ctx, nil }

// BenchmarkCoarseDeadline measures the context of the hit path's store
// read: the shared deadline context alone (what the read got before it
// kept the request's values) and the valuesCtx that adds them, and a
// value looked up through each (a tracing hook in the store looks up the
// span).
func BenchmarkCoarseDeadline(b *testing.B) {
	d := &coarseDeadline{timeout: time.Hour}
	req := context.WithValue(context.Background(), testCtxKey{}, "request")
	var sink any
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = d.shared(time.Now()).Value(testCtxKey{})
		}
	})
	b.Run("values", func(b *testing.B) {
		var vc valuesCtx
		b.ReportAllocs()
		for b.Loop() {
			sink = d.context(req, time.Now(), &vc).Value(testCtxKey{})
		}
	})
	_ = sink
}

// BenchmarkHitPathLocal is the in-process hit path of BenchmarkHitPath
// (gzip accepted) served from the local tier: no store read, no decode;
// key derivation, the copy's checks, headers and body write.
func BenchmarkHitPathLocal(b *testing.B) {
	for _, size := range []int{200, 2048} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			c, err := New(newMemStore(b), WithLogger(quietLogger()), WithLocalTier(0))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close(context.Background()) })
			body := strings.Repeat(`{"k":"v","n":12345},`, size/20)
			h := mux(b, c, "GET /users/{id}", policy.Policy{TTL: time.Hour, Local: true}, textOrigin(body, "Content-Type", "application/json", "Etag", `"x"`))
			r := httptest.NewRequest("GET", "/users/15?page=2", nil)
			r.Header.Set("Accept-Encoding", "gzip")
			w := &discard{h: http.Header{}}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(w.h.Get("Cache-Status"), "detail=local") {
				if time.Now().After(deadline) {
					b.Fatalf("no local hit: %q", w.h.Get("Cache-Status"))
				}
				clear(w.h)
				h.ServeHTTP(w, r)
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			if !strings.Contains(w.h.Get("Cache-Status"), "detail=local") {
				b.Fatalf("not a local hit: %q", w.h.Get("Cache-Status"))
			}
		})
	}
}
