package integration

// The local tier (httpcache.WithLocalTier) on real Redis: four instances
// of a service, each keeping copies of the entries of its Local routes in
// process memory, under a load of concurrent clients spread over the four,
// while the test changes what the origin answers and invalidates the cache
// in every way it can be invalidated.
//
// The origin's body carries a version per item, which the test bumps
// before each invalidation, so that every response is judged against the
// history of changes: a response to a request that started a grace or
// more after a change returned must carry the change's version or a later
// one. The grace is 50 ms while invalidation works (the requirement), and
// the local bound when reports may have been lost (a dropped connection,
// a dead or paused Redis). Every entry the instances write is a change
// too: a go-redis hook on their clients reads the version out of each
// entry stored, so that a refresh, which changes an entry without any
// purge, is judged the same way. Run with -v for the figures: the delay
// until every instance stopped serving a purged copy, the share of hits
// served from the local tier.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"regexp"
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

const (
	// localInstances is the number of instances of the service.
	localInstances = 4
	// localGrace is how long after a change returned a request may still
	// be answered with what the change replaced, while invalidation works.
	localGrace = 50 * time.Millisecond
	// localTestBound is the local tier's bound in these tests
	// (httpcache.WithLocalBound): how long copies are served without the
	// store proving it delivered every change report.
	localTestBound = 300 * time.Millisecond
	// localFirstVersion is every item's first version: three digits, like
	// every later one in a test, so that a stored entry whose body is
	// rewritten in place keeps its length.
	localFirstVersion = 100
)

// The routes of the service. Every one is Local.
const (
	// One variant per bucket, tagged with the parity of its id; the write
	// route PUT /v/{id} purges the bucket.
	localItemRoute = "GET /v/{id}"
	// Refreshed: short-lived, served stale while a refresh runs.
	localRefreshRoute = "GET /r/{id}"
	// Many variants per bucket (the query parameter var), and its
	// one-variant counterpart, both refreshed every localChurnTTL.
	localVariantsRoute = "GET /m/{id}"
	localOneRoute      = "GET /o/{id}"

	localRefreshTTL = 400 * time.Millisecond
	localChurnTTL   = time.Second
)

// localBodyRE matches a body of the origin, as sent and as stored (small
// bodies are stored as they are): item, variant, version.
var localBodyRE = regexp.MustCompile(`<([a-z][0-9]+)\|([0-9a-z]*)\|([0-9]+)>`)

func localBody(item, variant string, version int64) string {
	return fmt.Sprintf("<%s|%s|%d>\n", item, variant, version)
}

// localTarget is one URL of the service: its path and what it names.
type localTarget struct {
	path, item, variant string
}

func itemTarget(family string, id int) localTarget {
	return localTarget{path: fmt.Sprintf("/%s/%d", family, id), item: family + strconv.Itoa(id)}
}

func variantTarget(family string, id int, variant string) localTarget {
	return localTarget{path: fmt.Sprintf("/%s/%d?var=%s", family, id, variant), item: family + strconv.Itoa(id), variant: variant}
}

// localOrigin answers GET /{family}/{id}[?var=x] with the current version
// of item family+id, and counts the calls of each family.
type localOrigin struct {
	mu       sync.Mutex
	versions map[string]int64
	families map[string]*localFamily
}

type localFamily struct {
	inflight atomic.Int64
	lastEnd  atomic.Int64 // Unix ns when a call last ended
	calls    atomic.Int64
}

func newLocalOrigin() *localOrigin {
	o := &localOrigin{versions: map[string]int64{}, families: map[string]*localFamily{}}
	for _, f := range []string{"v", "r", "m", "o"} {
		o.families[f] = new(localFamily)
	}
	return o
}

func (o *localOrigin) version(item string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if v, ok := o.versions[item]; ok {
		return v
	}
	return localFirstVersion
}

// bump gives each item its next version and returns the new versions.
func (o *localOrigin) bump(items ...string) map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int64, len(items))
	for _, it := range items {
		v, ok := o.versions[it]
		if !ok {
			v = localFirstVersion
		}
		o.versions[it] = v + 1
		out[it] = v + 1
	}
	return out
}

func (o *localOrigin) get(family string) http.Handler {
	f := o.families[family]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.inflight.Add(1)
		f.calls.Add(1)
		defer func() {
			f.lastEnd.Store(time.Now().UnixNano())
			f.inflight.Add(-1)
		}()
		item := family + r.PathValue("id")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, localBody(item, r.URL.Query().Get("var"), o.version(item)))
	})
}

// put is the write route of family v: it changes the item.
func (o *localOrigin) put(w http.ResponseWriter, r *http.Request) {
	o.bump("v" + r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// quiet waits, up to 2 s, until no call of family is running and none
// ended in the last 50 ms, so that no fill of the family is about to store
// what the origin answered before: a FLUSHALL or a DEL has no fence
// against such a fill (a purge has).
func (o *localOrigin) quiet(family string) bool {
	f := o.families[family]
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if f.inflight.Load() == 0 && time.Since(time.Unix(0, f.lastEnd.Load())) >= 50*time.Millisecond {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

// localEvent is a change to an item, or to one variant of it: after at
// plus grace, no response may carry a version older than ver.
type localEvent struct {
	at    time.Time
	grace time.Duration
	ver   int64
	what  string
	app   int // the instance that stored, for a store; -1 otherwise
	// unfenced: a fill that read the origin before the change may still
	// store its older content after it, legitimately (a FLUSHALL, a DEL
	// or an HSET from outside the cache, a store): purges have a fence.
	unfenced bool
}

// localSample is one response.
type localSample struct {
	start, end time.Time
	app        int
	target     localTarget
	ver        int64
	status     string // Cache-Status
	probe      bool   // sent by the test's probes rather than the load
	bad        string // set when the response was not a 200 with a body of the target
}

func (s localSample) local() bool { return strings.Contains(s.status, "detail=local") }

// localHistory is what happened: the changes, the stores the hook saw,
// and every response.
type localHistory struct {
	mu         sync.Mutex
	changes    map[string][]localEvent // by item: changes to every variant
	stores     map[string][]localEvent // by item|variant: entries written
	storeGrace time.Duration
	samples    []localSample
}

func (h *localHistory) changed(at time.Time, grace time.Duration, unfenced bool, what string, vers map[string]int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for item, v := range vers {
		h.changes[item] = append(h.changes[item], localEvent{at: at, grace: grace, ver: v, what: what, app: -1, unfenced: unfenced})
	}
}

func (h *localHistory) stored(at time.Time, app int, item, variant string, ver int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := item + "|" + variant
	h.stores[k] = append(h.stores[k], localEvent{at: at, grace: h.storeGrace, ver: ver, what: fmt.Sprintf("store by app %d", app), app: app, unfenced: true})
}

// lastStore returns the latest store of the variant seen since after,
// with a version of at least min.
func (h *localHistory) lastStore(item, variant string, after time.Time, min int64) (localEvent, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range slices.Backward(h.stores[item+"|"+variant]) {
		if e.at.After(after) && e.ver >= min {
			return e, true
		}
	}
	return localEvent{}, false
}

func (h *localHistory) record(s localSample) {
	h.mu.Lock()
	h.samples = append(h.samples, s)
	h.mu.Unlock()
}

func (h *localHistory) all() []localSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.samples)
}

// judge returns why s is older than the history allows, or "" when it is
// not; excused reports a response older than a change but as new as a
// store made after that change, which the change had no fence against.
func (h *localHistory) judge(s localSample) (why string, excused bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var req *localEvent
	consider := func(evs []localEvent) {
		for i := range evs {
			e := &evs[i]
			if !e.at.Add(e.grace).After(s.start) && (req == nil || e.ver > req.ver) {
				req = e
			}
		}
	}
	key := s.target.item + "|" + s.target.variant
	consider(h.changes[s.target.item])
	consider(h.stores[key])
	if req == nil || s.ver >= req.ver {
		return "", false
	}
	if req.unfenced {
		for _, e := range h.stores[key] {
			if e.ver == s.ver && e.at.After(req.at) && e.at.Before(s.end) {
				return "", true
			}
		}
	}
	var near []string
	for _, e := range h.stores[key] {
		if d := e.at.Sub(req.at); d > -time.Second && d < time.Second {
			near = append(near, fmt.Sprintf("v%d by app %d at %+v", e.ver, e.app, d.Round(10*time.Microsecond)))
		}
	}
	return fmt.Sprintf("app %d, %s (probe %t): version %d, want %d or later since %q returned %v before the request started (grace %v); took %v, Cache-Status %q; stores of the variant within 1s: %s",
		s.app, s.target.path, s.probe, s.ver, req.ver, req.what, s.start.Sub(req.at).Round(10*time.Microsecond), req.grace,
		s.end.Sub(s.start).Round(10*time.Microsecond), s.status, strings.Join(near, ", ")), false
}

// localStoreHook is a go-redis hook that reports each entry stored (the
// store's script answered 0) to the history, with the version read out
// of the stored value.
type localStoreHook struct {
	h   *localHistory
	app int
}

func (k localStoreHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (k localStoreHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (k localStoreHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
			return err
		}
		c, ok := cmd.(*redis.Cmd)
		if !ok {
			return err
		}
		if code, e := c.Int64(); e != nil || code != 0 {
			return err
		}
		now := time.Now()
		for _, a := range cmd.Args() {
			var b []byte
			switch v := a.(type) {
			case []byte:
				b = v
			case string:
				b = []byte(v)
			default:
				continue
			}
			if m := localBodyRE.FindSubmatch(b); m != nil {
				ver, _ := strconv.ParseInt(string(m[3]), 10, 64)
				k.h.stored(now, k.app, string(m[1]), string(m[2]), ver)
				break
			}
		}
		return err
	}
}

// localRigConfig describes one local tier test's service and backend.
type localRigConfig struct {
	// client returns a new client of the backend with hook added.
	client func(hook redis.Hook) redis.UniversalClient
	// flush empties the backend (FLUSHALL on every node).
	flush func(ctx context.Context) error
	// nodes calls fn with a client of each node (each master), for the
	// watch of the tracking connections; nil for none.
	nodes func(ctx context.Context, fn func(ctx context.Context, c *redis.Client) error) error
	items int // items of family v; default 12
	opts  []httpcache.Option
	// storeGrace is the grace of the stores the hook sees; default
	// localGrace.
	storeGrace time.Duration
}

// localRig is one local tier test: the instances, the origin, the
// history, and the client of the load.
type localRig struct {
	t      testing.TB
	cfg    localRigConfig
	prefix string
	apps   []*app
	origin *localOrigin
	hist   *localHistory
	http   *http.Client
	items  []localTarget // family v

	watchMu    sync.Mutex
	reconnects []string // tracking connections seen to change, with when
	watchStart time.Time
}

// watchTrackers polls CLIENT LIST on every node until the test ends and
// notes each tracking connection (flag t) that appears or goes away
// (a reconnection), so that a response older than the history allows can
// be told from one whose instance was reconnecting.
func (rig *localRig) watchTrackers() {
	if rig.cfg.nodes == nil {
		return
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	rig.watchStart = time.Now()
	wg.Go(func() {
		seen := map[string]string{} // node/name -> id
		for first := true; ; first = false {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var mu sync.Mutex
			now := map[string]string{}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := rig.cfg.nodes(ctx, func(ctx context.Context, c *redis.Client) error {
				list, err := c.ClientList(ctx).Result()
				if err != nil {
					return err
				}
				for line := range strings.Lines(list) {
					var id, name, flags string
					for f := range strings.FieldsSeq(line) {
						k, v, _ := strings.Cut(f, "=")
						switch k {
						case "id":
							id = v
						case "name":
							name = v
						case "flags":
							flags = v
						}
					}
					if strings.Contains(flags, "t") {
						mu.Lock()
						now[c.Options().Addr+" "+name] = id
						mu.Unlock()
					}
				}
				return nil
			})
			cancel()
			if err != nil {
				continue
			}
			at := time.Since(rig.watchStart).Round(time.Millisecond)
			rig.watchMu.Lock()
			for k, id := range now {
				if old, ok := seen[k]; !first && (!ok || old != id) {
					rig.reconnects = append(rig.reconnects, fmt.Sprintf("%v: %s: id %s -> %s", at, k, old, id))
				}
			}
			for k, id := range seen {
				if _, ok := now[k]; !ok {
					rig.reconnects = append(rig.reconnects, fmt.Sprintf("%v: %s: id %s gone", at, k, id))
				}
			}
			rig.watchMu.Unlock()
			seen = now
		}
	})
	rig.t.Cleanup(func() { close(done); wg.Wait() })
}

func newLocalRig(t testing.TB, cfg localRigConfig) *localRig {
	t.Helper()
	if cfg.items == 0 {
		cfg.items = 12
	}
	if cfg.storeGrace == 0 {
		cfg.storeGrace = localGrace
	}
	rig := &localRig{
		t: t, cfg: cfg, prefix: prefix(t), origin: newLocalOrigin(),
		hist: &localHistory{changes: map[string][]localEvent{}, stores: map[string][]localEvent{}, storeGrace: cfg.storeGrace},
		http: httpClient(),
	}
	t.Cleanup(rig.http.CloseIdleConnections)
	for i := range cfg.items {
		rig.items = append(rig.items, itemTarget("v", i))
	}
	o := rig.origin
	parity := func(r *http.Request) []string {
		id, _ := strconv.Atoi(r.PathValue("id"))
		return []string{"par" + strconv.Itoa(id%2)}
	}
	churn := policy.Policy{Local: true, TTL: localChurnTTL, StaleWhileRevalidate: time.Minute}
	variants := churn
	variants.QueryParams = []string{"var"}
	apps := 0
	rig.apps = startApps(t, localInstances, appConfig{
		prefix: rig.prefix,
		opts:   append([]httpcache.Option{httpcache.WithLocalTier(16 << 20), httpcache.WithLocalBound(localTestBound)}, cfg.opts...),
		routes: []route{
			{localItemRoute, policy.Policy{Local: true, TTL: time.Minute, Tags: parity}, o.get("v")},
			{localRefreshRoute, policy.Policy{Local: true, TTL: localRefreshTTL, StaleWhileRevalidate: time.Minute}, o.get("r")},
			{localVariantsRoute, variants, o.get("m")},
			{localOneRoute, churn, o.get("o")},
		},
		writes: []writeRoute{{"PUT /v/{id}", []httpcache.Purge{httpcache.PurgeRoute(localItemRoute)}, http.HandlerFunc(o.put)}},
	}, func() redis.UniversalClient {
		app := apps
		apps++
		return cfg.client(localStoreHook{rig.hist, app})
	})
	return rig
}

// do sends one GET of target to app a and records the response.
func (rig *localRig) do(a int, target localTarget, probe bool) localSample {
	s := localSample{app: a, target: target, probe: probe, start: time.Now()}
	r := request(rig.http, "GET", rig.apps[a].URL+target.path, "Host", serviceHost)
	s.end = time.Now()
	switch {
	case r.err != nil:
		s.bad = r.err.Error()
	case r.status != http.StatusOK:
		s.bad = fmt.Sprintf("status %d, Cache-Status %q, body %.100q", r.status, r.cacheStatus(), r.body)
	default:
		s.status = r.cacheStatus()
		m := localBodyRE.FindStringSubmatch(r.body)
		if m == nil || m[1] != target.item || m[2] != target.variant {
			s.bad = fmt.Sprintf("body %.100q, Cache-Status %q", r.body, s.status)
			break
		}
		s.ver, _ = strconv.ParseInt(m[3], 10, 64)
	}
	rig.hist.record(s)
	return s
}

// startLoad starts workers that each send requests of targets pick
// chooses, in turn to each instance, until the test ends or stop is
// called.
func (rig *localRig) startLoad(workers int, pick func(r *rand.Rand) localTarget) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				rig.do((w+i)%len(rig.apps), pick(r), false)
			}
		})
	}
	stop = func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	rig.t.Cleanup(stop) // before the apps close
	return stop
}

// awaitLocal requests target from every instance until each served it
// from its local tier, up to limit, and returns how many did.
func (rig *localRig) awaitLocal(target localTarget, limit time.Duration) int {
	n, _ := rig.awaitLocalStatus(target, limit)
	return n
}

// awaitLocalStatus is awaitLocal that also returns, for the instances
// that did not, their last answer's Cache-Status.
func (rig *localRig) awaitLocalStatus(target localTarget, limit time.Duration) (int, string) {
	var n atomic.Int64
	last := make([]string, len(rig.apps))
	var wg sync.WaitGroup
	for a := range rig.apps {
		wg.Go(func() {
			for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
				s := rig.do(a, target, true)
				if s.local() {
					n.Add(1)
					last[a] = ""
					return
				}
				last[a] = fmt.Sprintf("app %d: Cache-Status %q %s", a, s.status, s.bad)
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	var not []string
	for _, l := range last {
		if l != "" {
			not = append(not, l)
		}
	}
	return int(n.Load()), strings.Join(not, "; ")
}

// probe requests target from every instance in a loop, from the moment a
// change returned at at, until each answers version want or later, and
// returns each instance's delay: when the request of its first such
// answer started, less at. It fails the test for an instance that did
// not within limit.
func (rig *localRig) probe(target localTarget, want int64, at time.Time, limit time.Duration) []time.Duration {
	delays := make([]time.Duration, len(rig.apps))
	var wg sync.WaitGroup
	for a := range rig.apps {
		wg.Go(func() {
			for deadline := time.Now().Add(limit); ; {
				s := rig.do(a, target, true)
				if s.bad == "" && s.ver >= want {
					delays[a] = max(s.start.Sub(at), 0)
					return
				}
				if time.Now().After(deadline) {
					rig.t.Errorf("app %d still answers %s with version %d (want %d) %v after the change returned; Cache-Status %q %s",
						a, target.path, s.ver, want, time.Since(at).Round(time.Millisecond), s.status, s.bad)
					delays[a] = time.Since(at)
					return
				}
			}
		})
	}
	wg.Wait()
	return delays
}

// stats sums the instances' counters of route pattern ("" for all).
func (rig *localRig) stats(pattern string) httpcache.Stats {
	var s httpcache.Stats
	for _, a := range rig.apps {
		if pattern == "" {
			s.Add(a.Cache.Stats())
		} else {
			s.Add(a.Cache.RouteStats()[pattern])
		}
	}
	return s
}

// check judges every response: each must be a 200 with a body of its
// target, and none older than the history allows. It logs the figures.
func (rig *localRig) check() {
	t := rig.t
	t.Helper()
	all := rig.hist.all()
	var bad, stale, staleLocal, excused, local int
	var firstBad string
	var stales []string
	for _, s := range all {
		if s.bad != "" {
			if bad == 0 {
				firstBad = fmt.Sprintf("app %d, %s: %s", s.app, s.target.path, s.bad)
			}
			bad++
			continue
		}
		if s.local() {
			local++
		}
		why, exc := rig.hist.judge(s)
		if exc {
			excused++
		}
		if why != "" {
			stale++
			if s.local() {
				staleLocal++
			}
			if len(stales) < 10 {
				stales = append(stales, why)
			}
		}
	}
	t.Logf("%d responses (%d served from a local tier); %d older than a change a fill raced without a fence (allowed)", len(all), local, excused)
	rig.watchMu.Lock()
	if !rig.watchStart.IsZero() {
		t.Logf("tracking connections that changed without a fault: %d %q", len(rig.reconnects), rig.reconnects)
	}
	rig.watchMu.Unlock()
	if bad > 0 {
		t.Errorf("%d responses were not a 200 with the origin's body; first: %s", bad, firstBad)
	}
	if stale > 0 {
		t.Errorf("%d responses (%d of them local copies) older than a change that returned their grace before they started; first ones:\n  %s",
			stale, staleLocal, strings.Join(stales, "\n  "))
	}
}

// checkLocalShare fails the test unless every instance served local hits
// and, over all, at least min of the hits were local ones.
func (rig *localRig) checkLocalShare(min float64) {
	t := rig.t
	t.Helper()
	var all httpcache.Stats
	for i, a := range rig.apps {
		s := a.Cache.Stats()
		all.Add(s)
		ls := a.Cache.LocalStats()
		t.Logf("app %d: hits %d (local %d), stale %d, misses %d; tier: %d copies, %d B, %d buckets reported changed, %d resets, %d evictions",
			i, s.Hits, s.LocalHits, s.StaleServed, s.Misses, ls.Entries, ls.Bytes, ls.Invalidations, ls.Resets, ls.Evictions)
		if s.LocalHits == 0 {
			t.Errorf("app %d served no local hit", i)
		}
	}
	hits := all.Hits + all.StaleServed
	share := 0.0
	if hits > 0 {
		share = float64(all.LocalHits) / float64(hits)
	}
	t.Logf("local hits: %d of %d hits (%.1f%%), %d misses", all.LocalHits, hits, 100*share, all.Misses)
	if share < min {
		t.Errorf("only %.1f%% of the hits were local, want at least %.0f%%: the test would test little", 100*share, 100*min)
	}
}

// localDelays collects the delays until every instance stopped serving
// what a change replaced.
type localDelays struct {
	perApp, perChange []time.Duration
	byKind            map[string][]time.Duration // worst instance per change
}

func (d *localDelays) add(kind string, ds []time.Duration) {
	d.perApp = append(d.perApp, ds...)
	worst := slices.Max(ds)
	d.perChange = append(d.perChange, worst)
	if d.byKind == nil {
		d.byKind = map[string][]time.Duration{}
	}
	d.byKind[kind] = append(d.byKind[kind], worst)
}

// localQuantiles returns the p50, p99 and maximum of ds.
func localQuantiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Sorted(slices.Values(ds))
	at := func(q float64) time.Duration { return s[min(len(s)-1, max(0, int(q*float64(len(s))+0.5)-1))] }
	return at(0.5), at(0.99), s[len(s)-1]
}

func (d *localDelays) log(t testing.TB, what string) {
	t.Helper()
	r := func(x time.Duration) time.Duration { return x.Round(10 * time.Microsecond) }
	p50, p99, worst := localQuantiles(d.perChange)
	t.Logf("%s: delay until all %d instances stopped serving the old version, over %d changes: p50 %v, p99 %v, max %v",
		what, localInstances, len(d.perChange), r(p50), r(p99), r(worst))
	p50, p99, worst = localQuantiles(d.perApp)
	t.Logf("%s: per instance, over %d probes: p50 %v, p99 %v, max %v", what, len(d.perApp), r(p50), r(p99), r(worst))
	for _, k := range slices.Sorted(maps.Keys(d.byKind)) {
		p50, _, worst := localQuantiles(d.byKind[k])
		t.Logf("  %-9s %2d changes: p50 %v, max %v", k, len(d.byKind[k]), r(p50), r(worst))
	}
}

// itemsOf returns the items of family v that pred keeps.
func (rig *localRig) itemsOf(pred func(i int) bool) []string {
	var out []string
	for i, it := range rig.items {
		if pred(i) {
			out = append(out, it.item)
		}
	}
	return out
}

// localChange is one change made by a test: what it was, when it
// returned, and the item version to probe for.
type localChange struct {
	kind   string
	target localTarget
	want   int64
	at     time.Time
}

// change makes one change of kind through instance i%4 (or around the
// cache), on item i of family v (or i%2 of family r for a refresh),
// once every instance serves that item from its local tier, and records
// it in the history with localGrace.
func (rig *localRig) change(kind string, i int) (localChange, int) {
	t := rig.t
	t.Helper()
	ctx := context.Background()
	c := rig.apps[i%len(rig.apps)].Cache
	id := i % len(rig.items)
	target := rig.items[id]
	if kind == "refresh" {
		target = itemTarget("r", i%2)
	}
	warmed := rig.awaitLocal(target, 2*time.Second)
	ch := localChange{kind: kind, target: target}
	var vers map[string]int64
	var err error
	unfenced := false
	switch kind {
	case "bucket":
		vers = rig.origin.bump(target.item)
		_, err = c.PurgeBucket(ctx, localItemRoute, map[string]string{"id": strconv.Itoa(id)})
	case "url":
		vers = rig.origin.bump(target.item)
		_, err = c.PurgeURL(ctx, "http://"+serviceHost+target.path)
	case "route":
		vers = rig.origin.bump(rig.itemsOf(func(int) bool { return true })...)
		_, err = c.PurgeRoute(ctx, localItemRoute)
	case "tag":
		vers = rig.origin.bump(rig.itemsOf(func(j int) bool { return j%2 == id%2 })...)
		_, err = c.PurgeTag(ctx, "par"+strconv.Itoa(id%2))
	case "all":
		vers = rig.origin.bump(rig.itemsOf(func(int) bool { return true })...)
		_, err = c.PurgeAll(ctx)
	case "write":
		r := request(rig.http, "PUT", rig.apps[i%len(rig.apps)].URL+target.path, "Host", serviceHost)
		if r.err == nil && r.status != http.StatusNoContent {
			r.err = fmt.Errorf("status %d", r.status)
		}
		err = r.err
		vers = map[string]int64{target.item: rig.origin.version(target.item)}
	case "flushall":
		if !rig.origin.quiet("v") {
			t.Logf("flushall: fills still running after 2s; a racing fill may store older content (allowed)")
		}
		vers = rig.origin.bump(rig.itemsOf(func(int) bool { return true })...)
		err = rig.cfg.flush(ctx)
		unfenced = true
	case "refresh":
		// No purge: the origin changes, and the next refresh, which
		// starts localRefreshTTL after the last one stored, brings the
		// new version. Bump between the two, once the refreshes of the
		// last round (one per instance at most) are done.
		since := time.Now()
		last, ok := rig.waitStore(target, since, 0, 3*time.Second)
		if !ok {
			t.Errorf("refresh: %s was not refreshed within 3s", target.path)
			return ch, warmed
		}
		time.Sleep(max(0, 50*time.Millisecond-time.Since(last.at)))
		ch.want = rig.origin.bump(target.item)[target.item]
		e, ok := rig.waitStore(target, last.at, ch.want, 3*time.Second)
		if !ok {
			t.Errorf("refresh: %s was not refreshed to version %d within 3s", target.path, ch.want)
			return ch, warmed
		}
		ch.at = e.at // the store the hook saw is the change
		return ch, warmed
	default:
		panic(kind)
	}
	ch.at = time.Now()
	if err != nil {
		t.Errorf("%s: %v", kind, err)
	}
	rig.hist.changed(ch.at, localGrace, unfenced, kind, vers)
	ch.want = vers[target.item]
	return ch, warmed
}

// waitStore waits up to limit for a store of target seen after after,
// with a version of at least min.
func (rig *localRig) waitStore(target localTarget, after time.Time, min int64, limit time.Duration) (localEvent, bool) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if e, ok := rig.hist.lastStore(target.item, target.variant, after, min); ok {
			return e, true
		}
	}
	return localEvent{}, false
}

// runChanges makes the changes of kinds, rounds times over, under the
// load, probing every instance after each, and logs and returns the
// delays.
func (rig *localRig) runChanges(kinds []string, rounds int, pause time.Duration, what string) *localDelays {
	d := new(localDelays)
	warmed := 0
	n := 0
	for round := range rounds {
		for k, kind := range kinds {
			i := round*len(kinds) + k
			ch, w := rig.change(kind, i*5+round)
			if ch.at.IsZero() {
				continue
			}
			n++
			if w == localInstances {
				warmed++
			}
			d.add(kind, rig.probe(ch.target, ch.want, ch.at, 3*time.Second))
			time.Sleep(pause) // the load refills
		}
	}
	rig.t.Logf("%s: %d changes, %d of them while all %d instances served the item from their local tier", what, n, warmed, localInstances)
	d.log(rig.t, what)
	return d
}

// localPick is the load of the coherence tests: mostly the items of family
// v, some of the refreshed ones.
func (rig *localRig) localPick(r *rand.Rand) localTarget {
	if r.IntN(8) == 0 {
		return itemTarget("r", r.IntN(2))
	}
	return rig.items[r.IntN(len(rig.items))]
}

// warmUp waits until every instance serves every item from its local
// tier. Its limit exceeds the lock wait: after a restart of Redis, the
// first request of an item can wait that long for a fill notification
// that was lost while its instance's subscription reconnected (see
// afterFaultMaxLatency).
func (rig *localRig) warmUp() {
	rig.t.Helper()
	const limit = policy.DefaultLockWait + 3*time.Second
	for _, it := range append(slices.Clone(rig.items), itemTarget("r", 0), itemTarget("r", 1)) {
		if n, last := rig.awaitLocalStatus(it, limit); n != localInstances {
			rig.t.Fatalf("warm-up: only %d of %d instances served %s from their local tier within %v; the others answer: %s", n, localInstances, it.path, limit, last)
		}
	}
}

var localKinds = []string{"bucket", "url", "route", "tag", "all", "write", "refresh", "flushall"}

// TestLocalCoherenceUnderLoad: four instances with a local tier under a
// load of concurrent clients; the origin changes and the cache is purged
// by bucket, by URL, by route, by tag, wholly, by a write route, and
// refreshed, and Redis is flushed from outside. No request that starts
// 50 ms or more after a change returned is answered with what it
// replaced, on any instance; most hits are local ones.
func TestLocalCoherenceUnderLoad(t *testing.T) {
	srv := startServer(t)
	admin := srv.Client()
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := srv.Client()
			c.AddHook(h)
			return c
		},
		flush: func(ctx context.Context) error { return admin.FlushAll(ctx).Err() },
		nodes: func(ctx context.Context, fn func(context.Context, *redis.Client) error) error { return fn(ctx, admin) },
		opts:  []httpcache.Option{patient()},
	})
	rig.watchTrackers()
	start := time.Now()
	stop := rig.startLoad(8, rig.localPick)
	rig.warmUp()
	rig.runChanges(localKinds, 3, 60*time.Millisecond, "single node")
	stop()
	t.Logf("%v of load", time.Since(start).Round(time.Millisecond))
	rig.check()
	rig.checkLocalShare(0.5)
}

// TestLocalCoherenceOnCluster is TestLocalCoherenceUnderLoad, shorter, on
// a three-master Redis Cluster: the items' buckets are on every master,
// and each instance tracks every master.
func TestLocalCoherenceOnCluster(t *testing.T) {
	c := redistest.StartClusterT(t, 3)
	admin := clusterClient(c, nil)
	rig := newLocalRig(t, localRigConfig{
		items:  24,
		client: func(h redis.Hook) redis.UniversalClient { return clusterClient(c, h) },
		flush: func(ctx context.Context) error {
			return admin.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() })
		},
		nodes: admin.ForEachMaster,
		opts:  []httpcache.Option{patient()},
	})
	rig.watchTrackers()
	stop := rig.startLoad(8, rig.localPick)
	rig.warmUp()
	per := bucketsPerMaster(t, admin, rig.prefix)
	t.Logf("buckets per master: %v", per)
	if len(per) != 3 || slices.Contains(slices.Collect(maps.Values(per)), 0) {
		t.Fatalf("the items' buckets are not on every master: %v", per)
	}
	rig.runChanges(localKinds, 2, 60*time.Millisecond, "cluster")
	stop()
	rig.check()
	rig.checkLocalShare(0.5)
}

// redisClients returns CLIENT LIST of c, one map of fields per client.
func redisClients(t *testing.T, c *redis.Client) []map[string]string {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for line := range strings.Lines(list) {
		m := map[string]string{}
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		if m["id"] != "" {
			out = append(out, m)
		}
	}
	return out
}

// trackingClients returns the clients with tracking on (flag t) and the
// clients their invalidations are redirected to.
func trackingClients(t *testing.T, c *redis.Client) (tracking, targets []map[string]string) {
	t.Helper()
	all := redisClients(t, c)
	redirs := map[string]bool{}
	for _, m := range all {
		if strings.Contains(m["flags"], "t") {
			tracking = append(tracking, m)
			redirs[m["redir"]] = true
		}
	}
	for _, m := range all {
		if redirs[m["id"]] {
			targets = append(targets, m)
		}
	}
	return tracking, targets
}

func describeClients(cs []map[string]string) string {
	var parts []string
	for _, m := range cs {
		parts = append(parts, fmt.Sprintf("id=%s name=%q flags=%s redir=%s sub=%s", m["id"], m["name"], m["flags"], m["redir"], m["sub"]))
	}
	return strings.Join(parts, "; ")
}

// awaitTracking waits up to limit until every instance tracks the server
// again: one client with tracking on per instance, each redirected to a
// live client. It returns what it saw last.
func awaitTracking(t *testing.T, c *redis.Client, limit time.Duration) (bool, string) {
	t.Helper()
	var tracking, targets []map[string]string
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tracking, targets = trackingClients(t, c)
		broken := slices.ContainsFunc(tracking, func(m map[string]string) bool { return strings.Contains(m["flags"], "R") })
		if len(tracking) == localInstances && len(targets) == localInstances && !broken {
			return true, describeClients(tracking)
		}
	}
	return false, fmt.Sprintf("tracking: %s; targets: %s", describeClients(tracking), describeClients(targets))
}

// TestLocalInvalidationConnectionDropped: the connections that carry the
// instances' invalidations are killed (CLIENT KILL) under load, and the
// data changes at once, from outside the cache (a DEL of the bucket, or
// an HSET that rewrites its entry), while the instances may not hear of
// it. No copy older than the change is served past the bound after it;
// the instances track again and serve local hits again. Then the
// tracking connections are killed and kept from reconnecting (maxclients
// below the clients connected) while the data changes: past the bound
// after the kill no copy at all is served, and once connections are
// allowed again the instances track and serve local hits again.
func TestLocalInvalidationConnectionDropped(t *testing.T) {
	srv := startServer(t)
	admin := srv.Client()
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := srv.Client()
			c.AddHook(h)
			return c
		},
		flush:      func(ctx context.Context) error { return admin.FlushAll(ctx).Err() },
		opts:       []httpcache.Option{patient()},
		storeGrace: localTestBound,
	})
	stop := rig.startLoad(8, func(r *rand.Rand) localTarget { return rig.items[r.IntN(len(rig.items))] })
	rig.warmUp()
	ok, desc := awaitTracking(t, admin, 5*time.Second)
	t.Logf("tracking before: %s", desc)
	if !ok {
		t.Fatalf("not one tracking client per instance, each with a live redirect")
	}

	ctx := context.Background()
	// kill kills the clients of ms, each once, and returns how many.
	kill := func(ms []map[string]string) int {
		n := 0
		done := map[string]bool{}
		for _, m := range ms {
			if done[m["id"]] {
				continue
			}
			done[m["id"]] = true
			if err := admin.Do(ctx, "client", "kill", "id", m["id"]).Err(); err == nil {
				n++
			}
		}
		return n
	}
	modes := []struct {
		name string
		kill func() int
	}{
		{"every tracking connection", func() int {
			tracking, targets := trackingClients(t, admin)
			return kill(append(tracking, targets...))
		}},
		{"one instance's tracking connection", func() int {
			tracking, targets := trackingClients(t, admin)
			if len(tracking) == 0 {
				return 0
			}
			one := tracking[:1]
			for _, m := range targets {
				if m["id"] == one[0]["redir"] {
					one = append(one, m)
				}
			}
			return kill(one)
		}},
		{"every pub/sub connection", func() int {
			n, err := admin.ClientKillByFilter(ctx, "type", "pubsub").Result()
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}},
	}
	// change bumps target's version and changes its entry in Redis from
	// outside the cache, and records the change with the bound as grace.
	change := func(target localTarget, hset bool, what string) (int64, time.Time) {
		t.Helper()
		in, err := rig.apps[0].Cache.Inspect(ctx, "http://"+serviceHost+target.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		key := rig.apps[0].Store.BucketKey(in.Bucket)
		field, err := hex.DecodeString(in.Field)
		if err != nil {
			t.Fatal(err)
		}
		old := rig.origin.version(target.item)
		vers := rig.origin.bump(target.item)
		if hset {
			raw, err := admin.HGet(ctx, key, string(field)).Bytes()
			oldBody, newBody := localBody(target.item, "", old), localBody(target.item, "", vers[target.item])
			if err != nil || !bytes.Contains(raw, []byte(oldBody)) {
				t.Fatalf("HGET %s: %v; stored value %q lacks %q", key, err, raw, oldBody)
			}
			if err := admin.HSet(ctx, key, string(field), bytes.Replace(raw, []byte(oldBody), []byte(newBody), 1)).Err(); err != nil {
				t.Fatal(err)
			}
		} else if err := admin.Del(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		rig.hist.changed(at, localTestBound, true, what, vers)
		return vers[target.item], at
	}
	var d localDelays
	for i := range 2 * len(modes) {
		mode := modes[i%len(modes)]
		hset := i >= len(modes)
		how := map[bool]string{false: "DEL", true: "HSET"}[hset]
		target := rig.items[i%len(rig.items)]
		if n := rig.awaitLocal(target, 3*time.Second); n != localInstances {
			t.Errorf("%s: only %d instances served %s locally before the kill", mode.name, n, target.path)
		}
		rig.origin.quiet("v")
		resets := rig.resets()
		killed := mode.kill()
		want, at := change(target, hset, mode.name+" killed, then "+how)
		ds := rig.probe(target, want, at, 5*time.Second)
		d.add(how, ds)
		ok, desc := awaitTracking(t, admin, 5*time.Second)
		if !ok {
			t.Errorf("%s killed: the instances do not track again within 5s: %s", mode.name, desc)
		}
		n := rig.awaitLocal(target, 5*time.Second)
		t.Logf("%s killed (%d connections), then %s of %s: old version gone from every instance after %v (worst); tracking again and %d/%d instances serve local hits %v after the change; resets reported %d",
			mode.name, killed, how, target.path, slices.Max(ds).Round(10*time.Microsecond), n, localInstances, time.Since(at).Round(time.Millisecond), rig.resets()-resets)
		if killed == 0 {
			t.Errorf("%s: no connection killed", mode.name)
		}
		if n != localInstances {
			t.Errorf("%s killed: only %d instances serve local hits again within 5s", mode.name, n)
		}
	}
	d.log(t, "connection dropped")

	// Tracking kept down: no new connection is accepted while the
	// tracking connections are gone and the data changes.
	target := rig.items[0]
	if n := rig.awaitLocal(target, 3*time.Second); n != localInstances {
		t.Errorf("kept down: only %d instances served %s locally before the kill", n, target.path)
	}
	rig.origin.quiet("v")
	connected := faultRedisInfo(t, admin, "connected_clients")
	tracking, targets := trackingClients(t, admin)
	if err := admin.ConfigSet(ctx, "maxclients", strconv.FormatInt(connected-int64(len(tracking)), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	restore := sync.OnceFunc(func() {
		if err := admin.ConfigSet(ctx, "maxclients", "10000").Err(); err != nil {
			t.Errorf("restore maxclients: %v", err)
		}
	})
	t.Cleanup(restore)
	killed := kill(append(tracking, targets...))
	killedAt := time.Now()
	want, at := change(target, false, "tracking kept down, then DEL")
	ds := rig.probe(target, want, at, 5*time.Second)
	time.Sleep(time.Until(killedAt.Add(3 * localTestBound)))
	left, _ := trackingClients(t, admin)
	restore()
	restoredAt := time.Now()
	t.Logf("tracking kept down for %v (%d connections killed; %d tracking while down): old version gone from every instance %v after the change (worst)",
		restoredAt.Sub(killedAt).Round(time.Millisecond), killed, len(left), slices.Max(ds).Round(10*time.Microsecond))
	if len(left) != 0 {
		t.Errorf("kept down: %d tracking connections while new connections were refused: %s", len(left), describeClients(left))
	}
	if ok, desc := awaitTracking(t, admin, 5*time.Second); !ok {
		t.Errorf("kept down: the instances do not track again within 5s of connections being allowed: %s", desc)
	}
	n, last := rig.awaitLocalStatus(target, 5*time.Second)
	t.Logf("kept down: %d/%d instances serve local hits %v after connections were allowed again", n, localInstances, time.Since(restoredAt).Round(time.Millisecond))
	if n != localInstances {
		t.Errorf("kept down: only %d instances serve local hits again within 5s; the others answer: %s", n, last)
	}
	stop()
	rig.checkNoLocal("tracking kept down", killedAt.Add(localTestBound), restoredAt)
	rig.check()
	rig.checkLocalShare(0.3)
}

// resets sums the reports of every bucket the instances' tiers had.
func (rig *localRig) resets() int64 {
	var n int64
	for _, a := range rig.apps {
		n += a.Cache.LocalStats().Resets
	}
	return n
}

// checkNoLocal fails the test for every response served from a local
// tier to a request started in [from, to).
func (rig *localRig) checkNoLocal(what string, from, to time.Time) {
	t := rig.t
	t.Helper()
	n, local := 0, 0
	var first string
	for _, s := range rig.hist.all() {
		if s.start.Before(from) || !s.start.Before(to) {
			continue
		}
		n++
		if s.local() {
			if local == 0 {
				first = fmt.Sprintf("app %d, %s, started %v after the bound, Cache-Status %q", s.app, s.target.path, s.start.Sub(from).Round(10*time.Microsecond), s.status)
			}
			local++
		}
	}
	t.Logf("%s: %d requests started between the bound and the end of the outage (%v)", what, n, to.Sub(from).Round(time.Millisecond))
	if local > 0 {
		t.Errorf("%s: %d of them served from a local tier past the bound; first: %s", what, local, first)
	}
	if n == 0 {
		t.Errorf("%s: no request in the window", what)
	}
}

// TestLocalRedisKilledAndPaused: under load, Redis is killed and restarted
// empty, then paused. Every response is still the origin's; once Redis
// stopped answering, no copy is served past the bound (and after the
// kill the origin changed, so none may be older than that past the
// bound); local hits come back once it answers again.
func TestLocalRedisKilledAndPaused(t *testing.T) {
	const outage = 1500 * time.Millisecond
	quietRedisLog(t)
	srv := startServer(t)
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := outageClient(srv)
			c.AddHook(h)
			return c
		},
		storeGrace: localTestBound,
	})
	stop := rig.startLoad(8, func(r *rand.Rand) localTarget { return rig.items[r.IntN(len(rig.items))] })
	rig.warmUp()
	all := rig.itemsOf(func(int) bool { return true })

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	rig.hist.changed(killed, localTestBound, true, "redis killed, origin changed", rig.origin.bump(all...))
	time.Sleep(outage)
	restartAt := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	back, last := rig.awaitLocalStatus(rig.items[0], 10*time.Second)
	t.Logf("redis killed for %v; %d/%d instances serve local hits again %v after the restart",
		restartAt.Sub(killed).Round(time.Millisecond), back, localInstances, time.Since(restartAt).Round(time.Millisecond))
	if back != localInstances {
		t.Errorf("after the restart, only %d instances serve local hits within 10s; the others answer: %s", back, last)
	}
	rig.checkNoLocal("redis killed", killed.Add(localTestBound), restartAt)

	rig.warmUp()
	if err := srv.Pause(outage); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	time.Sleep(outage)
	back, last = rig.awaitLocalStatus(rig.items[0], 6*time.Second)
	t.Logf("redis paused for %v; %d/%d instances serve local hits again %v after",
		outage, back, localInstances, time.Since(paused.Add(outage)).Round(time.Millisecond))
	if back != localInstances {
		t.Errorf("after the pause, only %d instances serve local hits within 6s; the others answer: %s", back, last)
	}
	// The pause began before Pause returned and ends outage after it
	// began: the window stops short of that.
	rig.checkNoLocal("redis paused", paused.Add(localTestBound), paused.Add(outage-50*time.Millisecond))
	stop()
	rig.check()
	rig.checkLocalShare(0.3)
}

// TestLocalManyVariants: broadcast tracking reports buckets, not fields,
// so a fill of one variant drops every copy of its bucket on every
// instance. It checks that it does, then measures the local hit ratio of
// a route of 4 buckets of 32 variants against a route of 128 one-variant
// buckets under the same load, every entry refreshed every second.
func TestLocalManyVariants(t *testing.T) {
	srv := startServer(t)
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := srv.Client()
			c.AddHook(h)
			return c
		},
		opts: []httpcache.Option{patient()},
	})

	// Every instance holds variants 0-7 of bucket 99; a fill of variant
	// 8 on one instance drops them on all.
	for v := range 8 {
		if n := rig.awaitLocal(variantTarget("m", 99, strconv.Itoa(v)), 3*time.Second); n != localInstances {
			t.Fatalf("variant %d served locally by %d instances", v, n)
		}
	}
	fill := variantTarget("m", 99, "8")
	before := time.Now()
	if s := rig.do(1, fill, true); !strings.Contains(s.status, "stored") {
		t.Fatalf("fill of %s: Cache-Status %q %s", fill.path, s.status, s.bad)
	}
	e, ok := rig.waitStore(fill, before, 0, 3*time.Second)
	if !ok {
		t.Fatal("the hook saw no store of the fill")
	}
	time.Sleep(time.Until(e.at.Add(localGrace)))
	for v := range 8 {
		for a := range rig.apps {
			if s := rig.do(a, variantTarget("m", 99, strconv.Itoa(v)), true); s.local() {
				t.Errorf("app %d served variant %d from its local tier after a fill of another variant of its bucket: Cache-Status %q", a, v, s.status)
			}
		}
	}

	const buckets, variants = 4, 32
	stop := rig.startLoad(8, func(r *rand.Rand) localTarget {
		if r.IntN(2) == 0 {
			return variantTarget("m", r.IntN(buckets), strconv.Itoa(r.IntN(variants)))
		}
		return itemTarget("o", r.IntN(buckets*variants))
	})
	time.Sleep(localChurnTTL + 500*time.Millisecond) // every URL filled, refreshes begin
	m0, o0 := rig.stats(localVariantsRoute), rig.stats(localOneRoute)
	time.Sleep(3 * time.Second)
	m1, o1 := rig.stats(localVariantsRoute), rig.stats(localOneRoute)
	stop()
	ratio := func(a, b httpcache.Stats) (local, hits float64, n int64) {
		n = (b.Hits + b.StaleServed + b.Misses) - (a.Hits + a.StaleServed + a.Misses)
		if n == 0 {
			return 0, 0, 0
		}
		return float64(b.LocalHits-a.LocalHits) / float64(n), float64(b.Hits+b.StaleServed-a.Hits-a.StaleServed) / float64(n), n
	}
	ml, mh, mn := ratio(m0, m1)
	ol, oh, on := ratio(o0, o1)
	t.Logf("%d buckets x %d variants: %d requests, %.1f%% local hits, %.1f%% hits; %d refreshes", buckets, variants, mn, 100*ml, 100*mh, m1.Refreshed-m0.Refreshed)
	t.Logf("%d one-variant buckets:    %d requests, %.1f%% local hits, %.1f%% hits; %d refreshes", buckets*variants, on, 100*ol, 100*oh, o1.Refreshed-o0.Refreshed)
	if ol > 0 {
		t.Logf("local hit ratio, many variants / one variant: %.2f", ml/ol)
	}
	if mn == 0 || on == 0 || ol == 0 {
		t.Errorf("the load did not measure: %d and %d requests, %.1f%% local hits on the one-variant route", mn, on, 100*ol)
	}
	rig.check()
}

// failReads is a go-redis hook that fails the reads of entries (HGET,
// HMGET) while on is set, leaving the tracker, which has a client of its
// own, untouched.
type failReads struct{ on *atomic.Bool }

func (f failReads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f failReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (f failReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.on.Load() && (cmd.Name() == "hget" || cmd.Name() == "hmget") {
			err := errors.New("injected read failure")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

// TestLocalBreakerProbe: the store's reads fail until the circuit breaker
// opens, while the tracker stays healthy and the local copies valid. Once
// the reads work again, the first request after the breaker's cooldown is
// one the local tier answers; the breaker must still close, so that
// requests the tier cannot answer use the store again rather than
// bypassing it for good.
func TestLocalBreakerProbe(t *testing.T) {
	srv := startServer(t)
	var failing atomic.Bool
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := srv.Client()
			c.AddHook(h)
			c.AddHook(failReads{&failing})
			return c
		},
	})
	local := rig.items[0]
	if n := rig.awaitLocal(local, 5*time.Second); n != localInstances {
		t.Fatalf("only %d instances serve %s locally", n, local.path)
	}
	failing.Store(true)
	opened := false
	for i := range 50 {
		if s := rig.do(0, itemTarget("v", 100+i), true); strings.Contains(s.status, "detail=store-unavailable") {
			opened = true
			break
		}
	}
	if !opened {
		t.Fatal("the breaker did not open while every read failed")
	}
	failing.Store(false)
	time.Sleep(1200 * time.Millisecond) // the default cooldown, 1s, and some
	if s := rig.do(0, local, true); !s.local() {
		t.Logf("the first request after the cooldown was not a local hit (Cache-Status %q): the probe went to the store", s.status)
	}
	var s localSample
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s = rig.do(0, itemTarget("v", 200), true); !strings.Contains(s.status, "fwd=bypass") {
			break
		}
	}
	if strings.Contains(s.status, "fwd=bypass") {
		t.Errorf("3s after the reads work again and a local hit took the breaker's probe, requests still bypass the store: Cache-Status %q", s.status)
	}
	rig.check()
}
