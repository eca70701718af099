// Command stdlib is the example service with net/http's ServeMux alone
// (Go 1.22 patterns) and one route. Copy this file into a module of your
// own to start from it; examples/chi shows more routes and policy files.
//
//	make run-stdlib                  # embedded Redis, no setup
//	curl -si localhost:8081/slow/1   # twice: a miss, then a hit
//
// ADDR sets the listen address (default 127.0.0.1:8081); REDIS_URL a real
// Redis instead of the embedded one. The admin API and Prometheus metrics
// are on ADMIN_ADDR (default 127.0.0.1:9091), behind the bearer token
// ADMIN_TOKEN (default example-admin-token-change-me, which is refused on
// any address but a loopback one).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
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
	ln, adminLn, err := listen(env("ADDR", "127.0.0.1:8081"), env("ADMIN_ADDR", "127.0.0.1:9091"), os.Getenv("ADMIN_TOKEN"))
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
	}, slowOrigin(300*time.Millisecond)))

	// The admin API (purge, inspect, stats, doctor; its page at /admin/)
	// and the metrics, on an internal port.
	adminAPI, err := cache.AdminHandler(httpcache.WithAdminToken("operator", env("ADMIN_TOKEN", defaultAdminToken)), httpcache.WithAdminLogger(log))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(promcache.NewCollector(cache, ""))
	admin := http.NewServeMux()
	admin.Handle("/admin/", adminAPI)
	admin.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	log.Info("example listening", "url", "http://"+ln.Addr().String()+"/slow/1", "admin", "http://"+adminLn.Addr().String()+"/admin/")
	return serve(ctx, cache, ln, mux, adminLn, admin)
}

// redisOptions returns the options of a client for REDIS_URL or, when it
// is unset, for an embedded miniredis, and a func that stops that one.
func redisOptions(log *slog.Logger) (*redis.Options, func(), error) {
	if url := os.Getenv("REDIS_URL"); url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		return opt, func() {}, nil
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, nil, err
	}
	m.ClockTTL(true) // expire keys on the wall clock, as Redis does
	log.Info("using an embedded miniredis (set REDIS_URL to use a real Redis)", "addr", m.Addr())
	return &redis.Options{Addr: m.Addr()}, m.Close, nil
}

// slowOrigin answers after delay, like a handler that queries a slow
// database.
func slowOrigin(delay time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%s,"generated_at":%q}`+"\n", strconv.Quote(r.PathValue("id")), time.Now().UTC().Format(time.RFC3339Nano))
	}
}

// defaultAdminToken is public: listen refuses it beyond loopback.
const defaultAdminToken = "example-admin-token-change-me"

// listen opens the service's and the admin API's listeners, once
// checkAdminToken accepts the admin address and token.
func listen(addr, adminAddr, adminToken string) (ln, adminLn net.Listener, err error) {
	if err := checkAdminToken(adminAddr, adminToken); err != nil {
		return nil, nil, err
	}
	if ln, err = net.Listen("tcp", addr); err != nil {
		return nil, nil, err
	}
	if adminLn, err = net.Listen("tcp", adminAddr); err != nil {
		ln.Close()
		return nil, nil, err
	}
	return ln, adminLn, nil
}

// checkAdminToken refuses the default token (token empty or
// defaultAdminToken) unless addr's host is localhost or a loopback IP.
func checkAdminToken(addr, token string) error {
	if token != "" && token != defaultAdminToken {
		return nil
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); strings.EqualFold(host, "localhost") || (err == nil && ip.Unmap().IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("the admin API would listen on %q, which is not a loopback address, "+
		"with the public default token: set ADMIN_TOKEN to a secret of 16 characters or more", addr)
}

// serve serves h on ln and admin on adminLn until ctx ends or a server
// fails, then shuts both down and closes the cache.
func serve(ctx context.Context, cache *httpcache.Cache, ln net.Listener, h http.Handler, adminLn net.Listener, admin http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(ctx), adminSrv.Shutdown(ctx), cache.Close(ctx))
}

// env returns the environment variable name, or def when it is unset.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
