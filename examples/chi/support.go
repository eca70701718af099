package main

// What the example needs besides the cache: a Redis to run against, the
// demo origins, and serving with a graceful shutdown.

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
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
)

// redisOptions returns the options of a client for REDIS_URL (for example
// redis://127.0.0.1:6379/0) or, when it is unset, for an embedded
// in-process miniredis, and a func that stops the embedded one.
func redisOptions(log *slog.Logger) (*redis.Options, func(), error) {
	if url := os.Getenv("REDIS_URL"); url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		log.Info("using Redis", "addr", opt.Addr)
		return opt, func() {}, nil
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("embedded redis: %w", err)
	}
	// Let TTLs run on the wall clock, as on a real server: without it
	// miniredis never expires buckets or abandoned fill locks.
	m.ClockTTL(true)
	log.Info("using an embedded miniredis (set REDIS_URL to use a real Redis)", "addr", m.Addr())
	return &redis.Options{Addr: m.Addr()}, m.Close, nil
}

// slowOrigin answers after delay, like a handler that queries a slow
// database, with a JSON body naming the path value id.
func slowOrigin(delay time.Duration) http.HandlerFunc {
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

// productOrigin answers /products/{id} with a JSON product of about 1 KB:
// the same keys and vocabulary for every product, values of its own, as a
// catalogue API answers: the kind of route that dictionary compression
// suits.
func productOrigin() http.HandlerFunc {
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

// defaultAdminToken is the admin API's token when ADMIN_TOKEN is unset.
// It is public, so it is only acceptable on a loopback address.
const defaultAdminToken = "example-admin-token-change-me"

// listen opens the service's and the admin API's listeners, after
// checking that the admin API does not serve the default token beyond
// loopback; on error it leaves nothing listening.
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

// checkAdminToken returns an error when the admin API would listen on
// addr with the public default token (token, the value of ADMIN_TOKEN, is
// empty or defaultAdminToken) and addr is not a loopback address: its host
// is neither "localhost" nor an IP address in 127.0.0.0/8 or ::1. An
// empty host, as in ":9090", listens on every interface, and another host
// name may resolve to anything.
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
		"with the public default token %q: set ADMIN_TOKEN to a secret of 16 characters or more, "+
		"or ADMIN_ADDR to a loopback address such as 127.0.0.1:9090", addr, defaultAdminToken)
}

// serve serves h on ln and admin on adminLn until ctx ends or a server
// fails, then shuts both servers down and closes the cache, which waits
// for its background refreshes.
func serve(ctx context.Context, cache *httpcache.Cache, ln net.Listener, h http.Handler, adminLn net.Listener, admin http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	var err error
	select {
	case err = <-errc: // a server failed
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
