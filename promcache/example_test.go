package promcache_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/promcache"
	"github.com/readthrough/readthrough/storage/memstore"
)

// A Collector exports a cache's counters, per route, to Prometheus.
// Register it with a registry and serve that with promhttp: here after
// one miss and one hit, the /metrics answer read through httptest.
func ExampleNewCollector() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store)
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())
	mux := http.NewServeMux()
	const pattern = "GET /users/{id}"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "user %s", r.PathValue("id"))
		})))
	for range 2 {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
	}

	// A registry of its own; prometheus.MustRegister would use the default one.
	reg := prometheus.NewRegistry()
	reg.MustRegister(promcache.NewCollector(cache, "")) // "": names start with readthrough_
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	w := httptest.NewRecorder()
	metrics.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for s := bufio.NewScanner(w.Body); s.Scan(); {
		if line := s.Text(); strings.HasPrefix(line, "readthrough_hits_total") || strings.HasPrefix(line, "readthrough_misses_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// readthrough_hits_total{route="GET /users/{id}"} 1
	// readthrough_misses_total{route="GET /users/{id}"} 1
}
