package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
)

// Load and bounds of TestFailFastRedisDown.
const (
	failFastDelay    = 20 * time.Millisecond // the origin's own time per response
	failFastRequests = 1000
	failFastWorkers  = 16
	failFastKeys     = 50
	// failFastMargin is what the cache may add to the origin's p99: the
	// failed dials and the breaker, under the race detector on a loaded
	// two-core machine. A client that retries its dials adds about 100ms.
	failFastMargin = 15 * time.Millisecond
	// failFastAttempts is how many times the measurement is made, each
	// time on a fresh service, before the test fails: the machine is
	// shared, and one stall of the process during a run delays every
	// request in flight, more than the 1% that p99 lets through. A quiet
	// machine needs one attempt; a client that retries its dials fails
	// every attempt, since its first requests pay the cache's whole
	// 100ms deadline, over any limit an attempt that counts can have.
	failFastAttempts = 8
	// failFastBusy is the origin's p99 past which an attempt is not
	// trusted: its limit would let a client that retries its dials pass.
	failFastBusy = failFastDelay + 4*failFastMargin
)

// TestFailFastRedisDown checks that a Redis that is gone costs requests
// nothing measurable with the client settings the README recommends (and
// redisstore.New requires): a service whose redis-server was killed
// before its first request serves every request from the origin, and its
// p99 stays within a few ms of the origin's own.
//
// The dial settings decide it: with go-redis's default DialerRetries (5
// dials, 100ms apart) each store call made while Redis is down sleeps out
// the cache's whole per-call deadline (100ms) before the request goes to
// the origin, and the p99 of this load is then about 125ms against the
// origin's 21ms.
func TestFailFastRedisDown(t *testing.T) {
	quietRedisLog(t)
	srv := startServer(t)
	origin := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		k, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || k < 0 || k >= failFastKeys {
			http.NotFound(w, r)
			return
		}
		time.Sleep(failFastDelay)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(faultBody(k, 0)))
	}}
	mux := http.NewServeMux()
	mux.Handle(faultPattern, origin)
	direct := httptest.NewServer(mux)
	t.Cleanup(direct.Close)
	hc := httpClient()
	t.Cleanup(hc.CloseIdleConnections)

	var last string
	for attempt := 1; attempt <= failFastAttempts; attempt++ {
		// A fresh service each time: a client that retries its dials
		// pays for them while its pool has not yet given up dialing,
		// and the breaker starts closed.
		a := failFastApp(t, srv, origin)
		alone := failFastRun(hc, direct.URL)
		failFastLog(t, "origin alone", alone)
		if alone.bad > 0 {
			t.Fatalf("origin alone: %d bad responses, first: %s", alone.bad, alone.firstBad)
		}

		// Redis goes away before the service's first request.
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		calls := origin.calls.Load()
		cached := failFastRun(hc, a.URL)
		failFastLog(t, "cached, Redis killed", cached)
		st := a.Cache.Stats()
		t.Logf("cache counters: hits=%d misses=%d bypassed=%d stored=%d store_errors=%d; origin calls=%d",
			st.Hits, st.Misses, st.Bypassed, st.Stored, st.StoreErrors, origin.calls.Load()-calls)
		if cached.n != failFastRequests || cached.bad > 0 {
			t.Fatalf("%d of %d responses were not 200 with the origin's body; first: %s", cached.bad, cached.n, cached.firstBad)
		}
		if got := origin.calls.Load() - calls; got != failFastRequests {
			t.Fatalf("origin calls with Redis down = %d, want %d (one per request)", got, failFastRequests)
		}

		switch limit := alone.p99 + failFastMargin; {
		case alone.p99 > failFastBusy:
			last = fmt.Sprintf("the origin alone had a p99 of %v, over %v: the machine was too busy to measure", alone.p99, failFastBusy)
		case cached.p99 > limit:
			last = fmt.Sprintf("p99 with Redis down = %v, want at most the origin's own p99 %v plus %v", cached.p99, alone.p99, failFastMargin)
		default:
			return
		}
		t.Logf("attempt %d: %s; again on a fresh service", attempt, last)
	}
	t.Fatalf("%s (%d attempts)", last, failFastAttempts)
}

// failFastApp starts a service on srv whose route "GET /items/{id}" is
// cached, with the client settings of the README's "Use it".
func failFastApp(t *testing.T, srv *redistest.Server, origin http.Handler) *app {
	t.Helper()
	client := srv.Client(func(o *redis.Options) {
		o.ContextTimeoutEnabled = true
		o.DialerRetries = 1
		o.MaxRetries = -1
		o.DialTimeout = 200 * time.Millisecond
	})
	return startApp(t, appConfig{
		client: client,
		prefix: prefix(t),
		routes: []route{{faultPattern, policy.Policy{TTL: time.Minute}, origin}},
	})
}

// failFastRun sends failFastRequests GETs to base, failFastWorkers at a
// time, cycling over the keys, and summarizes them.
func failFastRun(hc *http.Client, base string) faultSummary {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		samples []faultSample
		wg      sync.WaitGroup
	)
	for range failFastWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= failFastRequests {
					return
				}
				k := int(i % failFastKeys)
				s := faultSample{key: k, app: -1, start: time.Now()}
				r := request(hc, "GET", base+"/items/"+strconv.Itoa(k), "Host", serviceHost)
				s.end = time.Now()
				s.code = r.status
				switch want := faultBody(k, 0); {
				case r.err != nil:
					s.detail = r.err.Error()
				case r.status != http.StatusOK:
					s.detail = "status " + strconv.Itoa(r.status) + ", Cache-Status " + strconv.Quote(r.cacheStatus())
				case r.body != want:
					s.detail = "wrong body " + strconv.Quote(r.body) + ", want " + strconv.Quote(want)
				default:
					s.ok = true
				}
				if r.header != nil {
					s.status = r.cacheStatus()
				}
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return faultSummarize(samples)
}

func failFastLog(t *testing.T, what string, s faultSummary) {
	t.Helper()
	t.Logf("%s (origin %v per response), %d GETs at concurrency %d: p50=%v p99=%v max=%v",
		what, failFastDelay, s.n, failFastWorkers,
		s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.max.Round(10*time.Microsecond))
}
