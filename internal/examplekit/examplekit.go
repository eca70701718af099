// Package examplekit holds what the runnable examples share: a Redis client
// that needs no setup (an embedded miniredis unless REDIS_URL is set) and
// the slow origin handler that shows what the cache saves.
package examplekit

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
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
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
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

// Env returns the environment variable name, or def when it is unset.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
