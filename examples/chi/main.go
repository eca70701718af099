// Command chi is a small chi service whose routes go through readthrough.
//
//	make run                      # embedded Redis, no setup
//	REDIS_URL=redis://127.0.0.1:6379/0 make run
//	curl -si localhost:8080/slow/1   # first: ~300ms, Cache-Status: ...; fwd=uri-miss; stored
//	curl -si localhost:8080/slow/1   # then:  well under 1ms, Cache-Status: ...; hit
//
// ADDR sets the listen address (default 127.0.0.1:8080), POLICY_FILE an
// optional JSON policy file that overrides the policies declared below.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/examplekit"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

func main() {
	examplekit.Main("127.0.0.1:8080", "127.0.0.1:9090", run)
}

// run serves the example on ln, and the cache's admin API and metrics on
// adminLn, until ctx ends.
func run(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error {
	client, release, err := examplekit.Redis(log)
	if err != nil {
		return err
	}
	defer release()
	store, err := redisstore.New(client, redisstore.WithPrefix("example"))
	if err != nil {
		return err
	}
	defer store.Close()

	opts := []httpcache.Option{httpcache.WithLogger(log)}
	if path := os.Getenv("POLICY_FILE"); path != "" {
		f, err := policy.Load(path)
		if err != nil {
			return err
		}
		opts = append(opts, httpcache.WithPolicyFile(f))
	}
	cache, err := httpcache.New(store, opts...)
	if err != nil {
		return err
	}

	r := chi.NewRouter()
	// A deliberately slow origin: the first request pays 300ms, the next
	// ones come from Redis.
	r.With(cache.MustRoute("/slow/{id}", policy.Policy{
		TTL:                  30 * time.Second,
		StaleWhileRevalidate: time.Minute,
		RefreshAhead:         0.8,
	})).Get("/slow/{id}", examplekit.SlowOrigin(300*time.Millisecond))
	// Everything about one user lives in one bucket, so it can be purged at
	// once; the page query parameter is part of the key, others are not.
	r.With(cache.MustRoute("/users/{id}/posts", policy.Policy{
		TTL:          time.Minute,
		StaleIfError: 10 * time.Minute,
		QueryParams:  []string{"page"},
		// Tagged "user-<id>" so that a purge of the tag drops it too.
		Tags: func(r *http.Request) []string { return []string{"user-" + r.PathValue("id")} },
	})).Get("/users/{id}/posts", examplekit.SlowOrigin(100*time.Millisecond))
	// Catalogue answers are JSON documents of one shape: compressed with
	// a dictionary trained from the route's own responses (and shared
	// through Redis), each takes far less Redis memory than gzipped.
	r.With(cache.MustRoute("/products/{id}", policy.Policy{
		TTL:         10 * time.Minute,
		Compression: policy.CompressDictionary,
	})).Get("/products/{id}", examplekit.ProductOrigin())
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	if err := cache.VerifyRoutes(); err != nil {
		return err
	}

	admin, err := examplekit.Admin(cache, log)
	if err != nil {
		return err
	}
	log.Info("example listening", "url", "http://"+ln.Addr().String()+"/slow/1", "admin", "http://"+adminLn.Addr().String()+"/admin/")
	return examplekit.Serve(ctx, map[net.Listener]http.Handler{ln: r, adminLn: admin}, cache)
}
