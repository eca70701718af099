package httpcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// A ServeMux route wrapped in the cache: the first request fills the entry,
// the second is served from it.
func ExampleCache_Handler() {
	store, err := memstore.New() // in-process; redisstore.New for Redis
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store)
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())

	user := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s", r.PathValue("id"))
	})
	mux := http.NewServeMux()
	const pattern = "GET /users/{id}"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute}, user))

	for range 2 {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "/users/15", nil))
		fmt.Printf("%s | %s\n", w.Body, w.Header().Get("Cache-Status"))
	}
	// Output:
	// user 15 | readthrough; fwd=uri-miss; fwd-status=200; stored
	// user 15 | readthrough; hit; ttl=60
}

// With chi, the cache is mounted per route with With, so the route pattern
// it keys by is the one declared.
func ExampleCache_MustRoute() {
	store, err := memstore.New() // in-process; redisstore.New for Redis
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store)
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())

	r := chi.NewRouter()
	r.With(cache.MustRoute("/users/{id}/posts", policy.Policy{
		TTL:          time.Minute,
		BucketParams: []string{"id"},   // one bucket per user: purge them together
		QueryParams:  []string{"page"}, // ?page is part of the key, other parameters are not
		StaleIfError: 10 * time.Minute, // serve the old page while the origin fails
	})).Get("/users/{id}/posts", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "posts of %s, page %s", chi.URLParam(r, "id"), r.URL.Query().Get("page"))
	})

	for _, target := range []string{"/users/7/posts?page=2", "/users/7/posts?page=2&utm_source=x"} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		fmt.Printf("%s | %s\n", w.Body, w.Header().Get("Cache-Status"))
	}
	// Output:
	// posts of 7, page 2 | readthrough; fwd=uri-miss; fwd-status=200; stored
	// posts of 7, page 2 | readthrough; hit; ttl=60
}

// An invalid policy is an error that names the route and the field.
func ExampleCache_Route() {
	store, err := memstore.New() // in-process; redisstore.New for Redis
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store)
	if err != nil {
		panic(err)
	}
	_, err = cache.Route("GET /users/{id}", policy.Policy{BucketParams: []string{"user"}})
	fmt.Println(err)
	// Output:
	// policy: route "GET /users/{id}": BucketParams: "user" is not a path parameter of the pattern (it has "id")
}
