package memstore_test

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

// The in-process store runs the cache without Redis: in unit tests, or in
// a service of one instance. Caches that share one Store share its entries,
// as instances sharing one Redis do: what cache a stored, cache b serves.
func ExampleNew() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	user := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s", r.PathValue("id"))
	})
	for _, name := range []string{"a", "b"} {
		cache, err := httpcache.New(store)
		if err != nil {
			panic(err)
		}
		defer cache.Close(context.Background())
		mux := http.NewServeMux()
		const pattern = "GET /users/{id}"
		mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute}, user))

		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "/users/15", nil))
		fmt.Printf("cache %s: %s | %s\n", name, w.Body, w.Header().Get("Cache-Status"))
	}
	// Output:
	// cache a: user 15 | readthrough; fwd=uri-miss; fwd-status=200; stored
	// cache b: user 15 | readthrough; hit; ttl=60
}
