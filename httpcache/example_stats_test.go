package httpcache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// The admin API's stats carry, besides the counters since start, "recent":
// their deltas over the last five minutes, sampled server-side so that
// every reader (the admin page, the command-line tool) sees the same
// window. Here one miss and three hits of a route, read at once.
func ExampleRecentStats() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store)
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background()) // stops the sampling too
	mux := http.NewServeMux()
	const pattern = "GET /users/{id}"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "user %s", r.PathValue("id"))
		})))
	const token = "a-secret-of-16-characters-or-more"
	admin, err := cache.AdminHandler(httpcache.WithAdminToken("operator", token), httpcache.WithAdminLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	for range 4 {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
	}

	req := httptest.NewRequest("GET", "/admin/stats", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, req)
	var stats struct {
		Total  httpcache.Stats       `json:"total"`
		Recent httpcache.RecentStats `json:"recent"`
	}
	if err := json.NewDecoder(w.Body).Decode(&stats); err != nil {
		panic(err)
	}
	r := stats.Recent.Routes[pattern]
	fmt.Printf("since start: %d hits, %d misses, %d origin call\n", stats.Total.Hits, stats.Total.Misses, stats.Total.OriginCalls)
	fmt.Printf("recent: %d hits, %d misses, hit ratio %.2f\n", r.Hits, r.Misses, r.HitRatio)
	fmt.Println("saved = hits x mean origin call:", stats.Total.OriginTimeSavedNs == 3*stats.Total.OriginTimeNs)
	// Output:
	// since start: 3 hits, 1 misses, 1 origin call
	// recent: 3 hits, 1 misses, hit ratio 0.75
	// saved = hits x mean origin call: true
}

// Derived describes the values of Stats computed from its counters, such
// as the origin time the hits saved; a metrics exporter reads them as
// gauges, the counters as counters.
func ExampleDerived() {
	for _, d := range httpcache.Derived() {
		fmt.Println(d.Name, d.Value(httpcache.Stats{OriginTimeSavedNs: 42}))
	}
	// Output:
	// origin_time_saved_ns 42
}
