package httpcache_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// Inside a chi sub-router, a route is declared to the cache with its whole
// pattern, the one chi routed the request by: the tenant is part of what
// the handler sees, so it is part of the key. A route declared with its
// local part only ("/orders/{id}" below) is refused at request time: the
// request bypasses the cache, and the mismatch is logged.
func ExampleCache_MustRoute_subrouter() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	// The example discards the log line of the refused route.
	cache, err := httpcache.New(store, httpcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())

	show := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tenant %s, id %s", chi.URLParam(r, "tenant"), chi.URLParam(r, "id"))
	}
	p := policy.Policy{TTL: time.Minute}
	r := chi.NewRouter()
	r.Route("/tenants/{tenant}", func(r chi.Router) {
		r.With(cache.MustRoute("/tenants/{tenant}/items/{id}", p)).Get("/items/{id}", show)
		r.With(cache.MustRoute("/orders/{id}", p)).Get("/orders/{id}", show) // wrong: not the whole pattern
	})

	for _, target := range []string{"/tenants/a/items/1", "/tenants/a/items/1", "/tenants/b/items/1", "/tenants/a/orders/1"} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		fmt.Printf("%s | %s\n", w.Body, w.Header().Get("Cache-Status"))
	}
	// Output:
	// tenant a, id 1 | readthrough; fwd=uri-miss; fwd-status=200; stored
	// tenant a, id 1 | readthrough; hit; ttl=60
	// tenant b, id 1 | readthrough; fwd=uri-miss; fwd-status=200; stored
	// tenant a, id 1 | readthrough; fwd=bypass; detail=route-mismatch
}
