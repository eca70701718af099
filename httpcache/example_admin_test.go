package httpcache_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// The admin API, which a service mounts on an internal port, admits the
// bearer tokens it was given. Here an operator purges the bucket of a URL
// (the URL carries the Host clients use: it is part of the key), and the
// next request for it is a miss again.
func ExampleCache_AdminHandler() {
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

	const token = "a-secret-of-16-characters-or-more"
	admin, err := cache.AdminHandler(
		httpcache.WithAdminToken("operator", token),
		httpcache.WithAdminLogger(slog.New(slog.DiscardHandler)), // by default, the cache's logger logs each purge
	)
	if err != nil {
		panic(err)
	}

	get := func() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/users/15", nil))
		fmt.Println(w.Header().Get("Cache-Status"))
	}
	get()
	get()
	req := httptest.NewRequest("POST", "/admin/purge", strings.NewReader(`{"url": "http://example.com/users/15"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, req)
	fmt.Print(w.Code, " ", w.Body)
	get()
	// Output:
	// readthrough; fwd=uri-miss; fwd-status=200; stored
	// readthrough; hit; ttl=60
	// 200 {
	//   "scope": "url",
	//   "target": "http://example.com/users/15",
	//   "removed": 1
	// }
	// readthrough; fwd=uri-miss; fwd-status=200; stored
}
