package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

const (
	stampedeInstances = 4
	stampedeRequests  = 500
)

// arrivals counts requests that reached an app, outside the cache.
type arrivals struct{ n atomic.Int64 }

func (a *arrivals) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.n.Add(1)
		next.ServeHTTP(w, r)
	})
}

// waitFor polls cond until it holds or 20s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the last arrivals reach their wait
}

// fire sends n concurrent GETs of path spread over apps.
func fire(apps []*app, n int, path string) []resp {
	out := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = get(apps[i%len(apps)].URL+path, "Host", serviceHost) })
	}
	wg.Wait()
	return out
}

type stampedeCase struct {
	apps    []*app
	arrived *arrivals
	origin  *counter
	release chan struct{}
	// lockAttempts counts answered SET NX commands on fill lock keys:
	// each instance's leader tries the lock once before it waits.
	lockAttempts lockCounter
	once         sync.Once
	prefix       string
	redisCli     redis.UniversalClient
}

// newStampede starts four instances of a service whose origin blocks until
// release is closed, each with its own Redis client.
func newStampede(t *testing.T, fn func(w http.ResponseWriter, r *http.Request, call int64), pol policy.Policy) *stampedeCase {
	sc := &stampedeCase{arrived: &arrivals{}, release: make(chan struct{}), prefix: prefix(t)}
	sc.origin = &counter{}
	var calls atomic.Int64
	sc.origin.fn = func(w http.ResponseWriter, r *http.Request) {
		call := calls.Add(1)
		<-sc.release
		fn(w, r, call)
	}
	sc.apps = startApps(t, stampedeInstances, appConfig{
		prefix: sc.prefix,
		outer:  sc.arrived.wrap,
		routes: []route{{"GET /hot/{id}", pol, sc.origin}},
		opts:   []httpcache.Option{patient()},
	}, func() redis.UniversalClient {
		c := newClient()
		c.AddHook(&sc.lockAttempts)
		return c
	})
	sc.redisCli = sc.apps[0].Client
	// Registered after the apps, so it runs before their servers close
	// (which waits for handlers): a failed test never hangs on the origin.
	t.Cleanup(sc.open)
	return sc
}

// open lets the origin answer.
func (sc *stampedeCase) open() { sc.once.Do(func() { close(sc.release) }) }

func checkIdentical(t *testing.T, results []resp, want string) {
	t.Helper()
	for i, r := range results {
		if r.err != nil || r.status != 200 || r.body != want {
			t.Fatalf("response %d: %d %q err=%v, want 200 %q", i, r.status, r.body, r.err, want)
		}
	}
}

func TestStampedeOneOriginCall(t *testing.T) {
	sc := newStampede(t, func(w http.ResponseWriter, r *http.Request, call int64) {
		fmt.Fprintf(w, "answer %s", r.PathValue("id"))
	}, policy.Policy{})
	done := make(chan []resp)
	go func() { done <- fire(sc.apps, stampedeRequests, "/hot/1") }()
	waitFor(t, "all requests to arrive", func() bool { return sc.arrived.n.Load() == stampedeRequests })
	sc.open()
	results := <-done
	checkIdentical(t, results, "answer 1")
	if n := sc.origin.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d for %d concurrent cold requests over %d instances, want 1", n, stampedeRequests, stampedeInstances)
	}
	collapsed := 0
	for _, r := range results {
		if strings.Contains(r.cacheStatus(), "collapsed") {
			collapsed++
		}
	}
	// A request that reached the lock only after the fill released it
	// finds the entry and says hit: legitimate, and no origin call.
	hits := 0
	for _, r := range results {
		if r.hit() {
			hits++
		}
	}
	// How many are which depends on how far each request had got when
	// the origin answered (on a loaded machine many are still reading
	// the store): one origin call and every other answer a collapse or a
	// hit is the promise.
	t.Logf("%d collapsed, %d hit", collapsed, hits)
	if collapsed+hits != stampedeRequests-1 || collapsed == 0 {
		t.Errorf("%d responses say collapsed and %d hit, want %d in all, some collapsed", collapsed, hits, stampedeRequests-1)
	}
}

func TestStampedeLockDeletedMidFill(t *testing.T) {
	sc := newStampede(t, func(w http.ResponseWriter, r *http.Request, call int64) {
		io.WriteString(w, "survived")
	}, policy.Policy{LockTTL: time.Second})
	done := make(chan []resp)
	go func() { done <- fire(sc.apps, stampedeRequests, "/hot/2") }()
	waitFor(t, "all requests to arrive and every instance to try the lock", func() bool {
		return sc.arrived.n.Load() == stampedeRequests && sc.lockAttempts.n.Load() >= stampedeInstances
	})
	locks := scanKeys(t, sc.redisCli, sc.prefix+":l:*")
	if len(locks) != 1 {
		t.Fatalf("lock keys = %q, want one", locks)
	}
	if err := sc.redisCli.Del(context.Background(), locks...).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // past an extension: the leader notices
	sc.open()
	checkIdentical(t, <-done, "survived")
	if n := sc.origin.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1", n)
	}
	var lost int64
	for _, a := range sc.apps {
		lost += a.Cache.Stats().LocksLost
	}
	if lost != 1 {
		t.Errorf("locks lost = %d, want 1 (logged, never surfaced)", lost)
	}
}

func TestStampedeLeaderPanics(t *testing.T) {
	sc := newStampede(t, func(w http.ResponseWriter, r *http.Request, call int64) {
		if call == 1 {
			panic("origin crashed")
		}
		io.WriteString(w, "recovered")
	}, policy.Policy{})
	done := make(chan []resp)
	start := time.Now()
	go func() { done <- fire(sc.apps, stampedeRequests, "/hot/3") }()
	waitFor(t, "all requests to arrive", func() bool { return sc.arrived.n.Load() == stampedeRequests })
	sc.open()
	results := <-done
	failed := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			failed++ // the leader's own connection is aborted by the panic
		case r.status != 200 || r.body != "recovered":
			t.Fatalf("response %d: %d %q", i, r.status, r.body)
		}
	}
	if failed != 1 {
		t.Errorf("%d requests failed, want only the panicking leader's", failed)
	}
	if n := sc.origin.calls.Load(); n != 2 {
		t.Errorf("origin calls = %d, want 2 (the panic, then one new leader)", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: waiters hung until the lock wait", d)
	}
}

func TestStampedeLeaderClientDisconnects(t *testing.T) {
	sc := newStampede(t, func(w http.ResponseWriter, r *http.Request, call int64) {
		io.WriteString(w, "complete")
	}, policy.Policy{})
	ctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", sc.apps[0].URL+"/hot/4", nil)
		req.Host = serviceHost
		res, err := client.Do(req)
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		leaderErr <- err
	}()
	waitFor(t, "the leader to reach the origin", func() bool { return sc.origin.calls.Load() == 1 })
	done := make(chan []resp)
	go func() { done <- fire(sc.apps, stampedeRequests-1, "/hot/4") }()
	waitFor(t, "all requests to arrive", func() bool { return sc.arrived.n.Load() == stampedeRequests })
	cancel()
	if err := <-leaderErr; err == nil {
		t.Fatal("the leader's request did not fail after its cancel")
	}
	sc.open()
	checkIdentical(t, <-done, "complete")
	if n := sc.origin.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1: the fill goes on without its client", n)
	}
}

func TestStampedeUncacheableNotShared(t *testing.T) {
	sc := newStampede(t, func(w http.ResponseWriter, r *http.Request, call int64) {
		w.Header().Set("Set-Cookie", fmt.Sprintf("session=%d", call))
		fmt.Fprintf(w, "private %d", call)
	}, policy.Policy{})
	done := make(chan []resp)
	go func() { done <- fire(sc.apps, stampedeRequests, "/hot/5") }()
	waitFor(t, "the first fill", func() bool { return sc.origin.calls.Load() >= 1 })
	sc.open()
	results := <-done
	seen := map[string]bool{}
	for i, r := range results {
		if r.err != nil || r.status != 200 {
			t.Fatalf("response %d: %d %v", i, r.status, r.err)
		}
		cookie := r.header.Get("Set-Cookie")
		if "private "+strings.TrimPrefix(cookie, "session=") != r.body {
			t.Fatalf("response %d: cookie %q with body %q: another client's response", i, cookie, r.body)
		}
		if seen[cookie] {
			t.Fatalf("two clients got session %q", cookie)
		}
		seen[cookie] = true
	}
	if n := sc.origin.calls.Load(); n != stampedeRequests {
		t.Errorf("origin calls = %d, want %d: each client its own", n, stampedeRequests)
	}
}

// lockCounter is a go-redis hook counting fill lock acquisition attempts.
type lockCounter struct{ n atomic.Int64 }

func (c *lockCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *lockCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 && strings.EqualFold(fmt.Sprint(args[0]), "set") && strings.Contains(fmt.Sprint(args[1]), ":l:{") {
			// Counted once Redis has answered: a command still on its way
			// (a fresh cluster client loads its slot map first) could
			// otherwise take a lock the test has just deleted.
			err := next(ctx, cmd)
			c.n.Add(1)
			return err
		}
		return next(ctx, cmd)
	}
}
func (c *lockCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
