// Package examplekit holds what the runnable examples share: a Redis client
// that needs no setup (an embedded miniredis unless REDIS_URL is set) and
// the slow origin handler that shows what the cache saves.
package examplekit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
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
	"github.com/readthrough/readthrough/promcache"
)

// Redis returns a client for REDIS_URL (for example redis://127.0.0.1:6379/0)
// or, when it is unset, for an embedded in-process miniredis, and a func
// that releases it.
func Redis(log *slog.Logger) (redis.UniversalClient, func(), error) {
	if url := os.Getenv("REDIS_URL"); url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		// Deadlines from the cache must reach the socket, and a dead Redis
		// must fail fast rather than be retried with backoff: no command
		// retries, and one dial attempt (redisstore.New requires both
		// ContextTimeoutEnabled and DialerRetries 1).
		opt.ContextTimeoutEnabled = true
		opt.DialerRetries = 1
		opt.MaxRetries = -1
		opt.DialTimeout = 200 * time.Millisecond
		log.Info("using Redis", "addr", opt.Addr)
		c := redis.NewClient(opt)
		return c, func() { c.Close() }, nil
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("embedded redis: %w", err)
	}
	// Let TTLs run on the wall clock, as on a real server: without it
	// miniredis never expires buckets or abandoned fill locks.
	m.ClockTTL(true)
	log.Info("using an embedded miniredis (set REDIS_URL to use a real Redis)", "addr", m.Addr())
	c := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: m.Addr()})
	return c, func() { c.Close(); m.Close() }, nil
}

// SlowOrigin answers after delay, like a handler that queries a slow
// database, with a JSON body naming the path value id.
func SlowOrigin(delay time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%s,"generated_at":%q,"note":"this took %v to compute"}`+"\n",
			strconv.Quote(r.PathValue("id")), time.Now().UTC().Format(time.RFC3339Nano), delay)
	}
}

// ProductOrigin answers /products/{id} with a JSON product of about
// 1 KB: the same keys and vocabulary for every product, values of its
// own, as a catalogue API answers. It stands for the kind of route that
// dictionary compression suits.
func ProductOrigin() http.HandlerFunc {
	colors := []string{"black", "white", "slate", "sand", "navy", "forest green", "terracotta"}
	sizes := []string{"XS", "S", "M", "L", "XL"}
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 0 {
			http.Error(w, "no such product", http.StatusNotFound)
			return
		}
		rnd := rand.New(rand.NewPCG(uint64(id), 1))
		var b strings.Builder
		fmt.Fprintf(&b, `{"id":%d,"name":"Product %d","brand":"Acme","price":{"amount":%d,"currency":"EUR"},"in_stock":true,"variants":[`,
			id, id, 100+rnd.IntN(50000))
		for i := range 12 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"sku":"P%d-%02d","color":%q,"size":%q,"stock":%d,"ean":"%013d"}`,
				id, i, colors[rnd.IntN(len(colors))], sizes[rnd.IntN(len(sizes))], rnd.IntN(300), rnd.Int64N(1e13))
		}
		b.WriteString("]}\n")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, b.String())
	}
}

// Env returns the environment variable name, or def when it is unset.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// DefaultAdminToken is the examples' admin bearer token when ADMIN_TOKEN is
// unset. It is only acceptable because the examples listen on loopback.
const DefaultAdminToken = "example-admin-token-change-me"

// Admin returns the admin API of cache under /admin/ and Prometheus metrics
// under /metrics, the way a service mounts them on an internal port.
func Admin(cache *httpcache.Cache, log *slog.Logger) (http.Handler, error) {
	admin, err := cache.AdminHandler(httpcache.AdminOptions{
		Tokens: map[string]string{"operator": Env("ADMIN_TOKEN", DefaultAdminToken)},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(promcache.NewCollector(cache, ""))
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux, nil
}

// Serve serves each listener's handler until ctx ends or one server fails,
// then shuts every server down and closes the cache.
func Serve(ctx context.Context, handlers map[net.Listener]http.Handler, cache *httpcache.Cache) error {
	errc := make(chan error, len(handlers))
	var servers []*http.Server
	for ln, h := range handlers {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() { errc <- srv.Serve(ln) }()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		err = errors.Join(err, ignoreClosed(srv.Shutdown(shutdown)))
	}
	return errors.Join(err, cache.Close(shutdown))
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Main runs an example's run func until SIGINT or SIGTERM, listening on
// ADDR (default addr) and ADMIN_ADDR (default adminAddr), and exits 1 on
// failure.
func Main(addr, adminAddr string, run func(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := func() error {
		ln, err := net.Listen("tcp", Env("ADDR", addr))
		if err != nil {
			return err
		}
		adminLn, err := net.Listen("tcp", Env("ADMIN_ADDR", adminAddr))
		if err != nil {
			return err
		}
		return run(ctx, ln, adminLn, log)
	}()
	if err != nil {
		log.Error("example stopped", "err", err)
		stop()
		os.Exit(1)
	}
}
