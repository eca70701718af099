package integration

// The local tier's coherence through what Redis does to the buckets on
// its own, and through a change of master: an eviction (allkeys-lru past
// maxmemory), an expiry that Redis applies before the entry's own
// lifetime ends, a Sentinel failover. Each runs four instances over the
// rig of local_test.go and is judged by its rules: the origin's version
// is in every body, and no request that starts the grace (50 ms) or more
// after a change may be answered with what the change replaced.
//
// Redis deletes a bucket at a moment the test does not choose, so the
// change is taken to be when the test learns of the deletion, which is
// after it happened: a keyspace event (notify-keyspace-events), which
// Redis queues as it deletes the key, as it queues the instances'
// invalidations, or an EXISTS that answers 0. Before the deletion the
// origin already answers a newer version, which the cache was not told
// of: the entry in Redis, and any copy of it, may be served until Redis
// drops the bucket, and no request may get it 50 ms after. The failover
// test purges instead. Run with -v for the delays.

import (
	"context"
	"fmt"
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
	"github.com/readthrough/readthrough/internal/redistest"
)

// keyEvent is one keyspace event: Redis evicted or expired key.
type keyEvent struct {
	kind string // "evicted" or "expired"
	key  string
	at   time.Time // when the test received it
}

// keyEvents subscribes a new client of srv to the keyspace events of
// kinds in database 0 (the server must have notify-keyspace-events
// set), and returns the events as they arrive, until the test ends.
func keyEvents(t *testing.T, srv *redistest.Server, kinds ...string) <-chan keyEvent {
	t.Helper()
	var channels []string
	for _, k := range kinds {
		channels = append(channels, "__keyevent@0__:"+k)
	}
	ps := srv.Client().Subscribe(t.Context(), channels...)
	if _, err := ps.Receive(t.Context()); err != nil { // the first confirmation
		t.Fatalf("subscribe to %v: %v", channels, err)
	}
	out := make(chan keyEvent, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel(redis.WithChannelSize(1 << 12)) {
			select {
			case out <- keyEvent{kind: strings.TrimPrefix(m.Channel, "__keyevent@0__:"), key: m.Payload, at: time.Now()}:
			default:
				t.Errorf("keyspace events: buffer full, event of %s lost", m.Payload)
			}
		}
	}()
	t.Cleanup(func() { ps.Close(); <-done })
	return out
}

// bucketKeys returns the Redis key of each target's bucket, mapped to
// the target. It reads each entry once (Inspect), so call it before the
// reads that matter.
func (rig *localRig) bucketKeys(targets []localTarget) map[string]localTarget {
	rig.t.Helper()
	keys := make(map[string]localTarget, len(targets))
	for _, target := range targets {
		in, err := rig.apps[0].Cache.Inspect(context.Background(), "http://"+serviceHost+target.path, nil)
		if err != nil {
			rig.t.Fatal(err)
		}
		keys[rig.apps[0].Store.BucketKey(in.Bucket)] = target
	}
	return keys
}

// awaitAllLocal waits until every instance serves each of targets from its
// local tier, and fails the test when one does not within 3s.
func (rig *localRig) awaitAllLocal(targets []localTarget) {
	rig.t.Helper()
	for _, target := range targets {
		if n, last := rig.awaitLocalStatus(target, 3*time.Second); n != localInstances {
			rig.t.Fatalf("only %d of %d instances serve %s from their local tier within 3s; the others answer: %s", n, localInstances, target.path, last)
		}
	}
}

// TestLocalEvictionReported: a Redis with allkeys-lru, four instances
// holding local copies of 48 items under a load of local hits. The
// origin changes every item without telling the cache; then maxmemory
// is lowered under what Redis uses while the instances fill entries of
// another route, until Redis has evicted every item's bucket (the items'
// first: the instances read them from their local tiers, so Redis sees
// them as the least recently used). Once Redis evicted a bucket, no
// instance may answer its item with the old version past the grace: its
// copies must be dropped, and the next request fills from the origin.
// Local hits resume on the new version.
func TestLocalEvictionReported(t *testing.T) {
	const (
		items = 48
		// probed is how many of the first items evicted are probed on
		// every instance as they are: Redis evicts in bursts (see below),
		// and probing every item of a burst at once would measure the
		// machine's load. The load and a sweep after the fill check the
		// others.
		probed = 4
		// step is how far under what Redis uses maxmemory is lowered,
		// every 50 ms.
		step = 4 << 10
	)
	srv := startServer(t, "--maxmemory-policy", "allkeys-lru", "--notify-keyspace-events", "Ee")
	admin := srv.Client()
	rig := newLocalRig(t, localRigConfig{
		items: items,
		client: func(h redis.Hook) redis.UniversalClient {
			c := srv.Client()
			c.AddHook(h)
			return c
		},
		opts: []httpcache.Option{patient()},
	})
	ctx := context.Background()
	keys := rig.bucketKeys(rig.items)
	events := keyEvents(t, srv, "evicted")
	rig.awaitAllLocal(rig.items)
	newVers := rig.origin.bump(rig.itemsOf(func(int) bool { return true })...)
	stopLoad := rig.startLoad(4, func(r *rand.Rand) localTarget { return rig.items[r.IntN(len(rig.items))] })

	// Each instance's Redis pool grows to what the load and the probes
	// need before the memory is measured: a new connection takes tens of
	// kilobytes of Redis's memory.
	var grow sync.WaitGroup
	for w := range 16 {
		grow.Go(func() {
			for i := range 4 {
				rig.do((w+i)%len(rig.apps), itemTarget("o", 1_000_000+w*4+i), false)
			}
		})
	}
	grow.Wait()
	time.Sleep(200 * time.Millisecond) // the burst's buffers freed

	// Each eviction of an item's bucket is a change: the next fill brings
	// the new version.
	var (
		mu        sync.Mutex
		evicted   = map[string]time.Time{} // item -> first eviction seen
		order     []localTarget            // items in the order of their first eviction
		evictions int                      // of items' buckets, repeats included
		others    int                      // other keys evicted
		d         localDelays
		probes    sync.WaitGroup
		all       = make(chan struct{})
	)
	fillStart := time.Now()
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			var ev keyEvent
			select {
			case <-stopWatch:
				return
			case ev = <-events:
			}
			target, ok := keys[ev.key]
			mu.Lock()
			if !ok {
				others++
				mu.Unlock()
				continue
			}
			evictions++
			rig.hist.changed(ev.at, localGrace, false, "bucket evicted by redis", map[string]int64{target.item: newVers[target.item]})
			_, seen := evicted[target.item]
			if !seen {
				evicted[target.item] = ev.at
				order = append(order, target)
				if len(evicted) == items {
					close(all)
				}
			}
			n := len(order)
			mu.Unlock()
			if !seen && n <= probed {
				probes.Go(func() {
					ds := rig.probe(target, newVers[target.item], ev.at, 3*time.Second)
					mu.Lock()
					d.add("evicted", ds)
					mu.Unlock()
				})
			}
		}
	}()

	// Redis's used_memory moves by tens of kilobytes with its clients'
	// buffers, more than the fill adds in a second, and drifts down as
	// Redis frees idle buffers. So maxmemory starts at what Redis uses
	// and, every 50 ms, goes down to step under what it uses then, never
	// up. Redis then evicts in bursts (the items' 48 buckets take about
	// 20 KB, less than the buffers move), the least recently used first.
	limit := faultRedisInfo(t, admin, "used_memory")
	start := limit
	clients := faultRedisInfo(t, admin, "connected_clients")
	setLimit := func(n int64) {
		if err := admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(n, 10)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setLimit(limit)
	restore := sync.OnceFunc(func() {
		if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			t.Errorf("restore maxmemory: %v", err)
		}
	})
	t.Cleanup(restore)
	fills := 0
	tick := time.NewTicker(50 * time.Millisecond)
	timeout := time.After(5 * time.Second)
fill:
	for {
		select {
		case <-all:
			break fill
		case <-timeout:
			break fill
		case <-tick.C:
			if u := faultRedisInfo(t, admin, "used_memory") - step; u < limit {
				limit = u
				setLimit(limit)
			}
		default:
			rig.do(fills%len(rig.apps), itemTarget("o", fills), false)
			fills++
		}
	}
	tick.Stop()
	fillTime := time.Since(fillStart)
	restore()
	probes.Wait()
	close(stopWatch)
	<-watchDone

	var spread []time.Duration
	var last time.Time
	for _, at := range evicted {
		spread = append(spread, at.Sub(fillStart))
		if at.After(last) {
			last = at
		}
	}
	t.Logf("maxmemory from %d B down to %d B, allkeys-lru: %d fills of another route in %v; Redis evicted %d of %d items' buckets (%d evictions) and %d other keys (INFO evicted_keys %d); Redis clients %d before, %d after",
		start, limit, fills, fillTime.Round(time.Millisecond), len(evicted), items, evictions, others, faultRedisInfo(t, admin, "evicted_keys"), clients, faultRedisInfo(t, admin, "connected_clients"))
	if len(evicted) < 8 {
		t.Fatalf("only %d of %d items' buckets evicted: the test would test little", len(evicted), items)
	}
	p50, _, worst := localQuantiles(spread)
	t.Logf("first evictions of the items: from %v to %v after maxmemory was set (median %v)",
		slices.Min(spread).Round(time.Millisecond), worst.Round(time.Millisecond), p50.Round(time.Millisecond))
	d.log(t, fmt.Sprintf("first %d items evicted", probed))

	// Every instance answers each evicted item with the new version.
	time.Sleep(time.Until(last.Add(localGrace)))
	for _, target := range order {
		for a := range rig.apps {
			if s := rig.do(a, target, true); s.bad == "" && s.ver != newVers[target.item] {
				t.Errorf("app %d answers %s, evicted %v before, with version %d, want %d; Cache-Status %q",
					a, target.path, s.start.Sub(evicted[target.item]).Round(time.Millisecond), s.ver, newVers[target.item], s.status)
			}
		}
	}
	// Over every response: how long after its item's first eviction an
	// instance last served the old version, and from where.
	var lastOld []time.Duration
	oldLocal := 0
	for _, s := range rig.hist.all() {
		at, ok := evicted[s.target.item]
		if !ok || s.bad != "" || s.ver >= newVers[s.target.item] || s.start.Before(at) {
			continue
		}
		lastOld = append(lastOld, s.start.Sub(at))
		if s.local() {
			oldLocal++
		}
	}
	if len(lastOld) > 0 {
		t.Logf("%d responses with the old version started after their item's eviction (%d of them local copies), the latest %v after it (grace %v)",
			len(lastOld), oldLocal, slices.Max(lastOld).Round(10*time.Microsecond), localGrace)
	} else {
		t.Logf("no response with the old version started after its item's eviction")
	}
	for _, target := range order[:min(4, len(order))] {
		if n, last := rig.awaitLocalStatus(target, 3*time.Second); n != localInstances {
			t.Errorf("after the eviction of %s, only %d instances serve it from their local tier again within 3s; the others answer: %s", target.path, n, last)
		}
	}
	stopLoad()
	for i, a := range rig.apps {
		ls := a.Cache.LocalStats()
		t.Logf("app %d: tier: %d copies, %d buckets reported changed, %d resets", i, ls.Entries, ls.Invalidations, ls.Resets)
	}
	rig.check()
}

// TestLocalExpiryReported: four instances hold local copies of an item;
// the origin changes it without telling the cache, and the bucket's key
// is given a TTL in Redis (PEXPIRE) far shorter than the entry's own
// freshness, as an expiry that Redis applies before the entry's lifetime
// ends. In half the rounds nothing reads the key, so Redis's active
// expiry deletes it; in the others the test polls it with EXISTS, which
// deletes it once it expired. Once the key is gone, no instance may
// answer with the old version past the grace.
func TestLocalExpiryReported(t *testing.T) {
	const rounds = 8
	srv := startServer(t, "--notify-keyspace-events", "Ex")
	admin := srv.Client()
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := srv.Client()
			c.AddHook(h)
			return c
		},
		opts: []httpcache.Option{patient()},
	})
	ctx := context.Background()
	keys := rig.bucketKeys(rig.items)
	keyOf := map[string]string{}
	for k, target := range keys {
		keyOf[target.item] = k
	}
	events := keyEvents(t, srv, "expired")
	stop := rig.startLoad(6, func(r *rand.Rand) localTarget { return rig.items[r.IntN(len(rig.items))] })
	rig.awaitAllLocal(rig.items)

	var d localDelays
	var lags []time.Duration // from the TTL's end until the key was gone
	for round := range rounds {
		target := rig.items[round%len(rig.items)]
		key := keyOf[target.item]
		access := round%2 == 1
		kind := map[bool]string{false: "active", true: "access"}[access]
		if n := rig.awaitLocal(target, 3*time.Second); n != localInstances {
			t.Errorf("round %d: only %d instances served %s locally before the expiry", round, n, target.path)
		}
		want := rig.origin.bump(target.item)[target.item]
		ttl := 100*time.Millisecond + time.Duration(round)*20*time.Millisecond
		if ok, err := admin.PExpire(ctx, key, ttl).Result(); err != nil || !ok {
			t.Fatalf("PEXPIRE %s %v: %v, %v", key, ttl, ok, err)
		}
		end := time.Now().Add(ttl)

		// The key is gone when its event arrives, or when EXISTS (which
		// deletes an expired key it reads) answers 0.
		var gone time.Time
		limit := time.After(3 * time.Second)
		var poll <-chan time.Time
		tick := time.NewTicker(5 * time.Millisecond)
		if access {
			poll = tick.C
		}
	wait:
		for {
			select {
			case ev := <-events:
				if ev.key == key {
					gone = ev.at
					break wait
				}
			case <-poll:
				if n, err := admin.Exists(ctx, key).Result(); err == nil && n == 0 {
					gone = time.Now()
					break wait
				}
			case <-limit:
				t.Fatalf("round %d: %s still in Redis 3s after PEXPIRE %v", round, key, ttl)
			}
		}
		tick.Stop()
		lags = append(lags, gone.Sub(end))
		rig.hist.changed(gone, localGrace, false, "bucket expired in redis ("+kind+")", map[string]int64{target.item: want})
		ds := rig.probe(target, want, gone, 3*time.Second)
		d.add(kind, ds)
		t.Logf("round %d (%s expiry): %s gone %v after its TTL of %v ended; old version gone from every instance %v after (worst)",
			round, kind, target.path, gone.Sub(end).Round(100*time.Microsecond), ttl, slices.Max(ds).Round(10*time.Microsecond))
		time.Sleep(20 * time.Millisecond)
	}
	p50, _, worst := localQuantiles(lags)
	t.Logf("Redis deleted the keys %v after their TTL ended at the median, %v at worst", p50.Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
	d.log(t, "expired")
	if n := rig.awaitLocal(rig.items[0], 3*time.Second); n != localInstances {
		t.Errorf("after the expiries, only %d instances serve %s from their local tier", n, rig.items[0].path)
	}
	stop()
	rig.check()
	rig.checkLocalShare(0.3)
}

// clientPort returns the port of the server c's commands go to (INFO
// server, tcp_port), or "" when it cannot tell.
func clientPort(ctx context.Context, c redis.UniversalClient) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return ""
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "tcp_port:"); ok {
			return v
		}
	}
	return ""
}

// TestLocalFailoverReported: a master, one replica and a Sentinel; four
// instances with the local tier reach Redis through Sentinel-aware
// clients, under load. The master fails over to the replica (SENTINEL
// FAILOVER: the old master stays up, and stays a master for seconds,
// holding the same entries). Once every instance's client uses the new
// master, an item is purged through one instance: no instance may serve
// the old version past the bound (the invalidations of the failover's
// first moments are lost: the tracking connections are still on the old
// master). Every instance's tier must report
// every bucket changed (its tracking connection moved to the new master),
// and local hits resume; later purges are seen within the grace too.
func TestLocalFailoverReported(t *testing.T) {
	quietRedisLog(t)
	master := startServer(t, "--repl-diskless-sync-delay", "0")
	mhost, mport, _ := net.SplitHostPort(master.Addr())
	replica := startServer(t, "--replicaof", mhost, mport)
	if err := redistest.WaitReplicaSynced(replica, sentinelLimit); err != nil {
		t.Fatal(err)
	}
	sen := redistest.StartSentinelT(t,
		"sentinel monitor "+sentinelMaster+" "+mhost+" "+mport+" 1",
		"sentinel down-after-milliseconds "+sentinelMaster+" 1000",
		"sentinel failover-timeout "+sentinelMaster+" 5000",
	)
	sc := sen.Client()
	ctx := t.Context()
	for deadline := time.Now().Add(sentinelLimit); !sentinelReplicaKnown(ctx, sc, replica.Addr()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sentinel never listed %s as a healthy replica%s", replica.Addr(), sen.LogTail())
		}
	}
	rig := newLocalRig(t, localRigConfig{
		client: func(h redis.Hook) redis.UniversalClient {
			c := sentinelClientFor(t, sen)
			c.AddHook(h)
			return c
		},
		opts: []httpcache.Option{patient()},
	})
	stop := rig.startLoad(8, func(r *rand.Rand) localTarget { return rig.items[r.IntN(len(rig.items))] })
	rig.awaitAllLocal(rig.items)
	resets := make([]int64, len(rig.apps))
	for i, a := range rig.apps {
		resets[i] = a.Cache.LocalStats().Resets
	}
	// resetApps lists the instances whose tier reported every bucket
	// changed since the failover began.
	resetApps := func() []int {
		var out []int
		for i, a := range rig.apps {
			if a.Cache.LocalStats().Resets > resets[i] {
				out = append(out, i)
			}
		}
		return out
	}

	fault := time.Now()
	for {
		err := sc.Failover(ctx, sentinelMaster).Err()
		if err == nil {
			break
		}
		if time.Since(fault) > sentinelLimit {
			t.Fatalf("SENTINEL FAILOVER: %v%s", err, sen.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for sentinelMasterAddr(ctx, sc) != replica.Addr() {
		if time.Since(fault) > sentinelLimit {
			t.Fatalf("failover not done %v after SENTINEL FAILOVER: sentinel says master %s%s", sentinelLimit, sentinelMasterAddr(ctx, sc), sen.LogTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
	switched := time.Now()
	oldAdmin, newAdmin := master.Client(), replica.Client()
	// When the old master stopped being one (the Sentinel turns it into
	// a replica of the new one, which kills its clients), and when the
	// last tracking connection left it.
	var demoted, trackersLeft time.Time
	watchStop, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		for demoted.IsZero() || trackersLeft.IsZero() {
			select {
			case <-watchStop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if demoted.IsZero() && redisRole(ctx, master.Addr()) == "slave" {
				demoted = time.Now()
			}
			if trackersLeft.IsZero() {
				if list, err := oldAdmin.ClientList(ctx).Result(); err == nil && !strings.Contains(list, ":tracker:") {
					trackersLeft = time.Now()
				}
			}
		}
	}()
	_, newPort, _ := net.SplitHostPort(replica.Addr())
	for i, a := range rig.apps {
		for clientPort(ctx, a.Client) != newPort {
			if time.Since(switched) > 5*time.Second {
				t.Fatalf("app %d's client does not use the new master 5s after the failover", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	onNew := time.Now()
	t.Logf("failover done %v after SENTINEL FAILOVER; every instance's client on the new master %v after; tiers reset by then: %v",
		switched.Sub(fault).Round(time.Millisecond), onNew.Sub(switched).Round(time.Millisecond), resetApps())

	// The first purge after the failover, of an item every instance held
	// before it.
	var d localDelays
	purge := func(i int, what string, grace time.Duration) {
		t.Helper()
		target := rig.items[i%len(rig.items)]
		var local []int
		for a := range rig.apps {
			if rig.do(a, target, true).local() {
				local = append(local, a)
			}
		}
		reset := resetApps()
		onOld, _ := trackingClients(t, oldAdmin)
		onNewMaster, _ := trackingClients(t, newAdmin)
		want := rig.origin.bump(target.item)[target.item]
		if _, err := rig.apps[i%len(rig.apps)].Cache.PurgeBucket(ctx, localItemRoute, map[string]string{"id": strconv.Itoa(i % len(rig.items))}); err != nil {
			t.Errorf("%s: purge of %s: %v", what, target.path, err)
			return
		}
		at := time.Now()
		rig.hist.changed(at, grace, false, what, map[string]int64{target.item: want})
		ds := rig.probe(target, want, at, 3*time.Second)
		d.add(what, ds)
		var per []string
		for a, x := range ds {
			per = append(per, fmt.Sprintf("app %d %v", a, x.Round(10*time.Microsecond)))
		}
		// The instances that answered with what the purge replaced to a
		// request started past the grace (rig.check lists them too).
		late := make([]time.Duration, len(rig.apps))
		for _, s := range rig.hist.all() {
			if s.target == target && s.bad == "" && s.ver < want && !s.start.Before(at.Add(grace)) {
				late[s.app] = max(late[s.app], s.start.Sub(at))
			}
		}
		for a, x := range late {
			if x > 0 {
				t.Errorf("%s: app %d answered %s with the version the purge replaced to a request started %v after the purge returned (grace %v); its tier had reported every bucket changed since the failover began: %t; tracking connections on the old master at the purge: %d",
					what, a, target.path, x.Round(10*time.Microsecond), grace, slices.Contains(reset, a), len(onOld))
			}
		}
		t.Logf("%s: purge of %s through app %d, %v after the failover; served locally just before by %v; tiers reset before the purge: %v; tracking connections on the old master %d, on the new %d; old version gone after: %s",
			what, target.path, i%len(rig.apps), at.Sub(switched).Round(time.Millisecond), local, reset, len(onOld), len(onNewMaster), strings.Join(per, ", "))
	}
	// A failover is invalidation lost: the tracking connections still sit
	// on the old master, which hears nothing of the new one's changes.
	// What holds then is the bound: each tier's proof of delivery stops
	// at its last check that its connection was on its client's master,
	// before the switch, so no copy is served past the bound after it.
	purge(0, "purge after failover", localTestBound)

	// Every tier drops what it held before: its tracking connection
	// moved to the new master, which reports every bucket.
	for len(resetApps()) < len(rig.apps) && time.Since(switched) < 5*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("tiers that reported every bucket changed %v after the failover: %v of %d", time.Since(switched).Round(time.Millisecond), resetApps(), len(rig.apps))
	if r := resetApps(); len(r) != len(rig.apps) {
		t.Errorf("5s after the failover only instances %v reported every bucket changed: the others may serve copies read from the old master", r)
	}
	if ok, desc := awaitTracking(t, newAdmin, 5*time.Second); !ok {
		t.Errorf("the instances do not track the new master within 5s: %s", desc)
	}
	close(watchStop)
	<-watchDone
	since := func(at time.Time) string {
		if at.IsZero() {
			return "not yet"
		}
		return at.Sub(switched).Round(time.Millisecond).String() + " after the failover"
	}
	t.Logf("no tracking connection left on the old master %s; the old master a replica %s", since(trackersLeft), since(demoted))
	for i := 1; i <= 4; i++ {
		purge(i, "later purge", localGrace)
	}
	if n, last := rig.awaitLocalStatus(rig.items[5], 3*time.Second); n != localInstances {
		t.Errorf("after the failover, only %d instances serve local hits again within 3s; the others answer: %s", n, last)
	}
	d.log(t, "after failover")
	stop()
	rig.check()
	rig.checkLocalShare(0.3)
}
