package promcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/promcache"
	"github.com/readthrough/readthrough/storage/memstore"
)

func TestCollectorExposesRouteCounters(t *testing.T) {
	cache, err := httpcache.New(mustMemStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(context.Background())
	h := http.NewServeMux()
	h.Handle("GET /x", cache.Handler("GET /x", policy.Policy{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
	})))
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	}
	bypassed := httptest.NewRequest("GET", "/x", nil)
	bypassed.Header.Set("Authorization", "Bearer x")
	h.ServeHTTP(httptest.NewRecorder(), bypassed)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcache.NewCollector(cache, ""))
	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`readthrough_hits_total{route="GET /x"} 2`,
		`readthrough_misses_total{route="GET /x"} 1`,
		`readthrough_stored_total{route="GET /x"} 1`,
		`readthrough_bypassed_total{reason="authorization",route="GET /x"} 1`,
		`readthrough_bypassed_total{reason="method",route="GET /x"} 0`,
		`readthrough_origin_calls_total{route="GET /x"} 1`,
		"# TYPE readthrough_origin_time_ns_total counter",
		"# TYPE readthrough_origin_time_saved_ns gauge",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	// The gauge is the route's since-start value: hits times the mean
	// origin call, as the admin API's stats say.
	s := cache.RouteStats()["GET /x"]
	if s.OriginTimeNs <= 0 || s.OriginTimeSavedNs != 2*s.OriginTimeNs {
		t.Errorf("stats: origin_time_ns %d, origin_time_saved_ns %d; want saved = 2 hits x the one call", s.OriginTimeNs, s.OriginTimeSavedNs)
	}
	if want := fmt.Sprintf(`readthrough_origin_time_saved_ns{route="GET /x"} %g`, float64(s.OriginTimeSavedNs)); !strings.Contains(body, want) {
		t.Errorf("metrics lack %q:\n%s", want, body)
	}
}

func mustMemStore(t *testing.T) *memstore.Store {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCollectorExposesLocalTier(t *testing.T) {
	cache, err := httpcache.New(mustMemStore(t), httpcache.WithLocalTier(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(context.Background())
	h := http.NewServeMux()
	h.Handle("GET /x", cache.Handler("GET /x", policy.Policy{Local: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
	})))
	deadline := time.Now().Add(5 * time.Second)
	for cache.RouteStats()["GET /x"].LocalHits == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no local hit: %+v", cache.LocalStats())
		}
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
		time.Sleep(10 * time.Millisecond)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promcache.NewCollector(cache, ""))
	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`readthrough_local_hits_total{route="GET /x"} `,
		"readthrough_local_entries 1",
		"readthrough_local_max_bytes 1.048576e+06",
		"# TYPE readthrough_local_evictions_total counter",
		"# TYPE readthrough_local_silent_seconds gauge",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
