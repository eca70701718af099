package integration

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
)

// outageClient returns a client of srv configured the way a service using
// readthrough should configure its own, so that a Redis outage costs a
// request no more than the cache's per-call deadline
// ([httpcache.WithStoreTimeout], 100ms by default) and, once the circuit
// is open, nothing at all:
//
//   - ContextTimeoutEnabled: without it go-redis ignores context deadlines
//     on socket reads and writes, so a paused or unreachable Redis holds
//     every call for ReadTimeout however short the cache's deadline is.
//   - ReadTimeout and WriteTimeout 200ms: the bound of calls made without
//     a deadline (the default, 5s, is what each such call would wait).
//   - DialTimeout 100ms: connecting to a host that drops packets fails
//     fast instead of after 5s.
//   - MaxRetries -1, no retries (0 means the default, 3, with backoff up
//     to a second): the cache goes to the origin on an error, and the
//     breaker decides when to try Redis again.
//   - PoolTimeout 100ms: when every pooled connection is stuck on a paused
//     server, a call must not queue for ReadTimeout plus a second.
//   - DialerRetries 1 (redisstore.New requires it): go-redis dials 5
//     times, 100ms apart, by default, so while Redis is down each call
//     would sleep out the cache's deadline in those pauses, and the fill
//     subscription, which reconnects without a deadline, would spend that
//     long per attempt.
func outageClient(srv *redistest.Server) redis.UniversalClient {
	return srv.Client(func(o *redis.Options) {
		o.ContextTimeoutEnabled = true
		o.ReadTimeout = 200 * time.Millisecond
		o.WriteTimeout = 200 * time.Millisecond
		o.DialTimeout = 100 * time.Millisecond
		o.MaxRetries = -1
		o.PoolTimeout = 100 * time.Millisecond
		o.DialerRetries = 1
	})
}

// faultConfig describes one fault test's service.
type faultConfig struct {
	serverArgs []string           // extra redis-server arguments
	delay      time.Duration      // the origin's own time per response
	keys       int                // number of distinct URLs
	bodySize   int                // bytes of incompressible padding per body; 0 for a short body
	body       func(k int) string // the body of key k, instead of faultBody's
	policy     policy.Policy
	opts       []httpcache.Option
}

// faultRig is one fault test: a redis-server of its own, two instances of
// a service whose route "GET /items/{id}" is cached, and the same origin
// served alone for a baseline.
type faultRig struct {
	cfg    faultConfig
	srv    *redistest.Server
	apps   []*app
	origin *counter
	direct string // URL of the origin without the cache
	bodies []string
	http   *http.Client
}

const faultPattern = "GET /items/{id}"

func newFaultRig(t *testing.T, cfg faultConfig) *faultRig {
	t.Helper()
	quietRedisLog(t)
	srv := startServer(t, cfg.serverArgs...)
	return buildFaultRig(t, cfg, srv, func() redis.UniversalClient { return outageClient(srv) })
}

// buildFaultRig starts the two instances on clients from mkClient, and the
// origin alone for the baseline, over a Redis the caller started.
func buildFaultRig(t *testing.T, cfg faultConfig, srv *redistest.Server, mkClient func() redis.UniversalClient) *faultRig {
	t.Helper()
	rig := &faultRig{cfg: cfg, srv: srv, bodies: make([]string, cfg.keys)}
	for k := range rig.bodies {
		if cfg.body != nil {
			rig.bodies[k] = cfg.body(k)
		} else {
			rig.bodies[k] = faultBody(k, cfg.bodySize)
		}
	}
	rig.origin = &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		k, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || k < 0 || k >= len(rig.bodies) {
			http.NotFound(w, r)
			return
		}
		time.Sleep(cfg.delay)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(rig.bodies[k]))
	}}
	rig.apps = startApps(t, 2, appConfig{
		prefix: prefix(t),
		opts:   cfg.opts,
		routes: []route{{faultPattern, cfg.policy, rig.origin}},
	}, mkClient)
	mux := http.NewServeMux()
	mux.Handle(faultPattern, rig.origin)
	direct := httptest.NewServer(mux)
	t.Cleanup(direct.Close)
	rig.direct = direct.URL
	rig.http = httpClient()
	t.Cleanup(rig.http.CloseIdleConnections)
	return rig
}

// faultBody is the body of key k: its name and, when size > 0, size bytes
// of random base64 that compression cannot shrink much.
func faultBody(k, size int) string {
	b := fmt.Sprintf("item %d\n", k)
	if size > 0 {
		r := rand.New(rand.NewPCG(uint64(k), 42))
		raw := make([]byte, size*3/4)
		for i := range raw {
			raw[i] = byte(r.Uint32())
		}
		b += base64.StdEncoding.EncodeToString(raw)
	}
	return b
}

// faultSample is one request of a load.
type faultSample struct {
	start, end time.Time
	key        int
	code       int
	ok         bool   // 200 with the origin's body
	hit        bool   // served from the cache
	bypass     bool   // sent past the cache because its circuit is open
	app        int    // index of the app, -1 for the origin alone
	status     string // Cache-Status
	detail     string // what went wrong, when !ok
}

func (s faultSample) latency() time.Duration { return s.end.Sub(s.start) }

// faultLoad is a closed-loop load generator: workers each send a request,
// wait for the whole response, pause for the think time and go on, until
// stopped or max requests have been sent.
type faultLoad struct {
	rig  *faultRig
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	sent atomic.Int64

	mu      sync.Mutex
	samples []faultSample
}

type faultLoadConfig struct {
	workers int
	think   time.Duration // pause between a worker's requests
	max     int64         // requests at most
	direct  bool          // to the origin alone instead of the apps
	// pick chooses the next key; default uniform over the rig's keys.
	pick func(r *rand.Rand) int
}

func (rig *faultRig) startLoad(t *testing.T, cfg faultLoadConfig) *faultLoad {
	l := &faultLoad{rig: rig, stop: make(chan struct{})}
	if cfg.pick == nil {
		cfg.pick = func(r *rand.Rand) int { return r.IntN(rig.cfg.keys) }
	}
	for w := range cfg.workers {
		l.wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if l.sent.Add(1) > cfg.max {
					return
				}
				a, base := -1, rig.direct
				if !cfg.direct {
					a = (w + i) % len(rig.apps)
					base = rig.apps[a].URL
				}
				s := l.one(base, cfg.pick(r))
				s.app = a
				l.record(s)
				if cfg.think > 0 {
					time.Sleep(cfg.think)
				}
			}
		})
	}
	t.Cleanup(l.halt) // before the apps close: no request outlives the test
	return l
}

func (l *faultLoad) one(base string, k int) faultSample {
	s := faultSample{key: k, start: time.Now()}
	r := request(l.rig.http, "GET", base+"/items/"+strconv.Itoa(k), "Host", serviceHost)
	s.end = time.Now()
	s.code = r.status
	switch {
	case r.err != nil:
		s.detail = r.err.Error()
	case r.status != http.StatusOK:
		s.detail = fmt.Sprintf("status %d, Cache-Status %q, body %.100q", r.status, r.cacheStatus(), r.body)
	case r.body != l.rig.bodies[k]:
		s.detail = fmt.Sprintf("wrong body (%d bytes, want %d), Cache-Status %q", len(r.body), len(l.rig.bodies[k]), r.cacheStatus())
	default:
		s.ok = true
	}
	if r.header != nil {
		cs := r.cacheStatus()
		s.status = cs
		s.hit = strings.Contains(cs, "; hit")
		s.bypass = strings.Contains(cs, "detail=store-unavailable")
	}
	return s
}

func (l *faultLoad) record(s faultSample) {
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
}

// halt stops the load and waits for its requests to finish. It is
// idempotent.
func (l *faultLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// all returns the samples so far, ordered by the end of their request.
func (l *faultLoad) all() []faultSample {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	l.mu.Unlock()
	slices.SortFunc(s, func(a, b faultSample) int { return a.end.Compare(b.end) })
	return s
}

// faultBetween returns the samples whose request started in [from, to).
func faultBetween(s []faultSample, from, to time.Time) []faultSample {
	var out []faultSample
	for _, x := range s {
		if !x.start.Before(from) && x.start.Before(to) {
			out = append(out, x)
		}
	}
	return out
}

// faultHitWindow returns the end of the first window of n consecutive responses
// to requests started at or after from of which at least ratio were hits.
func faultHitWindow(s []faultSample, from time.Time, n int, ratio float64) (time.Time, bool) {
	var w []faultSample
	for _, x := range s {
		if !x.start.Before(from) {
			w = append(w, x)
		}
	}
	hits := 0
	for i, x := range w {
		if x.hit {
			hits++
		}
		if i >= n && w[i-n].hit {
			hits--
		}
		if i >= n-1 && float64(hits) >= ratio*float64(n) {
			return x.end, true
		}
	}
	return time.Time{}, false
}

// faultRecoveryWindow is the number of consecutive responses whose hit ratio
// says the cache is back.
const faultRecoveryWindow = 100

// awaitHits waits, up to limit, until faultRecoveryWindow consecutive responses
// to requests started at or after from were at least ratio hits, and
// returns how long after from that was.
func (l *faultLoad) awaitHits(from time.Time, ratio float64, limit time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(limit)
	for {
		if end, ok := faultHitWindow(l.all(), from, faultRecoveryWindow, ratio); ok {
			return end.Sub(from), true
		}
		if time.Now().After(deadline) {
			return limit, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faultSummary describes a set of samples.
type faultSummary struct {
	n, bad, hits, bypass int
	slow                 int // over 100ms, the store timeout
	p50, p99, max        time.Duration
	firstBad             string
}

func faultSummarize(s []faultSample) faultSummary {
	var sum faultSummary
	lat := make([]time.Duration, 0, len(s))
	for _, x := range s {
		sum.n++
		if !x.ok {
			if sum.bad == 0 {
				sum.firstBad = x.detail
			}
			sum.bad++
		}
		if x.hit {
			sum.hits++
		}
		if x.bypass {
			sum.bypass++
		}
		if x.latency() > 100*time.Millisecond {
			sum.slow++
		}
		lat = append(lat, x.latency())
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		sum.p50 = lat[len(lat)/2]
		sum.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		sum.max = lat[len(lat)-1]
	}
	return sum
}

func (s faultSummary) String() string {
	hr := 0.0
	if s.n > 0 {
		hr = 100 * float64(s.hits) / float64(s.n)
	}
	return fmt.Sprintf("n=%d bad=%d hits=%.0f%% bypassed=%d over100ms=%d p50=%v p99=%v max=%v",
		s.n, s.bad, hr, s.bypass, s.slow, s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.max.Round(10*time.Microsecond))
}

// faultBypassed returns the requests the open circuit sent past the cache.
func faultBypassed(s []faultSample) []faultSample {
	var out []faultSample
	for _, x := range s {
		if x.bypass {
			out = append(out, x)
		}
	}
	return out
}

// faultLoadShape is the load every fault test applies: enough concurrency
// to have requests in flight when the fault strikes, with a think time
// that leaves the two cores some room so latencies measure the cache and
// not the scheduler.
var faultLoadShape = faultLoadConfig{workers: 8, think: time.Millisecond, max: 200_000}

// baseline measures the origin alone under the same load for d.
func (rig *faultRig) baseline(t *testing.T, d time.Duration) faultSummary {
	t.Helper()
	cfg := faultLoadShape
	cfg.direct = true
	l := rig.startLoad(t, cfg)
	time.Sleep(d)
	l.halt()
	sum := faultSummarize(l.all())
	t.Logf("origin alone (%v per response): %v", rig.cfg.delay, sum)
	if sum.bad > 0 {
		t.Fatalf("origin alone: %d bad responses, first: %s", sum.bad, sum.firstBad)
	}
	return sum
}

// faultCheckAll fails the test when any response of the load was not a 200
// with the origin's body, and returns the whole load's summary.
func faultCheckAll(t *testing.T, l *faultLoad) faultSummary {
	t.Helper()
	all := faultSummarize(l.all())
	if all.bad > 0 {
		t.Errorf("%d of %d responses were not 200 with the origin's body; first: %s", all.bad, all.n, all.firstBad)
	}
	return all
}

// stats sums the caches' counters over the rig's apps.
func (rig *faultRig) stats() httpcache.Stats {
	var s httpcache.Stats
	for _, a := range rig.apps {
		s.Add(a.Cache.Stats())
	}
	return s
}

func (rig *faultRig) logStats(t *testing.T) {
	s := rig.stats()
	t.Logf("cache counters (both apps): hits=%d misses=%d collapsed=%d bypassed=%d stored=%d store_errors=%d locks_lost=%d; origin calls=%d",
		s.Hits, s.Misses, s.Collapsed, s.Bypassed, s.Stored, s.StoreErrors, s.LocksLost, rig.origin.calls.Load())
}

// faultRedisInfo returns the integer field of INFO on c, or -1.
func faultRedisInfo(t *testing.T, c redis.UniversalClient, field string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "all").Result()
	if err != nil {
		t.Fatalf("INFO: %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// logSlowest logs the n slowest requests of s, with their start relative
// to ref.
func logSlowest(t *testing.T, s []faultSample, ref time.Time, n int) {
	t.Helper()
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b faultSample) int { return cmp.Compare(b.latency(), a.latency()) })
	for _, x := range s[:min(n, len(s))] {
		t.Logf("  slow: %v, started %+v after the reference, app %d, key %d, Cache-Status %q",
			x.latency().Round(10*time.Microsecond), x.start.Sub(ref).Round(time.Millisecond), x.app, x.key, x.status)
	}
}

// redisLog is go-redis's logger in this package: like its default, except
// that it says nothing while a fault test runs (unless READTHROUGH_LOG is
// set), since those tests make it log every failed dial on purpose.
type redisLog struct{ l *log.Logger }

var (
	redisLogOnce sync.Once
	redisQuiet   atomic.Int32
)

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	if redisQuiet.Load() > 0 && os.Getenv("READTHROUGH_LOG") == "" {
		return
	}
	r.l.Output(3, fmt.Sprintf(format, v...)) // the caller of go-redis's logger
}

// quietRedisLog silences go-redis's log until the test ends.
func quietRedisLog(t *testing.T) {
	redisLogOnce.Do(func() {
		redis.SetLogger(redisLog{log.New(os.Stderr, "redis: ", log.LstdFlags|log.Lshortfile)})
	})
	redisQuiet.Add(1)
	t.Cleanup(func() { redisQuiet.Add(-1) })
}
