package otelcache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/otelcache"
	"github.com/readthrough/readthrough/policy"
)

// BenchmarkHitPathOTel measures an in-process hit (200 B body) with no
// tracer, with the OpenTelemetry SDK sampling every request (spans to an
// exporter that drops them) and with it sampling none: what tracing the
// cache's decisions costs per hit.
func BenchmarkHitPathOTel(b *testing.B) {
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: no tracer
	}{
		{"none", nil},
		{"sampled", sdktrace.AlwaysSample()},
		{"sampled-out", sdktrace.NeverSample()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var opts []httpcache.Option
			if tc.sampler != nil {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()), sdktrace.WithSampler(tc.sampler))
				b.Cleanup(func() { tp.Shutdown(context.Background()) })
				opts = append(opts, httpcache.WithTracer(otelcache.NewTracer(tp)))
			}
			cache, err := httpcache.New(newMemStore(b), opts...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { cache.Close(context.Background()) })
			body := strings.Repeat(`{"k":"v","n":12345},`, 10)
			mux := http.NewServeMux()
			mux.Handle(usersRoute, cache.Handler(usersRoute, policy.Policy{TTL: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, body)
			})))
			r := httptest.NewRequest("GET", "/users/15", nil)
			r.Header.Set("Accept-Encoding", "gzip")
			mux.ServeHTTP(httptest.NewRecorder(), r)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				mux.ServeHTTP(w, r)
			}
			if s := cache.Stats(); s.Hits == 0 {
				b.Fatal("no hit")
			}
		})
	}
}

// discard is a reusable ResponseWriter that drops the body.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
