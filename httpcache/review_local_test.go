package httpcache

// Review of the local tier (local.go, hit.go's serveLocal and keep,
// serve.go's shared copies): each test states a promise of the tier, or of
// the cache, and the scenario that breaks it.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// failingTracked is a trackedStore whose store calls fail while fail is
// set; its tracker keeps proving delivery (the tracking connection is
// not the one that fails: a latency spike past the store timeout, a
// pool exhausted, leave PINGs answered within the bound).
type failingTracked struct {
	*trackedStore
	fail atomic.Bool
	// calls counts every store command made through the wrapper.
	calls atomic.Int64
}

var errReviewDown = errors.New("review: store down")

func (s *failingTracked) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, errReviewDown
	}
	return s.trackedStore.Get(ctx, bucket, field)
}

func (s *failingTracked) GetForFill(ctx context.Context, bucket, field string) ([]byte, string, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, "", errReviewDown
	}
	return s.trackedStore.GetForFill(ctx, bucket, field)
}

func (s *failingTracked) Set(ctx context.Context, bucket, field string, v []byte, o storage.SetOptions) error {
	s.calls.Add(1)
	if s.fail.Load() {
		return errReviewDown
	}
	return s.trackedStore.Set(ctx, bucket, field, v, o)
}

func (s *failingTracked) TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (storage.Lock, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, errReviewDown
	}
	return s.trackedStore.TryLock(ctx, bucket, field, ttl)
}

func (s *failingTracked) Watch(ctx context.Context, bucket, field string) (<-chan storage.Fill, func(), error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, nil, errReviewDown
	}
	return s.trackedStore.Watch(ctx, bucket, field)
}

func (s *failingTracked) Publish(ctx context.Context, bucket, field string, f storage.Fill) error {
	s.calls.Add(1)
	if s.fail.Load() {
		return errReviewDown
	}
	return s.trackedStore.Publish(ctx, bucket, field, f)
}

// TestReviewLocalHitTakesBreakerProbe: when the store's circuit breaker
// is half-open, the one request allowed through is its probe. If that
// request is answered by the local tier, no store call reports back, the
// breaker stays half-open with its probe "in flight" for ever, and every
// request of every route bypasses the cache from then on, although the
// store is healthy again.
func TestReviewLocalHitTakesBreakerProbe(t *testing.T) {
	for _, probe := range []string{"/items/9", "/items/1"} {
		name := map[string]string{"/items/9": "control: the probe reads the store", "/items/1": "the probe is a local hit"}[probe]
		t.Run(name, func(t *testing.T) {
			s := &failingTracked{trackedStore: newTrackedStore(t)}
			const cooldown = 100 * time.Millisecond
			c := newTestCache(t, s, WithLocalTier(1<<20), WithBreaker(3, cooldown))
			h := mux(t, c, "GET /items/{id}", localPolicy(), counterOrigin())
			live(t, c)
			do(h, "GET", "/items/1")
			do(h, "GET", "/items/1")
			if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "detail=local") {
				t.Fatalf("no local copy: %s", r.cacheStatus())
			}

			// The store fails for a moment: the breaker opens.
			s.fail.Store(true)
			opened := false
			for i := 0; i < 10 && !opened; i++ {
				r := do(h, "GET", "/items/"+strconv.Itoa(100+i))
				opened = strings.Contains(r.cacheStatus(), "store-unavailable")
			}
			if !opened {
				t.Fatal("the breaker never opened")
			}
			s.fail.Store(false) // the store is back
			time.Sleep(cooldown + 20*time.Millisecond)

			// The first request after the cooldown is the breaker's probe.
			r := do(h, "GET", probe)
			t.Logf("probe %s: %s", probe, r.cacheStatus())
			// From then on, the cache must come back within a few cooldowns.
			deadline := time.Now().Add(20 * cooldown)
			for {
				r := do(h, "GET", "/items/2")
				if !strings.Contains(r.cacheStatus(), "store-unavailable") {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the store is healthy but every request still bypasses the cache %v after the cooldown: %s (the half-open probe was answered by the local tier and never reported)",
						20*cooldown, r.cacheStatus())
				}
				time.Sleep(cooldown / 4)
			}
		})
	}
}

// laggingStore is a memstore whose change reports reach the cache lag
// after the store made them, as reports over a network do (Redis sends
// its invalidations at the end of an event-loop cycle, on another
// connection than the one the purge's answer comes back on).
type laggingStore struct {
	*memstore.Store
	lag time.Duration
}

func (s *laggingStore) Track(ctx context.Context, interval time.Duration, fn func(storage.Changes)) (func(), error) {
	return s.Store.Track(ctx, interval, func(ch storage.Changes) {
		time.Sleep(s.lag)
		fn(ch)
	})
}

// TestReviewLocalBulkPurgeReadYourWrite: a purge of a route, a tag or
// everything made through this cache is not marked in its own local tier
// when the store tracks (localChanged returns early "a tracking store
// reports each bucket"): until the store's report arrives, this very
// instance keeps serving the copies the purge removed. A client that
// writes through a write route purging by tag, and reads back at once,
// gets the value from before its own write: the README promises the
// buckets "are purged on every instance, before the answer reaches the
// client", and bucket purges are marked at once.
func TestReviewLocalBulkPurgeReadYourWrite(t *testing.T) {
	for _, how := range []string{"write purging a tag", "PurgeTag", "PurgeRoute", "PurgeAll"} {
		t.Run(how, func(t *testing.T) {
			s := &laggingStore{Store: newMemStore(t), lag: 30 * time.Millisecond}
			c := newTestCache(t, s, WithLocalTier(1<<20))
			it := newItems()
			m := http.NewServeMux()
			p := policy.Policy{TTL: time.Hour, Local: true, Tags: func(*http.Request) []string { return []string{"items"} }}
			m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", p, http.HandlerFunc(it.get)))
			m.Handle("PUT /items/{id}", c.MustWrites("PUT /items/{id}",
				PurgeTags(func(*http.Request) []string { return []string{"items"} }))(http.HandlerFunc(it.put)))
			live(t, c)
			// Wait for the store to go quiet (the first reports).
			time.Sleep(3 * s.lag)
			do(m, "GET", "/items/1")
			time.Sleep(3 * s.lag) // the fill's report
			do(m, "GET", "/items/1")
			if r := do(m, "GET", "/items/1"); r.body != "one" || !strings.Contains(r.cacheStatus(), "detail=local") {
				t.Fatalf("no local copy: %s %q", r.cacheStatus(), r.body)
			}
			switch how {
			case "write purging a tag":
				w := doRequest(m, httptestRequest("PUT", "/items/1", "uno"))
				if w.status != http.StatusNoContent {
					t.Fatalf("PUT: %d", w.status)
				}
			default:
				it.mu.Lock()
				it.vals["1"] = "uno"
				it.mu.Unlock()
				var err error
				switch how {
				case "PurgeTag":
					_, err = c.PurgeTag(t.Context(), "items")
				case "PurgeRoute":
					_, err = c.PurgeRoute(t.Context(), "GET /items/{id}")
				case "PurgeAll":
					_, err = c.PurgeAll(t.Context())
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// The purge has returned; this instance serves the next request.
			if r := do(m, "GET", "/items/1"); r.body != "uno" {
				t.Errorf("after %s returned, the same instance answered %q (%s), the value from before the purge", how, r.body, r.cacheStatus())
			}
		})
	}
}

// countingStore is a store that cannot track (so the tier runs
// untracked), counting the store commands of the hit and refresh paths.
type countingStore struct {
	storage.Store
	storage.Purger
	storage.Fencer
	storage.Locker
	calls atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	s.calls.Add(1)
	return s.Store.Get(ctx, bucket, field)
}

func (s *countingStore) GetForFill(ctx context.Context, bucket, field string) ([]byte, string, error) {
	s.calls.Add(1)
	return s.Fencer.GetForFill(ctx, bucket, field)
}

func (s *countingStore) TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (storage.Lock, error) {
	s.calls.Add(1)
	return s.Locker.TryLock(ctx, bucket, field, ttl)
}

func (s *countingStore) Set(ctx context.Context, bucket, field string, v []byte, o storage.SetOptions) error {
	s.calls.Add(1)
	return s.Store.Set(ctx, bucket, field, v, o)
}

// refreshesIdle waits until no background refresh runs.
func refreshesIdle(t *testing.T, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.refresh.mu.Lock()
		n := len(c.refresh.inflight)
		c.refresh.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("refreshes never ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReviewLocalRefreshAheadStorm: a copy that is due for refresh-ahead
// stays due after the refresh stored its successor (the copy is the old
// entry, and nothing tells the tier: untracked, for up to the bound; and
// tracked, until the report arrives). Every local hit of it then starts
// another refresh, which takes the fill lock and reads the entry to find
// it refreshed: three store commands per "local hit that sends no store
// command", more than a plain store hit costs, on the hottest keys, after
// every refresh.
func TestReviewLocalRefreshAheadStorm(t *testing.T) {
	ms := newMemStore(t)
	s := &countingStore{Store: ms, Purger: ms, Fencer: ms, Locker: ms}
	c := newTestCache(t, s, WithLocalTier(1<<20), WithUntrackedLocalTier(), WithLocalBound(2*time.Second))
	o := counterOrigin()
	p := policy.Policy{TTL: 400 * time.Millisecond, RefreshAhead: 0.5, Local: true}
	h := mux(t, c, "GET /items/{id}", p, o)
	do(h, "GET", "/items/1")
	do(h, "GET", "/items/1") // the copy
	time.Sleep(250 * time.Millisecond)
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "detail=local") {
		t.Fatalf("not a local hit: %s", r.cacheStatus())
	}
	refreshesIdle(t, c)
	if o.calls.Load() != 2 {
		t.Fatalf("%d origin calls, want 2 (the fill and one refresh)", o.calls.Load())
	}
	before := s.calls.Load()
	const hits = 20
	for i := range hits {
		r := do(h, "GET", "/items/1")
		// The refresh dropped this process's copy of the bucket: the
		// first hit reads the refreshed entry from the store.
		if i > 0 && !strings.Contains(r.cacheStatus(), "detail=local") {
			t.Fatalf("hit %d not local: %s", i, r.cacheStatus())
		}
		refreshesIdle(t, c)
	}
	n := s.calls.Load() - before
	st := c.RouteStats()["GET /items/{id}"]
	t.Logf("%d store commands for %d local hits after the refresh; refreshes skipped %d", n, hits, st.RefreshSkipped)
	if n > 2 {
		t.Errorf("%d store commands for %d local hits of a copy already refreshed, want none", n, hits)
	}
}

// TestReviewLocalHeapEstimate: the tier bounds its copies by the heap
// they take "as the cache estimates it". The estimate leaves out what a
// copy holds besides its body and its header strings: the whole stored
// envelope the body aliases (its header bytes included), the header map
// (at least a group of eight slots), and the values' slices. Measured,
// the heap the copies free is several times the estimate for entries of
// the README's sizes, so WithLocalTier(256<<20) can take far more than
// 256 MiB.
func TestReviewLocalHeapEstimate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    int
		headers int
	}{
		{"200B body, 6 headers", 200, 6},
		{"2KB body, 6 headers", 2000, 6},
		{"200B body, 40 headers", 200, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTrackedStore(t)
			c := newTestCache(t, s, WithLocalTier(512<<20), WithoutDecodedCache())
			var hdrs []string
			for i := range tc.headers {
				hdrs = append(hdrs, "X-Review-"+strconv.Itoa(i), strings.Repeat("v", 30))
			}
			body := strings.Repeat("b", tc.body)
			h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Hour, Local: true, Compression: policy.CompressNone}, textOrigin(body, hdrs...))
			live(t, c)
			const n = 3000
			for i := range n {
				do(h, "GET", "/items/"+strconv.Itoa(i))
				do(h, "GET", "/items/"+strconv.Itoa(i))
			}
			c.local.cache.CleanUp()
			ls := c.LocalStats()
			if ls.Entries != n {
				t.Fatalf("%d copies, want %d", ls.Entries, n)
			}
			held := heapAlloc()
			c.local.cache.InvalidateAll()
			c.local.cache.CleanUp()
			freed := held - heapAlloc()
			ratio := float64(freed) / float64(ls.Bytes)
			t.Logf("estimate %d bytes (%d per copy), freed %d (%d per copy): %.2fx", ls.Bytes, ls.Bytes/n, freed, freed/n, ratio)
			if ratio > 1.5 {
				t.Errorf("the copies took %.2fx the heap the tier counts against its bound", ratio)
			}
		})
	}
}

func heapAlloc() int64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestReviewLocal32BitBuild: local.go's weigher clamps with the untyped
// constant 1<<32-1 converted to int, which overflows int on 32-bit
// platforms: the package no longer builds for GOARCH=386 or arm (it did
// before the local tier).
func TestReviewLocal32BitBuild(t *testing.T) {
	// go test puts its own go command first in the test's PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go tool to build the package with: ", err)
	}
	for _, arch := range []string{"386", "arm"} {
		cmd := exec.Command(goTool, "build", "-o", os.DevNull, ".")
		cmd.Env = append(os.Environ(), "GOARCH="+arch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOARCH=%s go build ./httpcache: %v\n%s", arch, err, out)
		}
	}
}

// TestReviewLocalAgeOfClampedEntry: an entry whose Stored time is ahead
// of this instance's clock (another instance's clock runs ahead, within
// the minute of skew the store accepts) is clamped to now at each store
// read, so served from the store it shows Age 0 and its whole TTL until
// the clocks meet. The local copy keeps the clamp of its first read and
// ages from it: the same entry is served with another Age and ttl, and
// expires earlier, than it would be from the store.
func TestReviewLocalAgeOfClampedEntry(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(1<<20))
	plain := newTestCache(t, s) // the same store, no local tier
	p := policy.Policy{TTL: time.Minute, Local: true}
	h := mux(t, c, "GET /items/{id}", p, textOrigin("x"))
	q := p
	q.Local = false
	hp := mux(t, plain, "GET /items/{id}", q, textOrigin("x"))
	live(t, c)
	do(h, "GET", "/items/1") // the fill: key and bucket now exist
	r := httptestRequest("GET", "/items/1", "")
	r.SetPathValue("id", "1")
	r.Pattern = "GET /items/{id}"
	k, err := c.routes["GET /items/{id}"].key.Key(r)
	if err != nil {
		t.Fatal(err)
	}
	// Another instance, its clock 30 s ahead, stores the entry.
	e := &storage.Entry{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("ahead"),
		Stored: time.Now().Add(30 * time.Second), Fresh: time.Minute}
	if err := s.Set(t.Context(), k.Bucket, k.Field, envelope.Encode(nil, e), storage.SetOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	s.report(storage.Changes{Buckets: []string{k.Bucket}})
	do(h, "GET", "/items/1") // the copy
	time.Sleep(2100 * time.Millisecond)
	live(t, c)
	local := do(h, "GET", "/items/1")
	store := do(hp, "GET", "/items/1")
	if local.body != "ahead" || store.body != "ahead" {
		t.Fatalf("local %s %q, store %s %q", local.cacheStatus(), local.body, store.cacheStatus(), store.body)
	}
	// Fixed by keeping no copy of an entry stored in the future until its
	// time has come: both are served from the store, alike.
	if strings.Contains(local.cacheStatus(), "detail=local") {
		t.Errorf("a copy of an entry stored in the future was kept: %s", local.cacheStatus())
	}
	if la, sa := local.header.Get("Age"), store.header.Get("Age"); la != sa {
		t.Errorf("the local copy is served with Age %s (%s), the stored entry with Age %s (%s)", la, local.cacheStatus(), sa, store.cacheStatus())
	}
}

// TestReviewLocalStress: many goroutines hit, purge and report at once,
// with gzip and identity clients, HEAD and conditional requests; each
// response must be the one the origin gave for its own key (the ETag names
// the body). Run with -race. (It passes: kept as a regression test.)
func TestReviewLocalStress(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(64<<10), WithLocalBound(200*time.Millisecond))
	var version atomic.Int64
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		v := version.Add(1)
		body := strings.Repeat("item "+r.PathValue("id")+" v"+strconv.FormatInt(v, 10)+" ", 30)
		w.Header().Set("Etag", `"`+r.PathValue("id")+"-"+strconv.FormatInt(v, 10)+`"`)
		io.WriteString(w, body)
	}}
	h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute, StaleWhileRevalidate: time.Minute, RefreshAhead: 0.5, Local: true}, o)
	live(t, c)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := strconv.Itoa((g*7 + i) % 12)
				var hdr []string
				switch i % 4 {
				case 0:
					hdr = []string{"Accept-Encoding", "gzip"}
				case 1:
					hdr = []string{"If-None-Match", `"` + id + `-1"`}
				}
				method := "GET"
				if i%5 == 0 {
					method = "HEAD"
				}
				r := do(h, method, "/items/"+id, hdr...)
				if r.status == http.StatusNotModified {
					continue
				}
				if r.status != 200 {
					t.Errorf("status %d", r.status)
					continue
				}
				etag := strings.TrimPrefix(r.header.Get("Etag"), "W/")
				if !strings.HasPrefix(etag, `"`+id+"-") {
					t.Errorf("GET /items/%s got ETag %s", id, etag)
				}
				if method == "GET" && r.header.Get("Content-Encoding") == "" {
					v := strings.TrimSuffix(strings.TrimPrefix(etag, `"`+id+"-"), `"`)
					if !strings.HasPrefix(r.body, "item "+id+" v"+v+" ") {
						t.Errorf("body %.40q for ETag %s", r.body, etag)
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := strconv.Itoa(i % 12)
			switch i % 3 {
			case 0:
				c.PurgeURL(context.Background(), "http://example.com/items/"+id)
			case 1:
				s.report(storage.Changes{Buckets: []string{itemBucket(t, c, id)}})
			default:
				if i%30 == 2 {
					s.report(storage.Changes{All: true})
				}
			}
			c.LocalStats()
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	st := c.RouteStats()["GET /items/{id}"]
	t.Logf("local hits %d hits %d misses %d; %+v", st.LocalHits, st.Hits, st.Misses, c.LocalStats())
}

// signalWriter sets X-Tenant's first value in place, like inPlaceWriter,
// then closes done.
type signalWriter struct {
	http.ResponseWriter
	value string
	done  chan struct{}
}

func (w *signalWriter) WriteHeader(code int) {
	if v := w.Header()["X-Tenant"]; len(v) > 0 {
		v[0] = w.value
	}
	w.ResponseWriter.WriteHeader(code)
	close(w.done)
}

func (w *signalWriter) Write(p []byte) (int, error) { return w.ResponseWriter.Write(p) }

// waitWriter sends its header only once after is closed (or a second
// has passed): a client served a moment later than another.
type waitWriter struct {
	http.ResponseWriter
	after chan struct{}
}

func (w *waitWriter) WriteHeader(code int) {
	select {
	case <-w.after:
	case <-time.After(time.Second):
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *waitWriter) Write(p []byte) (int, error) { return w.ResponseWriter.Write(p) }

// TestReviewCollapsedWaitersShareHeaderValues: the commit copies header
// values of local copies per response, "so that a wrapper that sets one in
// place cannot change what other clients get". The requests collapsed on
// one fill share one entry too (miss.go: every waiter is served
// res.entry through serveEntry, shared=false), and are handed the
// entry's own value slices: one waiter's wrapper that sets a value in
// place changes the response of another waiter of the same fill (and is
// a data race). The local tier's own path is safe; this one is not.
func TestReviewCollapsedWaitersShareHeaderValues(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run("local="+strconv.FormatBool(local), func(t *testing.T) {
			s := newTrackedStore(t)
			c := newTestCache(t, s, WithLocalTier(1<<20))
			release := make(chan struct{})
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
				<-release
				w.Header().Set("X-Tenant", "public")
				io.WriteString(w, "x")
			}}
			h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute, Local: local}, o)
			live(t, c)
			serve := func(w http.ResponseWriter) {
				h.ServeHTTP(w, httptestRequest("GET", "/items/1", ""))
			}
			leader := make(chan struct{})
			go func() { defer close(leader); serve(reviewRecorder()) }()
			for o.calls.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			mutated := make(chan struct{})
			attacker, victim := reviewRecorder(), reviewRecorder()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				serve(&signalWriter{ResponseWriter: attacker, value: "attacker", done: mutated})
			}()
			go func() { defer wg.Done(); serve(&waitWriter{ResponseWriter: victim, after: mutated}) }()
			deadline := time.Now().Add(5 * time.Second)
			for c.flights.waiting() < 2 {
				if time.Now().After(deadline) {
					t.Fatal("the requests never collapsed")
				}
				time.Sleep(time.Millisecond)
			}
			close(release)
			wg.Wait()
			<-leader
			if got := attacker.Header().Get("X-Tenant"); got != "attacker" {
				t.Fatalf("the attacker's own response: X-Tenant %q", got)
			}
			if got := victim.Header().Get("X-Tenant"); got != "public" {
				t.Errorf("a collapsed waiter got X-Tenant %q (%s), set in place by another waiter's wrapper", got, victim.Header().Get("Cache-Status"))
			}
		})
	}
}

func reviewRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// TestReviewLocalTinyBound: WithLocalBound below 4ns passes New's checks
// (only negative values are refused), but the tracking interval is
// bound/4, which truncates to 0: every Track refuses a non-positive
// interval, with an error that is not ErrNoTracking, so start logs a
// warning and retries in the background for ever. New succeeds with a
// tier that never serves a copy.
func TestReviewLocalTinyBound(t *testing.T) {
	c, err := New(newMemStore(t), WithLogger(quietLogger()), WithLocalTier(0), WithLocalBound(3*time.Nanosecond))
	if err != nil {
		return // refused: fine
	}
	defer c.Close(context.Background())
	time.Sleep(300 * time.Millisecond)
	if ls := c.LocalStats(); ls.SilentNs < 0 {
		t.Errorf("New accepted WithLocalBound(3ns) but the tier never started tracking (tracking interval 0): %+v", ls)
	}
}

// TestReviewLocalHeld checks what held under review: a copy whose gzip
// body does not decode sends an identity client to the origin and is
// dropped (not served again to anyone); HEAD, 304 and gzip/identity
// negotiation on one shared copy; after Close, copies stop being served
// within the bound.
func TestReviewLocalHeld(t *testing.T) {
	s := newTrackedStore(t)
	const bound = 150 * time.Millisecond
	c := newTestCache(t, s, WithLocalTier(1<<20), WithLocalBound(bound))
	body := strings.Repeat("compressible text ", 40)
	o := counterOrigin("Etag", `"e"`)
	o.fn = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"e"`)
		io.WriteString(w, body)
	}
	h := mux(t, c, "GET /items/{id}", localPolicy(), o)
	live(t, c)
	do(h, "GET", "/items/1")
	do(h, "GET", "/items/1", "Accept-Encoding", "gzip")
	gz := do(h, "GET", "/items/1", "Accept-Encoding", "gzip")
	id := do(h, "GET", "/items/1")
	head := do(h, "HEAD", "/items/1")
	nm := do(h, "GET", "/items/1", "If-None-Match", `W/"e"`)
	for _, r := range []result{gz, id, head, nm} {
		if !strings.Contains(r.cacheStatus(), "detail=local") {
			t.Fatalf("not local: %s", r.cacheStatus())
		}
	}
	if gz.header.Get("Content-Encoding") != "gzip" || id.body != body || id.header.Get("Content-Encoding") != "" ||
		head.body != "" || head.header.Get("Content-Length") != strconv.Itoa(len(body)) || nm.status != 304 {
		t.Errorf("negotiation on one copy: gzip %q, identity %q %d bytes, HEAD %q, 304 %d",
			gz.header.Get("Content-Encoding"), id.header.Get("Content-Encoding"), len(id.body), head.header.Get("Content-Length"), nm.status)
	}
	if !strings.Contains(id.header.Get("Vary"), "Accept-Encoding") || id.header.Get("Etag") != `"e"` || gz.header.Get("Etag") != `W/"e"` {
		t.Errorf("identity from a gzip copy: Vary %q ETag %q (gzip: %q)", id.header.Get("Vary"), id.header.Get("Etag"), gz.header.Get("Etag"))
	}

	// A corrupt gzip body, written by someone else.
	r := httptestRequest("GET", "/items/2", "")
	r.SetPathValue("id", "2")
	r.Pattern = "GET /items/{id}"
	k, _ := c.routes["GET /items/{id}"].key.Key(r)
	bad := &storage.Entry{Status: 200, Header: http.Header{"Etag": {`"bad"`}}, Body: []byte(strings.Repeat("not gzip", 20)),
		Coding: "gzip", Stored: time.Now(), Fresh: time.Minute}
	if err := s.Set(t.Context(), k.Bucket, k.Field, envelope.Encode(nil, bad), storage.SetOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if r := do(h, "GET", "/items/2", "Accept-Encoding", "gzip"); !r.isHit() {
		t.Fatalf("the corrupt entry, to a gzip client: %s", r.cacheStatus())
	}
	calls := o.calls.Load()
	if r := do(h, "GET", "/items/2"); r.isHit() || r.body != body || o.calls.Load() != calls+1 {
		t.Errorf("an identity client on a corrupt copy: %s %d bytes", r.cacheStatus(), len(r.body))
	}
	if r := do(h, "GET", "/items/2", "Accept-Encoding", "gzip"); strings.Contains(r.header.Get("Etag"), "bad") {
		t.Errorf("the corrupt copy served again: %s", r.cacheStatus())
	}

	c.Close(t.Context())
	time.Sleep(bound + 50*time.Millisecond)
	if r := do(h, "GET", "/items/1"); strings.Contains(r.cacheStatus(), "local") || r.body != body {
		t.Errorf("after Close and the bound: %s", r.cacheStatus())
	}
}

// TestReviewLocalPolicyFileHeld: "local": true in a policy file turns the
// tier on for a route declared without it, and "local": false off.
func TestReviewLocalPolicyFileHeld(t *testing.T) {
	f, err := policy.Parse([]byte(`{"GET /items/{id}": {"local": true}, "GET /other/{id}": {"local": false}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(1<<20), WithPolicyFile(f))
	h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute}, counterOrigin())
	h2 := mux(t, c, "GET /other/{id}", policy.Policy{TTL: time.Minute, Local: true}, counterOrigin())
	live(t, c)
	for range 3 {
		do(h, "GET", "/items/1")
		do(h2, "GET", "/other/1")
	}
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "detail=local") {
		t.Errorf("local from the file: %s", r.cacheStatus())
	}
	if r := do(h2, "GET", "/other/1"); strings.Contains(r.cacheStatus(), "detail=local") {
		t.Errorf("local off in the file: %s", r.cacheStatus())
	}
	if err := c.VerifyRoutes(); err != nil {
		t.Error(err)
	}
}
