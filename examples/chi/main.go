// Command chi is a small chi service whose routes go through readthrough.
// Copy this directory (main.go and support.go) into a module of your own
// to start from it.
//
//	make run                      # embedded Redis, no setup
//	REDIS_URL=redis://127.0.0.1:6379/0 make run
//	curl -si localhost:8080/slow/1   # first: ~300ms, Cache-Status: ...; fwd=uri-miss; stored
//	curl -si localhost:8080/slow/1   # then:  well under 1ms, Cache-Status: ...; hit
//
// ADDR sets the listen address (default 127.0.0.1:8080), POLICY_FILE an
// optional JSON policy file that overrides the policies declared below.
// The admin API and Prometheus metrics are on ADMIN_ADDR (default
// 127.0.0.1:9090), behind the bearer token ADMIN_TOKEN (default
// example-admin-token-change-me, which is refused on any address but a
// loopback one).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/promcache"
	"github.com/readthrough/readthrough/storage/redisstore"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, adminLn, err := listen(env("ADDR", "127.0.0.1:8080"), env("ADMIN_ADDR", "127.0.0.1:9090"), os.Getenv("ADMIN_TOKEN"))
	if err == nil {
		err = run(ctx, ln, adminLn, log)
	}
	if err != nil {
		log.Error("example stopped", "err", err)
		os.Exit(1)
	}
}

// run serves the example on ln, and the cache's admin API and metrics on
// adminLn, until ctx ends.
func run(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error {
	opt, stopEmbedded, err := redisOptions(log) // REDIS_URL, or an embedded Redis
	if err != nil {
		return err
	}
	defer stopEmbedded()
	opt.ContextTimeoutEnabled = true // required: the cache's deadlines reach the socket
	opt.DialerRetries = 1            // required: a dead Redis fails at once
	opt.MaxRetries = -1              // no retries: an error sends the request to the origin
	opt.DialTimeout = 200 * time.Millisecond
	client := redis.NewClient(opt)
	defer client.Close()
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
	})).Get("/slow/{id}", slowOrigin(300*time.Millisecond))
	// Everything about one user lives in one bucket, so it can be purged at
	// once; the page query parameter is part of the key, others are not.
	r.With(cache.MustRoute("/users/{id}/posts", policy.Policy{
		TTL:          time.Minute,
		StaleIfError: 10 * time.Minute,
		QueryParams:  []string{"page"},
		// Tagged "user-<id>" so that a purge of the tag drops it too.
		Tags: func(r *http.Request) []string { return []string{"user-" + r.PathValue("id")} },
	})).Get("/users/{id}/posts", slowOrigin(100*time.Millisecond))
	// Catalogue answers are JSON documents of one shape: compressed with
	// a dictionary trained from the route's own responses (and shared
	// through Redis), each takes far less Redis memory than gzipped.
	r.With(cache.MustRoute("/products/{id}", policy.Policy{
		TTL:         10 * time.Minute,
		Compression: policy.CompressDictionary,
	})).Get("/products/{id}", productOrigin())
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// A policy file naming a route declared nowhere is a start-up error.
	if err := cache.VerifyRoutes(); err != nil {
		return err
	}

	// The admin API (purge, inspect, stats, doctor; its page at /admin/)
	// and the metrics, on an internal port.
	adminAPI, err := cache.AdminHandler(
		httpcache.WithAdminToken("operator", env("ADMIN_TOKEN", defaultAdminToken)),
		httpcache.WithAdminLogger(log))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(promcache.NewCollector(cache, ""))
	admin := http.NewServeMux()
	admin.Handle("/admin/", adminAPI)
	admin.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	log.Info("example listening", "url", "http://"+ln.Addr().String()+"/slow/1", "admin", "http://"+adminLn.Addr().String()+"/admin/")
	return serve(ctx, cache, ln, r, adminLn, admin)
}
