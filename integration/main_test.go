// Package integration tests readthrough against real redis-server processes
// it starts itself, through real net/http servers: a single node shared by
// most tests, dedicated nodes for fault tests, and a three-master cluster.
package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// shared is the redis-server most tests use, each under its own prefix.
var shared *redistest.Server

// newClient returns a new Redis client for one app instance of the backend
// the tests run on: by default a client of shared. TestCluster points it at
// a three-master cluster while its subtests run, and puts it back after.
var newClient = func() redis.UniversalClient { return shared.Client() }

// onCluster is the cluster newClient's clients belong to while TestCluster
// runs its subtests, and nil on the single node.
var onCluster *redistest.Cluster

func TestMain(m *testing.M) {
	if err := redistest.Available(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "integration: redis-server is required in CI:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "integration: skipping, redis-server not installed:", err)
		os.Exit(0)
	}
	var err error
	shared, err = redistest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: start redis-server:", err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

// prefix returns a key prefix of the test's own.
func prefix(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "it" + hex.EncodeToString(b)
}

// app is one instance of a service: its own Redis client, store, cache and
// real HTTP server.
type app struct {
	URL    string
	Cache  *httpcache.Cache
	Store  *redisstore.Store
	Client redis.UniversalClient
	srv    *httptest.Server
}

// route declares one cached route of an app.
type route struct {
	pattern string
	policy  policy.Policy
	handler http.Handler
}

type appConfig struct {
	client redis.UniversalClient // default: newClient()
	prefix string
	opts   []httpcache.Option
	routes []route
	tls    bool // serve HTTPS with HTTP/2 enabled
	// outer, when set, wraps the whole mux (outside the cache).
	outer func(http.Handler) http.Handler
	// listener, when set, wraps the server's listener.
	listener func(net.Listener) net.Listener
	// writes are write routes (httpcache.Cache.Writes) beside the cached
	// routes.
	writes []writeRoute
}

// writeRoute declares one write route of an app.
type writeRoute struct {
	pattern string
	purges  []httpcache.Purge
	handler http.Handler
}

// quiet is the logger of test apps: warnings go to the test log only when
// READTHROUGH_LOG is set, since fault tests provoke many on purpose.
func quiet() *slog.Logger {
	if os.Getenv("READTHROUGH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startApp(t testing.TB, cfg appConfig) *app {
	t.Helper()
	client := cfg.client
	if client == nil {
		client = newClient()
	}
	store, err := redisstore.New(client, redisstore.WithPrefix(cfg.prefix))
	if err != nil {
		t.Fatal(err)
	}
	cache, err := httpcache.New(store, append([]httpcache.Option{httpcache.WithLogger(quiet())}, cfg.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, r := range cfg.routes {
		mw, err := cache.Route(r.pattern, r.policy)
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle(r.pattern, mw(r.handler))
	}
	for _, w := range cfg.writes {
		mw, err := cache.Writes(w.pattern, w.purges...)
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle(w.pattern, mw(w.handler))
	}
	if err := cache.VerifyRoutes(); err != nil {
		t.Fatal(err)
	}
	var h http.Handler = mux
	if cfg.outer != nil {
		h = cfg.outer(mux)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // origin panics under test are expected
	if cfg.listener != nil {
		srv.Listener = cfg.listener(srv.Listener)
	}
	if cfg.tls {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	a := &app{URL: srv.URL, Cache: cache, Store: store, Client: client, srv: srv}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cache.Close(ctx)
		store.Close()
	})
	return a
}

// patient is the store timeout of tests about collapsing, refreshing and
// purging rather than about a slow Redis. On a loaded machine (two cores,
// the race detector, other test processes) a store call now and then takes
// longer than the default 100ms, and such a call sends its request to the
// origin by design (after five in a row the circuit opens, sending all of
// them), which would break their exact counts.
func patient() httpcache.Option { return httpcache.WithStoreTimeout(2 * time.Second) }

// startApps starts n instances of the same service on one prefix, each
// with its own Redis client: made by mkClient, or by newClient when it is
// nil.
func startApps(t testing.TB, n int, cfg appConfig, mkClient func() redis.UniversalClient) []*app {
	apps := make([]*app, n)
	for i := range apps {
		c := cfg
		if mkClient != nil {
			c.client = mkClient()
		}
		apps[i] = startApp(t, c)
	}
	return apps
}

// httpClient is a client with room for many concurrent connections and no
// transparent decompression, so tests see the bytes on the wire.
func httpClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        1000,
			MaxIdleConnsPerHost: 1000,
			DisableCompression:  true,
		},
	}
}

var client = httpClient()

// serviceHost is the Host every instance of a service sees behind its load
// balancer; the cache keys on it, so tests of several instances send it.
const serviceHost = "svc.test"

type resp struct {
	status int
	header http.Header
	body   string
	err    error
}

func (r resp) cacheStatus() string { return r.header.Get("Cache-Status") }
func (r resp) hit() bool           { return strings.Contains(r.cacheStatus(), "; hit") }

func get(url string, headers ...string) resp {
	return request(client, "GET", url, headers...)
}

func request(c *http.Client, method, url string, headers ...string) resp {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return resp{err: err}
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return resp{err: err}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: string(body), err: err}
}

// counter is a counting origin.
type counter struct {
	calls atomic.Int64
	fn    http.HandlerFunc
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.calls.Add(1)
	c.fn(w, r)
}

// scanKeys lists the keys under pattern with SCAN.
func scanKeys(t testing.TB, c redis.UniversalClient, pattern string) []string {
	t.Helper()
	var keys []string
	ctx := context.Background()
	scan := func(ctx context.Context, n *redis.Client) error {
		iter := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return iter.Err()
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		var mu = make(chan struct{}, 1)
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu <- struct{}{}
			defer func() { <-mu }()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, cc)
	}
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// startServer starts a redis-server of the test's own, for tests that
// flush, kill or reconfigure it.
func startServer(t testing.TB, args ...string) *redistest.Server {
	t.Helper()
	return redistest.StartT(t, args...)
}
