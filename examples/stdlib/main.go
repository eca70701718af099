// Command stdlib is the same service as examples/chi with net/http's
// ServeMux alone (Go 1.22 patterns).
//
//	go run ./examples/stdlib
//	curl -si localhost:8081/slow/1   # twice: a miss, then a hit
//
// ADDR sets the listen address (default 127.0.0.1:8081); REDIS_URL a real
// Redis instead of the embedded one.
package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/examplekit"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

func main() {
	examplekit.Main("127.0.0.1:8081", "127.0.0.1:9091", run)
}

// run serves the example on ln, and the cache's admin API and metrics on
// adminLn, until ctx ends.
func run(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error {
	client, release, err := examplekit.Redis(log)
	if err != nil {
		return err
	}
	defer release()
	store, err := redisstore.New(client, redisstore.WithPrefix("example-stdlib"))
	if err != nil {
		return err
	}
	defer store.Close()
	cache, err := httpcache.New(store, httpcache.WithLogger(log))
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	// The pattern is given twice: to the mux, and to the cache, which keys
	// and validates the policy by it.
	const slow = "GET /slow/{id}"
	mux.Handle(slow, cache.Handler(slow, policy.Policy{
		TTL:                  30 * time.Second,
		StaleWhileRevalidate: time.Minute,
	}, examplekit.SlowOrigin(300*time.Millisecond)))

	admin, err := examplekit.Admin(cache, log)
	if err != nil {
		return err
	}
	log.Info("example listening", "url", "http://"+ln.Addr().String()+"/slow/1", "admin", "http://"+adminLn.Addr().String()+"/admin/")
	return examplekit.Serve(ctx, map[net.Listener]http.Handler{ln: mux, adminLn: admin}, cache)
}
