package httpcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// A route in standards mode caches as the handler's headers say, as a
// proxy cache would: here for 30 seconds, in one variant per
// Accept-Language, which the policy does not key on. The policy sets no
// TTL (it may not); a client with another language gets its own answer.
func ExampleCache_Handler_standards() {
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
	const pattern = "GET /greeting"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{Standards: true},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=30")
			w.Header().Set("Vary", "Accept-Language")
			if r.Header.Get("Accept-Language") == "fr" {
				fmt.Fprint(w, "bonjour")
				return
			}
			fmt.Fprint(w, "hello")
		})))
	get := func(lang string) {
		r := httptest.NewRequest("GET", "/greeting", nil)
		r.Header.Set("Accept-Language", lang)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Printf("%s: %s (%s)\n", lang, w.Body, w.Header().Get("Cache-Status"))
	}
	get("en")
	get("fr")
	get("en")
	get("fr")
	// Output:
	// en: hello (readthrough; fwd=uri-miss; fwd-status=200; stored)
	// fr: bonjour (readthrough; fwd=uri-miss; fwd-status=200; stored)
	// en: hello (readthrough; hit; ttl=30)
	// fr: bonjour (readthrough; hit; ttl=30)
}
