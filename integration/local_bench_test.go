//go:build !race

// Benchmarks of the local tier (httpcache.WithLocalTier) against real
// redis-server processes: the cost of a local hit against a handler that
// writes the same response from memory and against the one-HGET baseline
// of BenchmarkHit, the Go heap a locally held entry takes, and the delay
// until four instances under load stop serving a purged copy. Like the
// other benchmarks they are left out of -race builds (see
// benchutil_test.go), and every judged figure is a ratio to a baseline
// measured in the same process, or a count.

package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

// localHitCases are the local hit benchmarks' bodies: JSON of 200 B
// (stored as it is) and 2 KB (stored gzipped), to a client that accepts
// gzip, so that neither is decoded on a hit.
var localHitCases = []struct {
	name string
	size int
}{
	{"200B", 200},
	{"2KB", 2 << 10},
}

// awaitProof waits until the local tier of cache has the store's proof
// that it reported every change, without which it serves no copy: the
// Redis store sends its first PING an interval (a quarter of the bound)
// after it started tracking.
func awaitProof(b *testing.B, cache *httpcache.Cache) {
	b.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if s := cache.LocalStats().SilentNs; s >= 0 && s < int64(httpcache.DefaultLocalBound) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the local tier has no proof of delivery from the store after 5s: %+v", cache.LocalStats())
		}
	}
}

// localHitSetup is one local hit case: a Local route whose entry every
// request finds in the local tier, a handler that writes the same status,
// headers and body from memory with no cache at all (the ceiling), and
// the one-HGET baseline of BenchmarkHit.
type localHitSetup struct {
	local, memory, baseline http.Handler
	cache                   *httpcache.Cache
	newRequest              func() *http.Request
	cmds                    *commandCounter // commands of the cache's client
	localBytes              int             // body bytes per local hit
	baselineBytes           int
	bodySize                int
}

func newLocalHitSetup(b *testing.B, size int) *localHitSetup {
	b.Helper()
	p := prefix(b)
	var cmds commandCounter
	rc := shared.Client()
	rc.AddHook(&cmds)
	brc := shared.Client()
	brc.AddHook(new(commandCounter)) // the same hook cost as the cache's client
	b.Cleanup(func() { rc.Close(); brc.Close() })
	dropPrefix(b, brc, p)

	body := itemJSON(4711, size)
	cache := newBenchCache(b, rc, p, httpcache.WithLocalTier(64<<20))
	local := cache.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour, Local: true}, jsonOriginFor(0, func(r *http.Request) []byte {
		id, _ := strconv.Atoi(r.PathValue("id"))
		return itemJSON(id, size)
	}))
	newRequest := func() *http.Request {
		r := httptest.NewRequest("GET", "http://"+serviceHost+"/items/4711", nil)
		r.Pattern = "GET /items/{id}" // as http.ServeMux routes it
		r.SetPathValue("id", "4711")
		r.Header.Set("Accept-Encoding", "gzip")
		return r
	}
	awaitProof(b, cache)
	// A miss stores the entry, a hit reads it from Redis and keeps a
	// copy, the next is served from the copy.
	var last *httptest.ResponseRecorder
	for i, want := range []string{"stored", "; hit", "detail=local"} {
		last = httptest.NewRecorder()
		local.ServeHTTP(last, newRequest())
		if cs := last.Header().Get("Cache-Status"); !strings.Contains(cs, want) {
			b.Fatalf("request %d: Cache-Status %q, want %q", i+1, cs, want)
		}
	}
	got := last.Body.Bytes()
	if last.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(got))
		if err != nil {
			b.Fatal(err)
		}
		if got, err = io.ReadAll(zr); err != nil {
			b.Fatal(err)
		}
	}
	if !bytes.Equal(got, body) {
		b.Fatalf("local hit body differs from the origin's (%d vs %d bytes)", len(got), len(body))
	}

	// The ceiling: the local hit's status, headers and bytes, written
	// from memory the way the cache writes its own.
	header := last.Header().Clone()
	status, sent := last.Code, bytes.Clone(last.Body.Bytes())
	memory := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for name, values := range header {
			h[name] = values
		}
		w.WriteHeader(status)
		w.Write(sent)
	})

	baseline, stored := oneHGETBaseline(b, brc, p)
	return &localHitSetup{
		local:         local,
		memory:        memory,
		baseline:      baseline,
		cache:         cache,
		newRequest:    newRequest,
		cmds:          &cmds,
		localBytes:    len(sent),
		baselineBytes: len(stored),
		bodySize:      len(body),
	}
}

// BenchmarkLocalHit measures local hits: the middleware serving a Local
// route's entry from the local tier, against two handlers: one that
// writes the same status, headers and bytes from memory with no cache
// (the ceiling), and BenchmarkHit's baseline, one HGET of the stored
// value.
//
// in-process calls the three with ServeHTTP and a discarding
// ResponseWriter, as BenchmarkHit does, which shows the middleware's own
// cost; http serves each from a real net/http server and sends the
// requests over loopback connections that are kept alive, which is what
// a service sees. In both, rounds of hitRound requests from
// hitGoroutines goroutines go to the three in turn (the order rotating),
// each round on a collected heap; one op is one local hit (ns/op is wall
// time per hit, the inverse of throughput), and b.N counts sets of three
// rounds. local/memory is the throughput ratio to the ceiling (the aim
// is 0.9 or more), local/baseline to the one-HGET handler. In-process,
// B/op and allocs/op are the middleware's per local hit, cmds/hit the
// Redis commands of the cache's client per local hit (the aim is 0), and
// seq-ns/hit the time of one local hit served alone by one goroutine;
// over HTTP, B/op and allocs/op are the whole process's per local hit
// (client, server and middleware).
func BenchmarkLocalHit(b *testing.B) {
	for _, tc := range localHitCases {
		b.Run(tc.name, func(b *testing.B) {
			s := newLocalHitSetup(b, tc.size)
			b.Run("in-process", func(b *testing.B) { benchLocalInProcess(b, s) })
			b.Run("http", func(b *testing.B) { benchLocalHTTP(b, s) })
		})
	}
}

func benchLocalInProcess(b *testing.B, s *localHitSetup) {
	b.ReportAllocs()
	hr := newHitRounds(b, &hitSetup{newRequest: s.newRequest})
	jobs := []hitJob{{s.memory, s.localBytes}, {s.local, s.localBytes}, {s.baseline, s.baselineBytes}}
	for _, j := range jobs {
		hr.run(j) // warm all three: connections, pools
	}
	l0 := s.cache.Stats().LocalHits
	var times [3]time.Duration
	var rounds [3]int64
	var mallocs, allocBytes uint64
	var cmds int64
	var m0, m1 runtime.MemStats
	round := func(side int) {
		runtime.GC()
		runtime.ReadMemStats(&m0)
		c0 := s.cmds.n.Load()
		d := hr.run(jobs[side])
		runtime.ReadMemStats(&m1)
		times[side] += d
		rounds[side]++
		if side == 1 {
			mallocs += m1.Mallocs - m0.Mallocs
			allocBytes += m1.TotalAlloc - m0.TotalAlloc
			cmds += s.cmds.n.Load() - c0
		}
	}
	i := 0
	for b.Loop() {
		for k := range 3 {
			round((i + k) % 3)
		}
		i++
	}
	if n := hr.bad.Load(); n > 0 {
		b.Fatalf("%d responses with a wrong status or body size", n)
	}
	hits := float64(rounds[1] * hitRound)
	if got := s.cache.Stats().LocalHits - l0; float64(got) < hits {
		b.Fatalf("%d local hits for %.0f requests: some were served from Redis", got, hits)
	}
	per := func(side int) float64 { return float64(times[side].Nanoseconds()) / float64(rounds[side]*hitRound) }
	nsMem, nsLocal, nsBase := per(0), per(1), per(2)

	// One goroutine alone: the in-process cost of a local hit.
	req, w := s.newRequest(), newDiscardWriter()
	const seq = 20000
	start := time.Now()
	for range seq {
		w.reset()
		s.local.ServeHTTP(w, req)
	}
	nsSeq := float64(time.Since(start).Nanoseconds()) / seq

	b.ReportMetric(nsMem/nsLocal, "local/memory")
	b.ReportMetric(nsBase/nsLocal, "local/baseline")
	b.ReportMetric(nsLocal, "ns/op")
	b.ReportMetric(nsMem, "memory-ns/hit")
	b.ReportMetric(nsBase, "baseline-ns/hit")
	b.ReportMetric(nsSeq, "seq-ns/hit")
	b.ReportMetric(float64(mallocs)/hits, "allocs/op")
	b.ReportMetric(float64(allocBytes)/hits, "B/op")
	b.ReportMetric(float64(cmds)/hits, "cmds/hit")
	b.Logf("origin body %d B, %d B per local hit to the client, stored value %d B; %d rounds of %d requests per side from %d goroutines: local %.0f ns, memory %.0f ns, one HGET %.0f ns per hit: local/memory %.3f, local/baseline %.2f; %.0f ns per hit alone; %.1f allocs, %.0f B per hit",
		s.bodySize, s.localBytes, s.baselineBytes, rounds[1], hitRound, hitGoroutines, nsLocal, nsMem, nsBase, nsMem/nsLocal, nsBase/nsLocal, nsSeq, float64(mallocs)/hits, float64(allocBytes)/hits)
}

// httpRounds is hitRounds over HTTP: a fixed pool of goroutines, each
// sending hitRound/hitGoroutines requests per round to one server's URL
// through a client whose connections are kept alive.
type httpRounds struct {
	jobs     []chan httpJob
	wg       sync.WaitGroup
	bad      atomic.Int64
	firstBad atomic.Pointer[string]
	// Responses of the local side not served from the local tier.
	notLocal      atomic.Int64
	firstNotLocal atomic.Pointer[string]
}

func (hr *httpRounds) fail(format string, args ...any) {
	hr.bad.Add(1)
	msg := fmt.Sprintf(format, args...)
	hr.firstBad.CompareAndSwap(nil, &msg)
}

type httpJob struct {
	url   string
	want  int  // body bytes per response
	local bool // the side of the local tier
}

func newHTTPRounds(b *testing.B) *httpRounds {
	hc := benchHTTPClient(b)
	hr := &httpRounds{jobs: make([]chan httpJob, hitGoroutines)}
	per := hitRound / hitGoroutines
	for i := range hr.jobs {
		ch := make(chan httpJob)
		hr.jobs[i] = ch
		go func() {
			for job := range ch {
				req, _ := http.NewRequest("GET", job.url, nil)
				req.Host = serviceHost
				req.Header.Set("Accept-Encoding", "gzip")
				for range per {
					res, err := hc.Do(req)
					if err != nil {
						hr.fail("%s: %v", job.url, err)
						continue
					}
					body, err := io.ReadAll(res.Body)
					res.Body.Close()
					if cs := res.Header.Get("Cache-Status"); job.local && !strings.Contains(cs, "detail=local") {
						hr.notLocal.Add(1)
						msg := fmt.Sprintf("%v: %s", time.Now().Format("15:04:05.000000"), cs)
						hr.firstNotLocal.CompareAndSwap(nil, &msg)
					}
					if err != nil || res.StatusCode != http.StatusOK || len(body) != job.want {
						hr.fail("%s: status %d, %d bytes (want %d), %v, Cache-Status %q, body %.200q", job.url, res.StatusCode, len(body), job.want, err, res.Header.Get("Cache-Status"), body)
					}
				}
				hr.wg.Done()
			}
		}()
	}
	b.Cleanup(func() {
		for _, ch := range hr.jobs {
			close(ch)
		}
	})
	return hr
}

func (hr *httpRounds) run(job httpJob) time.Duration {
	hr.wg.Add(len(hr.jobs))
	start := time.Now()
	for _, ch := range hr.jobs {
		ch <- job
	}
	hr.wg.Wait()
	return time.Since(start)
}

func benchLocalHTTP(b *testing.B, s *localHitSetup) {
	serve := func(h http.Handler) string {
		mux := http.NewServeMux()
		mux.Handle("GET /items/{id}", h)
		srv := httptest.NewServer(mux)
		b.Cleanup(srv.Close)
		return srv.URL + "/items/4711"
	}
	jobs := []httpJob{{serve(s.memory), s.localBytes, false}, {serve(s.local), s.localBytes, true}, {serve(s.baseline), s.baselineBytes, false}}
	// A request over HTTP is keyed on its origin-form target ("/items/4711"),
	// the in-process one on its absolute form: its own variant of the
	// bucket, stored and copied once before the rounds.
	hc := benchHTTPClient(b)
	for deadline := time.Now().Add(5 * time.Second); ; {
		r := request(hc, "GET", jobs[1].url, "Host", serviceHost, "Accept-Encoding", "gzip")
		if strings.Contains(r.cacheStatus(), "detail=local") && len(r.body) == s.localBytes {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("over HTTP, no local hit within 5s: %d, Cache-Status %q, %d bytes", r.status, r.cacheStatus(), len(r.body))
		}
	}
	hr := newHTTPRounds(b)
	for _, j := range jobs {
		hr.run(j) // warm all three: connections
	}
	l0 := s.cache.Stats().LocalHits
	var times [3]time.Duration
	var rounds [3]int64
	var mallocs, allocBytes uint64
	var m0, m1 runtime.MemStats
	i := 0
	for b.Loop() {
		for k := range 3 {
			side := (i + k) % 3
			runtime.GC()
			runtime.ReadMemStats(&m0)
			times[side] += hr.run(jobs[side])
			runtime.ReadMemStats(&m1)
			rounds[side]++
			if side == 1 {
				mallocs += m1.Mallocs - m0.Mallocs
				allocBytes += m1.TotalAlloc - m0.TotalAlloc
			}
		}
		i++
	}
	if n := hr.notLocal.Load(); n > 0 {
		b.Logf("%d responses of the local side not served from the local tier; first: %s; tier now %+v", n, *hr.firstNotLocal.Load(), s.cache.LocalStats())
	}
	if n := hr.bad.Load(); n > 0 {
		b.Fatalf("%d responses with a wrong status or body size; first: %s", n, *hr.firstBad.Load())
	}
	hits := float64(rounds[1] * hitRound)
	if got := s.cache.Stats().LocalHits - l0; float64(got) < hits {
		b.Fatalf("%d local hits for %.0f requests: some were served from Redis", got, hits)
	}
	per := func(side int) float64 { return float64(times[side].Nanoseconds()) / float64(rounds[side]*hitRound) }
	nsMem, nsLocal, nsBase := per(0), per(1), per(2)
	b.ReportMetric(nsMem/nsLocal, "local/memory")
	b.ReportMetric(nsBase/nsLocal, "local/baseline")
	b.ReportMetric(nsLocal, "ns/op")
	b.ReportMetric(nsMem, "memory-ns/hit")
	b.ReportMetric(nsBase, "baseline-ns/hit")
	b.ReportMetric(float64(mallocs)/hits, "allocs/op")
	b.ReportMetric(float64(allocBytes)/hits, "B/op")
	b.Logf("over HTTP, %d rounds of %d requests per side from %d goroutines: local %.0f ns, memory %.0f ns, one HGET %.0f ns per hit: local/memory %.3f, local/baseline %.2f",
		rounds[1], hitRound, hitGoroutines, nsLocal, nsMem, nsBase, nsMem/nsLocal, nsBase/nsLocal)
}

// localMemEntries is the number of entries each memory measurement holds
// in the local tier.
const localMemEntries = 20000

// BenchmarkLocalMemory measures the Go heap one locally held entry takes,
// for 200 B and 2 KB JSON bodies (the 2 KB ones held gzipped): it stores
// localMemEntries responses in Redis through the middleware (one miss
// each), collects the heap, reads every one once (a hit that makes the
// local copy), collects again, and divides the growth of the live heap by
// the number of copies. heap-B/entry is that figure, est-B/entry the
// tier's own estimate (LocalStats Bytes / Entries, which bounds it with
// WithLocalTier's maxBytes), est/heap their ratio; held-body-B is the
// body held. B/op and allocs/op are those of the hit that makes a copy
// (a read from Redis), three garbage collections included. The
// measurement is done once.
func BenchmarkLocalMemory(b *testing.B) {
	for _, tc := range localHitCases {
		b.Run(tc.name, func(b *testing.B) {
			var r localMemResult
			oneShot(b, func() { r = measureLocalMemory(b, tc.size) })
			heap, est, body := r.heap, r.est, r.body
			b.ReportMetric(heap, "heap-B/entry")
			b.ReportMetric(est, "est-B/entry")
			b.ReportMetric(est/heap, "est/heap")
			b.ReportMetric(body, "held-body-B")
			b.ReportMetric(r.allocs, "allocs/op")
			b.ReportMetric(r.bytes, "B/op")
			b.Logf("%s: %.0f B of heap per local copy (held body %.0f B); the tier estimates %.0f B: est/heap %.2f", tc.name, heap, body, est, est/heap)
			if r := est / heap; r < 0.7 || r > 1.3 {
				b.Logf("%s: the tier's estimate is off by more than 30%%", tc.name)
			}
		})
	}
}

// localMemResult is one memory measurement, per local copy: the live
// heap, the tier's estimate, the body held, and the allocations of the
// hit that made the copy.
type localMemResult struct {
	heap, est, body float64
	allocs, bytes   float64
}

func measureLocalMemory(b *testing.B, size int) localMemResult {
	b.Helper()
	rc := shared.Client()
	b.Cleanup(func() { rc.Close() })
	p := prefix(b)
	dropPrefix(b, rc, p)
	cache := newBenchCache(b, rc, p, httpcache.WithLocalTier(1<<30), httpcache.WithStoreTimeout(2*time.Second))
	bodies := make(map[int][]byte, localMemEntries)
	for i := range localMemEntries {
		bodies[100_000+i] = itemJSON(100_000+i, size)
	}
	h := cache.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour, Local: true}, jsonOriginFor(0, func(r *http.Request) []byte {
		id, _ := strconv.Atoi(r.PathValue("id"))
		return bodies[id]
	}))
	reqs := make([]*http.Request, localMemEntries)
	for i := range reqs {
		id := strconv.Itoa(100_000 + i)
		r := httptest.NewRequest("GET", "http://"+serviceHost+"/items/"+id, nil)
		r.Pattern = "GET /items/{id}"
		r.SetPathValue("id", id)
		r.Header.Set("Accept-Encoding", "gzip")
		reqs[i] = r
	}
	w := newDiscardWriter()
	serve := func(want string) {
		for i, r := range reqs {
			w.reset()
			h.ServeHTTP(w, r)
			if cs := w.h.Get("Cache-Status"); !strings.Contains(cs, want) {
				b.Fatalf("request %d: Cache-Status %q, want %q", i, cs, want)
			}
		}
	}
	awaitProof(b, cache)
	serve("stored")
	if e := cache.LocalStats().Entries; e != 0 {
		b.Fatalf("%d copies after the fills; fills are not meant to make copies", e)
	}
	var m0, m1 runtime.MemStats
	settle := func(m *runtime.MemStats) {
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(m)
	}
	settle(&m0)
	serve("; hit")
	settle(&m1)
	serve("detail=local")
	ls := cache.LocalStats()
	if ls.Entries != localMemEntries || ls.Evictions != 0 {
		b.Fatalf("the tier holds %d copies (%d evicted), want %d", ls.Entries, ls.Evictions, localMemEntries)
	}
	runtime.KeepAlive(reqs)
	runtime.KeepAlive(bodies)
	r := localMemResult{
		heap:   float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / localMemEntries,
		est:    float64(ls.Bytes) / float64(ls.Entries),
		allocs: float64(m1.Mallocs-m0.Mallocs) / localMemEntries,
		bytes:  float64(m1.TotalAlloc-m0.TotalAlloc) / localMemEntries,
	}
	// The body a copy holds: the stored one, gzipped when the 2 KB body
	// was compressed, which a local hit sends a client that accepts gzip
	// as it is.
	w.reset()
	w.n = 0
	h.ServeHTTP(w, reqs[0])
	r.body = float64(w.n)
	return r
}

// BenchmarkInvalidationDelay measures, on four instances with a local
// tier under a load of eight concurrent HTTP clients, the delay from the
// return of a purge (by bucket, by URL, by tag, by route, by a write
// route, in turn, each through one instance) until every instance stopped
// serving the purged copy: after each purge, every instance is probed in
// a loop until it answers the new version, and the delay of a purge is
// its slowest instance's. Before each purge, every instance serves the
// item from its local tier. p50-ms, p99-ms and max-ms are over the
// purges; app-p50-ms and app-max-ms over each instance's own delay. The
// measurement is done once; ns/op, B/op and allocs/op are the whole
// measurement's.
func BenchmarkInvalidationDelay(b *testing.B) {
	const rounds = 20
	kinds := []string{"bucket", "url", "tag", "route", "write"}
	var d *localDelays
	oneShot(b, func() {
		srv := startServer(b)
		admin := srv.Client()
		rig := newLocalRig(b, localRigConfig{
			client: func(h redis.Hook) redis.UniversalClient {
				c := srv.Client()
				c.AddHook(h)
				return c
			},
			flush: func(ctx context.Context) error { return admin.FlushAll(ctx).Err() },
			opts:  []httpcache.Option{patient()},
		})
		stop := rig.startLoad(8, func(r *rand.Rand) localTarget { return rig.items[r.IntN(len(rig.items))] })
		rig.warmUp()
		d = rig.runChanges(kinds, rounds, 20*time.Millisecond, "invalidation delay")
		stop()
		rig.check()
	})
	p50, p99, worst := localQuantiles(d.perChange)
	ap50, _, aworst := localQuantiles(d.perApp)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(worst), "max-ms")
	b.ReportMetric(ms(ap50), "app-p50-ms")
	b.ReportMetric(ms(aworst), "app-max-ms")
	b.ReportMetric(float64(len(d.perChange)), "purges")
}
