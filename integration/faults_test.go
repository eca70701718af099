package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// Fault tests: a redis-server of the test's own fails under a steady load
// sent through real HTTP to two instances of a service, and every response
// must still be the origin's 200 with the origin's body. Each test logs the
// requests sent, the responses the cache broke (the target is none), the
// latency during the fault against the origin's own measured in the same
// test without the cache, and how long the hit ratio took to come back.
// The apps use the cache's defaults: a 100ms deadline per store call, a
// breaker that opens after 5 failures for 1s, and the policy's default
// lock wait (5s). Their Redis clients are set up as outageClient says a
// service's should be. Run with -v to see the figures.

// openCircuitSlack is how much slower than the origin alone a request sent
// past the cache by its open circuit may be at the 99th percentile: the
// middleware's own work plus the noise of two cores shared with Redis, the
// load generator and the race detector.
const openCircuitSlack = 20 * time.Millisecond

// recoveryLimit bounds the time from the end of a fault until 90% of the
// responses are hits again: the breaker's cooldown, reconnecting and
// refilling.
const recoveryLimit = 5 * time.Second

// faultMaxLatency bounds every single request while a fault lasts. The
// requests caught by the fault before the circuit opens, and the probe
// that each instance lets through once per cooldown, are the slow ones:
// today each pays the store timeout up to four times in a row (the read,
// the fill lock, the fence read and the write: ~400ms at the default
// 100ms), since the miss path after a failed read does not consult the
// breaker.
const faultMaxLatency = time.Second

// afterFaultMaxLatency bounds every single request once Redis is back.
// Today a waiter can wait the whole lock wait (policy.DefaultLockWait) when
// the fill notification it waits for was published while its instance's
// subscription was still reconnecting after a restart; it then goes to the
// origin itself. Without that, requests after a fault take milliseconds.
const afterFaultMaxLatency = policy.DefaultLockWait + time.Second

// checkOpenCircuit logs the fault window and checks that requests the
// open circuit sent to the origin cost no more than the origin does.
func checkOpenCircuit(t *testing.T, name string, fault []faultSample, origin faultSummary) {
	t.Helper()
	f := faultSummarize(fault)
	t.Logf("%s: all requests during the fault: %v", name, f)
	open := faultSummarize(faultBypassed(fault))
	t.Logf("%s: circuit open (Cache-Status detail=store-unavailable): %v; origin alone p99=%v",
		name, open, origin.p99.Round(10*time.Microsecond))
	if open.n < 100 {
		t.Fatalf("%s: only %d requests went past an open circuit; the breaker did not open", name, open.n)
	}
	if limit := origin.p99 + openCircuitSlack; open.p99 > limit {
		t.Errorf("%s: p99 with the circuit open = %v, want under the origin's p99 plus %v = %v", name, open.p99, openCircuitSlack, limit)
	}
	checkMaxLatency(t, name+": during the fault", f, faultMaxLatency)
}

func checkMaxLatency(t *testing.T, what string, s faultSummary, limit time.Duration) {
	t.Helper()
	if s.max > limit {
		t.Errorf("%s: slowest request took %v, want under %v", what, s.max, limit)
	}
}

// checkRecovery waits for the hit ratio to come back after the fault ended
// at from.
func checkRecovery(t *testing.T, l *faultLoad, from time.Time) time.Duration {
	t.Helper()
	d, ok := l.awaitHits(from, 0.9, 3*recoveryLimit)
	if !ok {
		t.Errorf("hit ratio not back at 90%% of %d consecutive responses %v after the fault ended", faultRecoveryWindow, d)
		return d
	}
	t.Logf("recovered: %d consecutive responses 90%% hits %v after the fault ended", faultRecoveryWindow, d.Round(time.Millisecond))
	if d > recoveryLimit {
		t.Errorf("hit ratio took %v to recover, want under %v", d, recoveryLimit)
	}
	return d
}

// checkAfter logs and bounds the requests started after the fault ended.
func checkAfter(t *testing.T, all []faultSample, ended time.Time) {
	t.Helper()
	after := faultBetween(all, ended, time.Now())
	s := faultSummarize(after)
	t.Logf("after the fault: %v", s)
	logSlowest(t, after, ended, 3)
	checkMaxLatency(t, "after the fault", s, afterFaultMaxLatency)
}

// warm starts the load and waits until the cache serves it.
func warm(t *testing.T, rig *faultRig) *faultLoad {
	t.Helper()
	l := rig.startLoad(t, faultLoadShape)
	if _, ok := l.awaitHits(time.Now(), 0.9, 10*time.Second); !ok {
		t.Fatal("the cache never warmed up")
	}
	return l
}

// TestFaultRedisKilledAndRestarted: Redis dies (kill -9) under load and
// comes back empty two seconds later.
func TestFaultRedisKilledAndRestarted(t *testing.T) {
	rig := newFaultRig(t, faultConfig{delay: 2 * time.Millisecond, keys: 8, policy: policy.Policy{TTL: time.Minute}})
	origin := rig.baseline(t, 500*time.Millisecond)
	killAndRestart(t, rig, origin, warm(t, rig))
}

// killAndRestart kills the rig's Redis under load l, restarts it empty two
// seconds later, and checks the load: the circuit open while Redis was
// down (against the origin's own figures), hits again after.
func killAndRestart(t *testing.T, rig *faultRig, origin faultSummary, l *faultLoad) {
	t.Helper()
	killed := time.Now()
	if err := rig.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := rig.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	t.Logf("redis down for %v", restarted.Sub(killed).Round(time.Millisecond))
	checkRecovery(t, l, restarted)
	l.halt()

	all := l.all()
	fault := faultBetween(all, killed, restarted)
	checkOpenCircuit(t, "redis killed", fault, origin)
	logSlowest(t, fault, killed, 3)
	checkAfter(t, all, restarted)
	t.Logf("whole load: %v", faultCheckAll(t, l))
	rig.logStats(t)
}

// TestFaultRedisKilledWithDictionary is the same fault on a route with
// dictionary compression: the dictionary reads and checks fail with the
// rest and cost no request more than the store timeout; the instances keep
// the dictionary they share and go on reading each other's entries.
func TestFaultRedisKilledWithDictionary(t *testing.T) {
	rig := newFaultRig(t, faultConfig{delay: 2 * time.Millisecond, keys: 200, body: productDoc,
		policy: policy.Policy{TTL: time.Minute, Compression: policy.CompressDictionary}})
	origin := rig.baseline(t, 500*time.Millisecond)
	l := warm(t, rig)
	// Training runs in the background of the warm-up's fills (each
	// instance may train one; the second to publish adopts the first's).
	for deadline := time.Now().Add(10 * time.Second); rig.stats().DictionariesTrained == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no dictionary trained while warming up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	trained := rig.stats().DictionariesTrained
	killAndRestart(t, rig, origin, l)
	if st := rig.stats(); st.DictionaryMisses != 0 || st.DictionariesTrained != trained {
		t.Errorf("after the restart: %d dictionary misses, %d dictionaries trained; want 0 and still %d", st.DictionaryMisses, st.DictionariesTrained, trained)
	}
}

// TestFaultRedisPaused: Redis stops answering (CLIENT PAUSE ALL) for
// longer than the store timeout, under load, then answers again with its
// data intact.
func TestFaultRedisPaused(t *testing.T) {
	const pause = 1500 * time.Millisecond
	rig := newFaultRig(t, faultConfig{delay: 2 * time.Millisecond, keys: 8, policy: policy.Policy{TTL: time.Minute}})
	origin := rig.baseline(t, 500*time.Millisecond)
	l := warm(t, rig)

	paused := time.Now()
	if err := rig.srv.Pause(pause); err != nil {
		t.Fatal(err)
	}
	resumed := paused.Add(pause)
	time.Sleep(time.Until(resumed))
	checkRecovery(t, l, resumed)
	l.halt()

	all := l.all()
	fault := faultBetween(all, paused, resumed)
	checkOpenCircuit(t, "redis paused", fault, origin)
	logSlowest(t, fault, paused, 3)
	checkAfter(t, all, resumed)
	t.Logf("whole load: %v", faultCheckAll(t, l))
	rig.logStats(t)
}

// TestFaultFlushAllDuringFills: FLUSHALL, again and again, while misses
// fill many cold keys of a slow origin: entries and fill locks vanish under
// the fillers. No client sees it; lost locks are counted, not surfaced; the
// cache fills again once the flushing stops. A flushed Redis is an empty
// cache, not a failing one: the circuit stays closed.
func TestFaultFlushAllDuringFills(t *testing.T) {
	const (
		flushes = 20
		every   = 100 * time.Millisecond
	)
	rig := newFaultRig(t, faultConfig{delay: 50 * time.Millisecond, keys: 100, policy: policy.Policy{TTL: time.Minute}})
	origin := rig.baseline(t, 500*time.Millisecond)

	admin := rig.srv.Client()
	shape := faultLoadShape
	shape.workers = 16
	l := rig.startLoad(t, shape)
	start := time.Now()
	for range flushes {
		time.Sleep(every)
		if err := admin.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	stopped := time.Now()
	checkRecovery(t, l, stopped)
	l.halt()

	all := l.all()
	fault := faultBetween(all, start, stopped)
	during := faultSummarize(fault)
	t.Logf("during %d FLUSHALLs, one every %v: %v; origin alone p99=%v", flushes, every, during, origin.p99.Round(10*time.Microsecond))
	logSlowest(t, fault, start, 3)
	checkMaxLatency(t, "during the flushes", during, faultMaxLatency)
	checkAfter(t, all, stopped)
	sum := faultCheckAll(t, l)
	t.Logf("whole load: %v", sum)
	rig.logStats(t)
	st := rig.stats()
	if st.LocksLost == 0 {
		t.Errorf("no fill lock was lost: the flushes never hit a fill in flight, so the test tested nothing")
	}
	if sum.bypass > 0 || st.Bypassed > 0 {
		t.Errorf("%d requests bypassed the cache: FLUSHALL opened the circuit", st.Bypassed)
	}
}

// TestFaultMaxMemory: a Redis far too small for the responses (2 MB, of
// which about 1 MB is Redis itself, for 2,000 entries of ~1.6 KB: the
// bodies are random, so compression saves little). Whatever Redis does
// about it, clients get the origin's 200. With allkeys-lru it evicts:
// evicted entries are plain misses and hot entries stay hits. With
// noeviction it refuses writes (OOM): the cache stops storing and serves
// what it has.
func TestFaultMaxMemory(t *testing.T) {
	const (
		keys    = 2000
		hotKeys = 20
		loadFor = 2 * time.Second
		recheck = 50 // cold keys asked for again after the load
	)
	// Half of the requests go to a few hot keys, half to any key.
	pick := func(r *rand.Rand) int {
		if r.IntN(2) == 0 {
			return r.IntN(hotKeys)
		}
		return r.IntN(keys)
	}
	for _, evictionPolicy := range []string{"allkeys-lru", "noeviction"} {
		t.Run(evictionPolicy, func(t *testing.T) {
			var errs errorLog
			rig := newFaultRig(t, faultConfig{
				opts:       []httpcache.Option{httpcache.WithOnError(errs.add)},
				serverArgs: []string{"--maxmemory", "2mb", "--maxmemory-policy", evictionPolicy},
				delay:      2 * time.Millisecond,
				keys:       keys,
				bodySize:   2048,
				policy:     policy.Policy{TTL: time.Minute},
			})
			origin := rig.baseline(t, 500*time.Millisecond)
			admin := rig.srv.Client()
			// The hot keys are stored while there is room.
			for k := range hotKeys {
				if r := request(rig.http, "GET", rig.apps[k%2].URL+"/items/"+strconv.Itoa(k), "Host", serviceHost); r.status != 200 {
					t.Fatalf("warming key %d: %d %v", k, r.status, r.err)
				}
			}
			shape := faultLoadShape
			shape.pick = pick
			l := rig.startLoad(t, shape)
			time.Sleep(loadFor)
			l.halt()

			all := l.all()
			sum := faultSummarize(all)
			t.Logf("load: %v; origin alone p99=%v", sum, origin.p99.Round(10*time.Microsecond))
			checkMaxLatency(t, "under memory pressure", sum, faultMaxLatency)
			var hot, cold []faultSample
			for _, s := range all {
				if s.key < hotKeys {
					hot = append(hot, s)
				} else {
					cold = append(cold, s)
				}
			}
			hs := faultSummarize(hot)
			t.Logf("hot keys: %v", hs)
			t.Logf("other keys: %v", faultSummarize(cold))
			// The cold keys stored first are asked for again; with an
			// LRU they are the first evicted.
			var storedFirst []int
			seen := map[int]bool{}
			for _, s := range all {
				if s.key >= hotKeys && strings.Contains(s.status, "; stored") && !seen[s.key] && len(storedFirst) < recheck {
					seen[s.key] = true
					storedFirst = append(storedFirst, s.key)
				}
			}
			var again []faultSample
			for _, k := range storedFirst {
				again = append(again, l.one(rig.apps[0].URL, k))
			}
			as := faultSummarize(again)
			t.Logf("the %d cold keys stored first, asked for again: %v", len(again), as)
			used, maxmem := faultRedisInfo(t, admin, "used_memory"), faultRedisInfo(t, admin, "maxmemory")
			evicted := faultRedisInfo(t, admin, "evicted_keys")
			t.Logf("redis: used_memory=%d maxmemory=%d evicted_keys=%d", used, maxmem, evicted)
			t.Logf("whole load: %v", faultCheckAll(t, l))
			if as.bad > 0 {
				t.Errorf("%d responses to keys asked for again were not the origin's 200; first: %s", as.bad, as.firstBad)
			}
			rig.logStats(t)
			st := rig.stats()
			switch evictionPolicy {
			case "allkeys-lru":
				if evicted == 0 || as.n-as.hits == 0 {
					t.Errorf("evicted_keys=%d, misses among the %d oldest entries=%d: Redis never ran out of room", evicted, as.n, as.n-as.hits)
				}
				// An evicted entry is a plain miss, never an error. What
				// else eviction does is seen as what it is: allkeys-lru
				// evicts any key, a fill lock included, whose holder
				// then finds it lost when it unlocks. What may still fail
				// is Redis itself: a store call that outlasts its
				// deadline on a loaded machine, or a write refused while
				// Redis cannot evict enough (its clients' buffers count
				// toward maxmemory too). Those are few, and they must not
				// open the circuit.
				if other := errs.count(func(err error) bool {
					return !timedOut(err) && !errors.Is(err, storage.ErrRefused) && !errors.Is(err, storage.ErrLockLost)
				}); other > 0 || st.Bypassed > 0 {
					t.Errorf("%d store errors other than timeouts, refused writes and evicted locks, bypassed=%d: eviction is not a failure; errors: %s", other, st.Bypassed, errs.summary())
				}
				if n := errs.count(func(error) bool { return true }); n > sum.n/20 {
					t.Errorf("%d store errors for %d requests: eviction is not a failure; errors: %s", n, sum.n, errs.summary())
				} else if n > 0 {
					t.Logf("store errors, none from eviction: %s", errs.summary())
				}
				if hr := float64(hs.hits) / float64(hs.n); hr < 0.5 {
					t.Errorf("hot keys were hits %.0f%% of the time, want most", 100*hr)
				}
			case "noeviction":
				if st.StoreErrors == 0 {
					t.Errorf("no store error: Redis never refused a write")
				}
				// Today refused writes count as store failures and open
				// the circuit now and then, which turns hits of entries
				// Redis still serves into bypasses (logged above).
				if hs.hits == 0 {
					t.Errorf("no hot key was ever a hit: stored entries were not served")
				}
			}
		})
	}
}

// errorLog collects the errors a cache reports through
// [httpcache.WithOnError], so that a test failing on a count of store
// errors can say what they were.
type errorLog struct {
	mu   sync.Mutex
	seen map[string]int
	errs []error
}

func (l *errorLog) add(_ context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]int{}
	}
	l.seen[err.Error()]++
	l.errs = append(l.errs, err)
}

// count returns how many of the errors match.
func (l *errorLog) count(match func(error) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, err := range l.errs {
		if match(err) {
			n++
		}
	}
	return n
}

// summary lists each distinct error with how often it was reported.
func (l *errorLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, msg := range slices.Sorted(maps.Keys(l.seen)) {
		fmt.Fprintf(&b, "\n\t%dx %s", l.seen[msg], msg)
	}
	return b.String()
}

// timedOut says whether err is a store call that outlasted its deadline:
// the context's, or the socket's that go-redis sets from it.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) ||
		(errors.As(err, &ne) && ne.Timeout())
}
