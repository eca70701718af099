package httpcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// A route with Local set keeps copies of its entries in process memory:
// the first request fills the store, the second reads it and makes the
// copy, the third sends no store command. A purge, by any instance,
// reaches the copy through the store's change reports (the Redis store
// tracks with CLIENT TRACKING; memstore sees every change in process).
func ExampleWithLocalTier() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store, httpcache.WithLocalTier(64<<20))
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())
	mux := http.NewServeMux()
	const pattern = "GET /users/{id}"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute, Local: true},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "user %s", r.PathValue("id"))
		})))
	get := func() string {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "/users/15", nil))
		return w.Header().Get("Cache-Status")
	}
	fmt.Println(get())
	fmt.Println(get())
	fmt.Println(get())
	if _, err := cache.PurgeURL(context.Background(), "http://example.com/users/15"); err != nil {
		panic(err)
	}
	time.Sleep(10 * time.Millisecond) // the store's report is asynchronous
	fmt.Println(get())
	fmt.Println("local hits:", cache.Stats().LocalHits)
	// Output:
	// readthrough; fwd=uri-miss; fwd-status=200; stored
	// readthrough; hit; ttl=60
	// readthrough; hit; ttl=60; detail=local
	// readthrough; fwd=uri-miss; fwd-status=200; stored
	// local hits: 1
}
