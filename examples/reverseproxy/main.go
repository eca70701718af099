// Command reverseproxy is a caching reverse proxy: httputil.ReverseProxy
// wrapped by the cache in standards mode, so that it caches any HTTP
// service as RFC 9111 says a shared cache does, from the headers the
// service sends (Cache-Control, Expires, Vary, validators, ...).
//
//	make run-proxy                       # a demo upstream, embedded Redis
//	curl -si localhost:8082/time         # twice: a miss, then a hit
//	UPSTREAM=http://127.0.0.1:8000 make run-proxy
//
// UPSTREAM is the service proxied (default: a small demo service started
// in-process); ADDR the listen address (default 127.0.0.1:8082);
// REDIS_URL a real Redis instead of the embedded one. HONOR_REQUEST_CC=1
// honours the clients' Cache-Control request directives (no-cache,
// max-age, min-fresh, only-if-cached); leave it off when the clients are
// not trusted. With ADMIN_TOKEN set (16 characters or more), the admin
// API (purge, inspect, stats) listens on ADMIN_ADDR (default
// 127.0.0.1:9092) behind that bearer token.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, config{
		addr:           env("ADDR", "127.0.0.1:8082"),
		upstream:       os.Getenv("UPSTREAM"),
		redisURL:       os.Getenv("REDIS_URL"),
		honorRequestCC: os.Getenv("HONOR_REQUEST_CC") == "1",
		adminAddr:      env("ADMIN_ADDR", "127.0.0.1:9092"),
		adminToken:     os.Getenv("ADMIN_TOKEN"),
	}, log); err != nil {
		log.Error("proxy stopped", "err", err)
		os.Exit(1)
	}
}

// config is what the environment sets.
type config struct {
	addr, upstream, redisURL string
	honorRequestCC           bool
	adminAddr, adminToken    string
}

// run serves the caching proxy until ctx ends. ready, when set, gets the
// proxy's address once it listens (tests use it).
func run(ctx context.Context, cfg config, log *slog.Logger, ready ...func(addr string)) error {
	if cfg.adminToken != "" && len(cfg.adminToken) < 16 {
		return errors.New("ADMIN_TOKEN must be 16 characters or more")
	}
	target := cfg.upstream
	if target == "" {
		demo := httptest.NewServer(demoUpstream())
		defer demo.Close()
		target = demo.URL
		log.Info("proxying a demo upstream (set UPSTREAM to proxy your service)", "upstream", target)
	}
	up, err := url.Parse(target)
	if err != nil || up.Scheme == "" || up.Host == "" {
		return fmt.Errorf("UPSTREAM %q: want an absolute http(s) URL", target)
	}

	client, stopRedis, err := redisClient(cfg.redisURL, log)
	if err != nil {
		return err
	}
	defer stopRedis()
	store, err := redisstore.New(client, redisstore.WithPrefix("example-proxy"))
	if err != nil {
		return err
	}
	defer store.Close()
	opts := []httpcache.Option{httpcache.WithLogger(log)}
	if cfg.redisURL == "" {
		// The embedded Redis runs in this process: a store call that
		// takes long is this process busy, not Redis failing.
		opts = append(opts, httpcache.WithStoreTimeout(time.Second))
	}
	cache, err := httpcache.New(store, opts...)
	if err != nil {
		return err
	}

	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			r.SetXForwarded()
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// An unreachable upstream answers 502, which a stored response
		// with stale-if-error covers (RFC 5861).
	}
	// One route for every path: the path is the bucket, so a purge of a
	// URL drops every variant of it. Standards mode: the upstream's own
	// headers decide what is stored and for how long, within MaxTTL.
	const all = "/{path...}"
	mux := http.NewServeMux()
	mux.Handle(all, cache.Handler(all, policy.Policy{
		Standards:                true,
		HonorRequestCacheControl: cfg.honorRequestCC,
		MaxTTL:                   24 * time.Hour,
	}, proxy))

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	servers := []*http.Server{{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	listeners := []net.Listener{ln}
	if cfg.adminToken != "" {
		admin, err := cache.AdminHandler(httpcache.WithAdminToken("operator", cfg.adminToken), httpcache.WithAdminLogger(log))
		if err != nil {
			ln.Close()
			return err
		}
		adminLn, err := net.Listen("tcp", cfg.adminAddr)
		if err != nil {
			ln.Close()
			return err
		}
		adminMux := http.NewServeMux()
		adminMux.Handle("/admin/", admin)
		servers = append(servers, &http.Server{Handler: adminMux, ReadHeaderTimeout: 5 * time.Second})
		listeners = append(listeners, adminLn)
		log.Info("admin API listening", "url", "http://"+adminLn.Addr().String()+"/admin/")
	}
	log.Info("caching proxy listening", "url", "http://"+ln.Addr().String()+"/", "upstream", up.String())
	for _, f := range ready {
		f(ln.Addr().String())
	}

	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	errs := []error{err}
	for _, srv := range servers {
		errs = append(errs, srv.Shutdown(sctx))
	}
	errs = append(errs, cache.Close(sctx))
	return errors.Join(errs...)
}

// redisClient returns a client of REDIS_URL or, when it is empty, of an
// embedded miniredis, and a func that closes both.
func redisClient(redisURL string, log *slog.Logger) (*redis.Client, func(), error) {
	var opt *redis.Options
	stop := func() {}
	if redisURL != "" {
		o, err := redis.ParseURL(redisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opt = o
	} else {
		m, err := miniredis.Run()
		if err != nil {
			return nil, nil, err
		}
		m.ClockTTL(true) // expire keys on the wall clock, as Redis does
		log.Info("using an embedded miniredis (set REDIS_URL to use a real Redis)", "addr", m.Addr())
		opt, stop = &redis.Options{Addr: m.Addr()}, m.Close
	}
	opt.ContextTimeoutEnabled = true // required: the cache's deadlines reach the socket
	opt.DialerRetries = 1            // required: a dead Redis fails at once
	opt.MaxRetries = -1              // no retries: an error sends the request upstream
	opt.DialTimeout = 200 * time.Millisecond
	client := redis.NewClient(opt)
	return client, func() { client.Close(); stop() }, nil
}

// demoUpstream is a service that says how its answers may be cached:
// /time is fresh for 10 seconds and then served stale for 30 more while
// it is refreshed; /lang varies on Accept-Language; /private is never
// stored by a shared cache.
func demoUpstream() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /time", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // a slow backend
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=30")
		fmt.Fprintf(w, "generated at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	})
	mux.HandleFunc("GET /lang", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "answer for %q at %s\n", r.Header.Get("Accept-Language"), time.Now().UTC().Format(time.RFC3339Nano))
	})
	mux.HandleFunc("GET /private", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprintf(w, "yours alone, at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	})
	return mux
}

// env returns the environment variable name, or def when it is unset.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
