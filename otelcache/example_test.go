package otelcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/otelcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// A service passes an OpenTelemetry tracer to the cache and registers the
// cache's counters with its meter provider. Here the spans go to an
// in-memory exporter and the metrics to a manual reader; a service uses
// its OTLP exporters, and an outer middleware (otelhttp) that starts each
// request's span, under which the cache's spans nest.
func Example() {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store, httpcache.WithTracer(otelcache.NewTracer(tp)))
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())
	unregister, err := otelcache.RegisterMetrics(mp, cache)
	if err != nil {
		panic(err)
	}
	defer unregister()

	mux := http.NewServeMux()
	const pattern = "GET /users/{id}"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "user %s", r.PathValue("id"))
		})))
	for range 2 {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
	}

	for _, s := range spans.GetSpans() {
		for _, kv := range s.Attributes {
			if kv.Key == otelcache.OutcomeKey {
				fmt.Println(s.Name, kv.Value.AsString())
			}
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "readthrough.hits" {
			p := m.Data.(metricdata.Sum[int64]).DataPoints[0]
			route, _ := p.Attributes.Value(otelcache.MetricRouteKey)
			fmt.Printf("%s{route=%q} %d\n", m.Name, route.AsString(), p.Value)
		}
	}
	// Output:
	// readthrough.lookup miss
	// readthrough.fill stored
	// readthrough.lookup hit
	// readthrough.hits{route="GET /users/{id}"} 1
}
