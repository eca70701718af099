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
// unset. It is public, so it is only acceptable on a loopback address:
// [Main] refuses to start with it when ADMIN_ADDR is any other address.
const DefaultAdminToken = "example-admin-token-change-me"

// checkAdminToken returns an error when the admin API would listen on
// addr, which is not a loopback address, with the public default token:
// token (the value of ADMIN_TOKEN) is empty or [DefaultAdminToken].
func checkAdminToken(addr, token string) error {
	if token != "" && token != DefaultAdminToken {
		return nil
	}
	if isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("examplekit: the admin API would listen on %q, which is not a loopback address, "+
		"with the public default token %q: set ADMIN_TOKEN to a secret of 16 characters or more, "+
		"or ADMIN_ADDR to a loopback address such as 127.0.0.1:9090", addr, DefaultAdminToken)
}

// isLoopback reports whether the listen address addr (host:port) only
// listens on loopback: its host is "localhost" or an IP address in
// 127.0.0.0/8 or ::1. An empty host, as in ":9090", listens on every
// interface, and a host name other than localhost may resolve to anything.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Admin returns the admin API of cache under /admin/ and Prometheus metrics
// under /metrics, the way a service mounts them on an internal port.
func Admin(cache *httpcache.Cache, log *slog.Logger) (http.Handler, error) {
	admin, err := cache.AdminHandler(
		httpcache.WithAdminToken("operator", Env("ADMIN_TOKEN", DefaultAdminToken)),
		httpcache.WithAdminLogger(log))
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
// failure. It refuses to start when ADMIN_ADDR is not a loopback address
// and ADMIN_TOKEN is unset or [DefaultAdminToken].
func Main(addr, adminAddr string, run func(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := func() error {
		ln, adminLn, err := listen(Env("ADDR", addr), Env("ADMIN_ADDR", adminAddr), os.Getenv("ADMIN_TOKEN"))
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

// listen opens the service's and the admin API's listeners, after
// checking that the admin API does not serve the default token beyond
// loopback; on error it leaves nothing listening.
func listen(addr, adminAddr, adminToken string) (ln, adminLn net.Listener, err error) {
	if err := checkAdminToken(adminAddr, adminToken); err != nil {
		return nil, nil, err
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	adminLn, err = net.Listen("tcp", adminAddr)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	return ln, adminLn, nil
}
