package redisstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// The Redis store takes a go-redis client with the recommended settings,
// here on an embedded miniredis: the cache's deadlines must reach the
// socket, and a dead Redis must fail at once rather than after retries, so
// that requests go to the origin without waiting. New refuses a client
// that lacks ContextTimeoutEnabled or DialerRetries: 1.
func ExampleNew() {
	m, err := miniredis.Run() // in a service: your Redis
	if err != nil {
		panic(err)
	}
	defer m.Close()

	client := redis.NewClient(&redis.Options{
		Addr:                  m.Addr(),
		ContextTimeoutEnabled: true, // required
		DialerRetries:         1,    // required
		MaxRetries:            -1,   // no retries: an error sends the request to the origin
		DialTimeout:           200 * time.Millisecond,
	})
	defer client.Close()
	store, err := redisstore.New(client, redisstore.WithPrefix("users-svc"))
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// Without the start-up health check here: Close does not wait for
	// it, and its INFO may still be in flight when this example closes
	// the embedded server (a service's Redis outlives its caches).
	cache, err := httpcache.New(store, httpcache.WithoutStartupHealthCheck())
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())
	const pattern = "GET /users/{id}"
	h := cache.Handler(pattern, policy.Policy{TTL: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s", r.PathValue("id"))
	}))
	mux := http.NewServeMux()
	mux.Handle(pattern, h)
	mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/15", nil))
	fmt.Println(m.Keys()) // the bucket of user 15: a Redis hash

	// go-redis's defaults ignore the cache's deadlines.
	defaults := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer defaults.Close()
	_, err = redisstore.New(defaults)
	fmt.Println(err)
	// Output:
	// [users-svc:b:{GET /users/%7Bid%7D|15}]
	// redisstore: the go-redis client must set ContextTimeoutEnabled: true, or the cache's per-call deadlines are ignored and a slow Redis stalls requests
}
