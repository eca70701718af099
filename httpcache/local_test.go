package httpcache

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// trackedStore is a memstore whose change reports the test drives: its
// tracker proves delivery every interval unless silenced, and reports the
// buckets the test names. It counts the store reads, and can hold them.
type trackedStore struct {
	*memstore.Store
	gets   atomic.Int64
	silent atomic.Bool
	// hold, when set, is called by Get before it reads.
	hold atomic.Pointer[func()]

	mu   sync.Mutex
	fns  []func(storage.Changes)
	done chan struct{}
	wg   sync.WaitGroup
}

func newTrackedStore(t *testing.T) *trackedStore {
	s := &trackedStore{Store: newMemStore(t), done: make(chan struct{})}
	t.Cleanup(func() { close(s.done); s.wg.Wait() })
	return s
}

func (s *trackedStore) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	s.gets.Add(1)
	if h := s.hold.Load(); h != nil {
		(*h)()
	}
	return s.Store.Get(ctx, bucket, field)
}

func (s *trackedStore) Track(ctx context.Context, interval time.Duration, fn func(storage.Changes)) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.fns = append(s.fns, fn)
	fn(storage.Changes{All: true})
	s.mu.Unlock()
	stop := make(chan struct{})
	var once sync.Once
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-s.done:
				return
			case now := <-tick.C:
				if !s.silent.Load() {
					s.report(storage.Changes{Through: now})
				}
			}
		}
	}()
	return func() { once.Do(func() { close(stop) }) }, nil
}

// report delivers ch to every tracker.
func (s *trackedStore) report(ch storage.Changes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range s.fns {
		fn(ch)
	}
}

// live waits until the cache's local tier may serve copies.
func live(t *testing.T, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.LocalStats().SilentNs < 0 || c.LocalStats().SilentNs >= int64(c.local.bound) {
		if time.Now().After(deadline) {
			t.Fatalf("the local tier never heard from the store: %+v", c.LocalStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// itemBucket is the bucket of /items/{id} on c.
func itemBucket(t *testing.T, c *Cache, id string) string {
	t.Helper()
	r := httptestRequest("GET", "/items/"+id, "")
	r.SetPathValue("id", id)
	return c.routes["GET /items/{id}"].key.Bucket(r)
}

// untrackedStore is a store that purges and fences but does not track.
type untrackedStore struct {
	storage.Store
	storage.Purger
	storage.Fencer
}

func localPolicy() policy.Policy { return policy.Policy{TTL: time.Minute, Local: true} }

// counterOrigin answers with a body that changes on every call.
func counterOrigin(headers ...string) *origin {
	o := &origin{}
	o.fn = func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Write([]byte("body " + strconv.FormatInt(o.calls.Load(), 10) + " of " + r.URL.Path))
	}
	return o
}

func TestLocalHitSendsNoStoreCommand(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(1<<20), WithLocalBound(200*time.Millisecond))
	o := counterOrigin("Etag", `"v1"`)
	h := mux(t, c, "GET /items/{id}", localPolicy(), o)
	live(t, c)

	first := do(h, "GET", "/items/1")
	if first.isHit() {
		t.Fatalf("first request: %s", first.cacheStatus())
	}
	second := do(h, "GET", "/items/1") // from the store: makes the copy
	if !second.isHit() || strings.Contains(second.cacheStatus(), "local") {
		t.Fatalf("second request: %s, want a store hit", second.cacheStatus())
	}
	before := s.gets.Load()
	for i := range 10 {
		r := do(h, "GET", "/items/1")
		if got := r.cacheStatus(); !strings.Contains(got, "; hit;") || !strings.HasSuffix(got, "; detail=local") {
			t.Fatalf("local request %d: Cache-Status %q", i, got)
		}
		if r.body != first.body || r.header.Get("Etag") != `"v1"` || r.header.Get("Age") == "" {
			t.Fatalf("local request %d: body %q etag %q age %q", i, r.body, r.header.Get("Etag"), r.header.Get("Age"))
		}
	}
	if n := s.gets.Load() - before; n != 0 {
		t.Errorf("%d store reads for 10 local hits, want 0", n)
	}
	// Conditional and HEAD requests are answered from the copy too.
	if r := do(h, "GET", "/items/1", "If-None-Match", `"v1"`); r.status != http.StatusNotModified || !strings.Contains(r.cacheStatus(), "detail=local") {
		t.Errorf("conditional request: %d %q", r.status, r.cacheStatus())
	}
	if r := do(h, "HEAD", "/items/1"); r.status != 200 || r.body != "" || r.header.Get("Content-Length") != strconv.Itoa(len(first.body)) {
		t.Errorf("HEAD: %d body %q length %q", r.status, r.body, r.header.Get("Content-Length"))
	}
	st := c.RouteStats()["GET /items/{id}"]
	if st.LocalHits != 12 || st.Hits != 13 || o.calls.Load() != 1 {
		t.Errorf("local hits %d hits %d origin calls %d, want 12, 13, 1", st.LocalHits, st.Hits, o.calls.Load())
	}
	if ls := c.LocalStats(); !ls.Enabled || !ls.Tracked || ls.Entries != 1 || ls.Bytes <= 0 || ls.HitRatio != 12.0/13 {
		t.Errorf("local stats %+v", ls)
	}
}

func TestLocalCopyDroppedOnReportedChange(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(1<<20))
	o := counterOrigin()
	h := mux(t, c, "GET /items/{id}", localPolicy(), o)
	live(t, c)
	do(h, "GET", "/items/1")
	do(h, "GET", "/items/2")
	do(h, "GET", "/items/1")
	do(h, "GET", "/items/2")
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("no local copy: %s", r.cacheStatus())
	}
	// Another instance purges bucket 1 (the store reports it).
	bucket1 := itemBucket(t, c, "1")
	if _, err := s.PurgeBucket(t.Context(), bucket1); err != nil {
		t.Fatal(err)
	}
	s.report(storage.Changes{Buckets: []string{bucket1}})
	r := do(h, "GET", "/items/1")
	if r.isHit() {
		t.Fatalf("after the purge was reported: %s %q", r.cacheStatus(), r.body)
	}
	if r := do(h, "GET", "/items/2"); !strings.Contains(r.cacheStatus(), "local") {
		t.Errorf("bucket 2's copy was dropped too: %s", r.cacheStatus())
	}
	// A report of every bucket drops them all.
	s.report(storage.Changes{All: true})
	if r := do(h, "GET", "/items/2"); strings.Contains(r.cacheStatus(), "local") {
		t.Errorf("after a report of every bucket: %s", r.cacheStatus())
	}
}

// TestLocalReadRacingChange: a store read in flight when its bucket's
// change is reported must not leave a copy that is served.
func TestLocalReadRacingChange(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(1<<20))
	o := counterOrigin()
	h := mux(t, c, "GET /items/{id}", localPolicy(), o)
	live(t, c)
	do(h, "GET", "/items/1") // stored

	var bucket string
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() { once.Do(func() { close(entered); <-release }) }
	s.hold.Store(&hold)
	done := make(chan result)
	go func() { done <- do(h, "GET", "/items/1") }()
	<-entered // the read is in flight, about to read the old entry
	s.hold.Store(nil)
	bucket = itemBucket(t, c, "1")
	s.report(storage.Changes{Buckets: []string{bucket}}) // the bucket changed meanwhile
	close(release)
	if r := <-done; !r.isHit() {
		t.Fatalf("the racing read: %s", r.cacheStatus())
	}
	if r := do(h, "GET", "/items/1"); strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("the copy the racing read made was served: %s", r.cacheStatus())
	}
	// The next read makes a copy that is served.
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("no copy after the race: %s", r.cacheStatus())
	}
}

// TestLocalBoundWhenReportsStop: when the store stops proving delivery,
// no copy is served past the bound; once it proves it again, copies are
// served again, but only those made after the reports resumed.
func TestLocalBoundWhenReportsStop(t *testing.T) {
	s := newTrackedStore(t)
	const bound = 200 * time.Millisecond
	c := newTestCache(t, s, WithLocalTier(1<<20), WithLocalBound(bound))
	h := mux(t, c, "GET /items/{id}", localPolicy(), counterOrigin())
	live(t, c)
	do(h, "GET", "/items/1")
	do(h, "GET", "/items/1")
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("no local copy: %s", r.cacheStatus())
	}
	s.silent.Store(true)
	silenced := time.Now()
	deadline := silenced.Add(5 * bound)
	for {
		r := do(h, "GET", "/items/1")
		if !strings.Contains(r.cacheStatus(), "local") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("copies still served %v after the store went silent", time.Since(silenced))
		}
		time.Sleep(time.Millisecond)
	}
	if since := time.Since(silenced); since > bound+bound/2 {
		t.Errorf("copies served %v after the store went silent, bound %v", since, bound)
	}
	before := s.gets.Load()
	if r := do(h, "GET", "/items/1"); !r.isHit() || strings.Contains(r.cacheStatus(), "local") || s.gets.Load() == before {
		t.Fatalf("while silent: %s, want a store hit", r.cacheStatus())
	}
	s.silent.Store(false)
	live(t, c)
	do(h, "GET", "/items/1")
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "local") {
		t.Errorf("after the reports resumed: %s", r.cacheStatus())
	}
}

func TestLocalStaleAndRefresh(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(1<<20))
	o := counterOrigin()
	p := policy.Policy{TTL: 300 * time.Millisecond, StaleWhileRevalidate: time.Minute, Local: true}
	h := mux(t, c, "GET /items/{id}", p, o)
	live(t, c)
	first := do(h, "GET", "/items/1")
	do(h, "GET", "/items/1")
	time.Sleep(350 * time.Millisecond)
	r := do(h, "GET", "/items/1")
	if got := r.cacheStatus(); !strings.Contains(got, "detail=local-stale-while-revalidate") || r.body != first.body {
		t.Fatalf("stale local copy: %q %q", got, r.body)
	}
	// The refresh stores a new entry; a tracking store reports it.
	deadline := time.Now().Add(5 * time.Second)
	for o.calls.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close(t.Context()) // waits for the refresh to be stored
	s.report(storage.Changes{Buckets: []string{itemBucket(t, c, "1")}})
	if r := do(h, "GET", "/items/1"); r.body == first.body {
		t.Errorf("the old body after the refresh: %s %q", r.cacheStatus(), r.body)
	}
}

func TestLocalUntracked(t *testing.T) {
	ms := newMemStore(t)
	plain := untrackedStore{ms, ms, ms}
	if _, err := New(plain, WithLogger(quietLogger()), WithLocalTier(0)); err == nil || !strings.Contains(err.Error(), "WithUntrackedLocalTier") {
		t.Fatalf("a local tier over a store that cannot track: %v", err)
	}
	const bound = 150 * time.Millisecond
	c := newTestCache(t, plain, WithLocalTier(0), WithUntrackedLocalTier(), WithLocalBound(bound))
	o := counterOrigin()
	h := mux(t, c, "GET /items/{id}", localPolicy(), o)
	do(h, "GET", "/items/1")
	do(h, "GET", "/items/1")
	read := time.Now()
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("no local copy: %s", r.cacheStatus())
	}
	if ls := c.LocalStats(); ls.Tracked || ls.MaxBytes != DefaultLocalBytes {
		t.Errorf("local stats %+v", ls)
	}
	for time.Since(read) < bound+50*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
	}
	if r := do(h, "GET", "/items/1"); strings.Contains(r.cacheStatus(), "local") {
		t.Errorf("a copy served %v after its read, bound %v", time.Since(read), bound)
	}
	// A purge through this cache drops the copies at once.
	do(h, "GET", "/items/1")
	if r := do(h, "GET", "/items/1"); !strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("no local copy: %s", r.cacheStatus())
	}
	if _, err := c.PurgeRoute(t.Context(), "GET /items/{id}"); err != nil {
		t.Fatal(err)
	}
	if r := do(h, "GET", "/items/1"); r.isHit() {
		t.Errorf("after PurgeRoute: %s", r.cacheStatus())
	}
}

func TestLocalDeclarationErrors(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	_, err := c.Route("GET /items/{id}", localPolicy())
	var fe *policy.FieldError
	if !errors.As(err, &fe) || fe.Field != "Local" || fe.Route != "GET /items/{id}" {
		t.Errorf("a Local route without a local tier: %v", err)
	}
	for _, opts := range [][]Option{
		{WithLocalBound(time.Second)},
		{WithUntrackedLocalTier()},
		{WithLocalTier(-1)},
		{WithLocalTier(0), WithLocalBound(-time.Second)},
	} {
		if _, err := New(newTrackedStore(t), opts...); err == nil {
			t.Errorf("New accepted %d options that make no sense", len(opts))
		}
	}
	// A route without Local on a cache with a tier reads the store.
	s := newTrackedStore(t)
	c = newTestCache(t, s, WithLocalTier(0))
	h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute}, counterOrigin())
	live(t, c)
	for range 3 {
		if r := do(h, "GET", "/items/1"); strings.Contains(r.cacheStatus(), "local") {
			t.Fatalf("a route without Local served a copy: %s", r.cacheStatus())
		}
	}
}

func TestLocalMemoryBound(t *testing.T) {
	s := newTrackedStore(t)
	const maxBytes = 64 << 10
	c := newTestCache(t, s, WithLocalTier(maxBytes))
	body := strings.Repeat("x", 4000)
	h := mux(t, c, "GET /items/{id}", policy.Policy{TTL: time.Minute, Local: true, Compression: policy.CompressNone}, textOrigin(body))
	live(t, c)
	for i := range 100 {
		do(h, "GET", "/items/"+strconv.Itoa(i))
		do(h, "GET", "/items/"+strconv.Itoa(i))
	}
	c.local.cache.CleanUp()
	ls := c.LocalStats()
	if ls.Bytes > maxBytes || ls.Evictions == 0 || ls.Entries == 0 || ls.Entries > 16 {
		t.Errorf("100 copies of 4 KB in 64 KiB: %+v", ls)
	}
}

// TestLocalCopyNotMutatedByWrapper: a handler wrapping the cache that sets
// a header value in place changes its own response, never the copy that
// later clients are served.
func TestLocalCopyNotMutatedByWrapper(t *testing.T) {
	s := newTrackedStore(t)
	c := newTestCache(t, s, WithLocalTier(0))
	inner := mux(t, c, "GET /items/{id}", localPolicy(), textOrigin("x", "X-Tenant", "public"))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(&inPlaceWriter{ResponseWriter: w, value: r.Header.Get("X-Who")}, r)
	})
	live(t, c)
	for i := range 5 {
		who := "client-" + strconv.Itoa(i)
		r := do(h, "GET", "/items/1", "X-Who", who)
		if got := r.header.Get("X-Tenant"); got != who {
			t.Fatalf("request %d: the wrapper's own value is %q", i, got)
		}
	}
	r := do(h, "GET", "/items/1")
	if !strings.Contains(r.cacheStatus(), "local") {
		t.Fatalf("not a local hit: %s", r.cacheStatus())
	}
	if got := r.header.Get("X-Tenant"); got != "public" {
		t.Errorf("a later client got X-Tenant %q, set in place by another request's wrapper", got)
	}
}

// inPlaceWriter sets X-Tenant's first value in place, when it has one
// and the request named a value, as it sends the header.
type inPlaceWriter struct {
	http.ResponseWriter
	value string
}

func (w *inPlaceWriter) WriteHeader(code int) {
	if v := w.Header()["X-Tenant"]; len(v) > 0 && w.value != "" {
		v[0] = w.value
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *inPlaceWriter) Write(p []byte) (int, error) {
	return w.ResponseWriter.Write(p)
}

// TestLocalAcrossInstances: two instances over one memstore, which
// reports every change to both: a purge through one, and a fill through
// the other, reach both local tiers.
func TestLocalAcrossInstances(t *testing.T) {
	s := newMemStore(t)
	a := newTestCache(t, s, WithLocalTier(0), WithLocalBound(100*time.Millisecond))
	b := newTestCache(t, s, WithLocalTier(0), WithLocalBound(100*time.Millisecond))
	o := counterOrigin()
	ha := mux(t, a, "GET /items/{id}", localPolicy(), o)
	hb := mux(t, b, "GET /items/{id}", localPolicy(), o)
	live(t, a)
	live(t, b)
	first := do(ha, "GET", "/items/1")
	local := func(h http.Handler) result {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := do(h, "GET", "/items/1")
			if strings.Contains(r.cacheStatus(), "local") {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("no local hit: %s", r.cacheStatus())
			}
			time.Sleep(time.Millisecond)
		}
	}
	if r := local(ha); r.body != first.body {
		t.Fatalf("a: %q", r.body)
	}
	if r := local(hb); r.body != first.body {
		t.Fatalf("b: %q", r.body)
	}
	if _, err := a.PurgeURL(t.Context(), "http://example.com/items/1"); err != nil {
		t.Fatal(err)
	}
	// memstore reports a change before the purge returns; its delivery
	// is asynchronous, so allow it a moment.
	time.Sleep(20 * time.Millisecond)
	second := do(hb, "GET", "/items/1")
	if second.isHit() || second.body == first.body {
		t.Fatalf("b after a's purge: %s %q", second.cacheStatus(), second.body)
	}
	if r := local(ha); r.body != second.body {
		t.Errorf("a after b's fill: %q, want %q", r.body, second.body)
	}
}

// TestLocalNoProofNoCopy: until the store's first proof of delivery, no
// copy is served, however young the tier.
func TestLocalNoProofNoCopy(t *testing.T) {
	s := newTrackedStore(t)
	s.silent.Store(true) // the first report says All, with no Through
	c := newTestCache(t, s, WithLocalTier(0), WithLocalBound(time.Minute))
	h := mux(t, c, "GET /items/{id}", localPolicy(), counterOrigin())
	for range 3 {
		if r := do(h, "GET", "/items/1"); strings.Contains(r.cacheStatus(), "local") {
			t.Fatalf("a copy served before any proof of delivery: %s", r.cacheStatus())
		}
	}
	if ls := c.LocalStats(); ls.SilentNs != -1 {
		t.Errorf("silent_ns %d before the first proof, want -1", ls.SilentNs)
	}
}
