package otelcache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/otelcache"
	"github.com/readthrough/readthrough/policy"
)

// collect reads every metric of reader, as cumulative int64 sums, by name
// and then by the attributes of each point.
func collect(t *testing.T, reader sdkmetric.Reader) map[string]map[attribute.Distinct]metricdata.DataPoint[int64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[attribute.Distinct]metricdata.DataPoint[int64]{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelcache.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
				t.Errorf("%s is not a cumulative int64 counter: %T", m.Name, m.Data)
				continue
			}
			points := map[attribute.Distinct]metricdata.DataPoint[int64]{}
			for _, p := range sum.DataPoints {
				points[p.Attributes.Equivalent()] = p
			}
			out[m.Name] = points
		}
	}
	return out
}

func TestRegisterMetrics(t *testing.T) {
	cache, err := httpcache.New(newMemStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(context.Background())
	mux := http.NewServeMux()
	mux.Handle(usersRoute, cache.Handler(usersRoute, policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "user")
	})))
	for range 3 {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
	}
	bypassed := httptest.NewRequest("GET", "/users/15", nil)
	bypassed.Header.Set("Cookie", "a=b")
	mux.ServeHTTP(httptest.NewRecorder(), bypassed)

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	unregister, err := otelcache.RegisterMetrics(mp, cache)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, reader)
	routeSet := attribute.NewSet(otelcache.MetricRouteKey.String(usersRoute))
	route := routeSet.Equivalent()
	stats := cache.RouteStats()[usersRoute]
	for _, k := range httpcache.Counters() {
		p, ok := got["readthrough."+k.Name][route]
		if !ok {
			t.Errorf("no readthrough.%s on the route", k.Name)
			continue
		}
		if p.Value != k.Value(stats) {
			t.Errorf("readthrough.%s = %d, want %d", k.Name, p.Value, k.Value(stats))
		}
	}
	for name, want := range map[string]int64{"readthrough.hits": 2, "readthrough.misses": 1, "readthrough.stored": 1} {
		if v := got[name][route].Value; v != want {
			t.Errorf("%s = %d, want %d", name, v, want)
		}
	}
	for _, reason := range httpcache.BypassReasons() {
		attrs := attribute.NewSet(otelcache.MetricRouteKey.String(usersRoute), otelcache.MetricReasonKey.String(reason))
		set := attrs.Equivalent()
		want := int64(0)
		if reason == "cookie" {
			want = 1
		}
		if p, ok := got["readthrough.bypassed"][set]; !ok || p.Value != want {
			t.Errorf("readthrough.bypassed{reason=%s} = %d (reported %v), want %d", reason, p.Value, ok, want)
		}
	}

	if err := unregister(); err != nil {
		t.Fatal(err)
	}
	for name, points := range collect(t, reader) {
		if len(points) > 0 {
			t.Errorf("%s still reported after unregister", name)
		}
	}
}

func TestRegisterMetricsNamespace(t *testing.T) {
	cache, err := httpcache.New(newMemStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(context.Background())
	cache.Handler(usersRoute, policy.Policy{}, http.NotFoundHandler())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	if _, err := otelcache.RegisterMetrics(mp, cache, otelcache.WithNamespace("shop.cache")); err != nil {
		t.Fatal(err)
	}
	if _, ok := collect(t, reader)["shop.cache.hits"]; !ok {
		t.Error("no shop.cache.hits")
	}
	if _, err := otelcache.RegisterMetrics(nil, cache); err == nil {
		t.Error("no error for a nil meter provider")
	}
}
