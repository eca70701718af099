package httpcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// A write route names the cached route it changes: after a successful
// PUT, the next GET of the item is a miss with the new value, on every
// instance.
func ExampleCache_MustWrites() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store)
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())

	var mu sync.Mutex
	names := map[string]string{"7": "kettle"}
	r := chi.NewRouter()
	r.With(cache.MustRoute("/items/{id}", policy.Policy{TTL: time.Hour})).Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, names[r.PathValue("id")])
	})
	r.With(cache.MustWrites("/items/{id}", httpcache.PurgeRoute("/items/{id}"))).Put("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		names[r.PathValue("id")] = string(b)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})

	send := func(method, body string) {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(method, "/items/7", strings.NewReader(body)))
		fmt.Printf("%s %d %q", method, w.Code, w.Body)
		if cs := w.Header().Get("Cache-Status"); cs != "" {
			fmt.Print(" | ", cs)
		}
		fmt.Println()
	}
	send("GET", "")
	send("GET", "")
	send("PUT", "teapot")
	send("GET", "")
	// Output:
	// GET 200 "kettle" | readthrough; fwd=uri-miss; fwd-status=200; stored
	// GET 200 "kettle" | readthrough; hit; ttl=3600
	// PUT 204 ""
	// GET 200 "teapot" | readthrough; fwd=uri-miss; fwd-status=200; stored
}
