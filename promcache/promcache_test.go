package promcache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
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
