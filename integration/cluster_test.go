package integration

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// clusterClient returns a new cluster client of c that has already loaded
// the cluster's slots and dialled every master, so that an app's first
// requests do not pay for it. hook, when set, is added to every node's
// client (it sees each node's own replies, MOVED and ASK included).
func clusterClient(c *redistest.Cluster, hook redis.Hook) *redis.ClusterClient {
	rdb := c.Client()
	if hook != nil {
		rdb.OnNewNode(func(n *redis.Client) { n.AddHook(hook) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Best effort: a broken cluster fails the test that uses it.
	_ = rdb.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() })
	return rdb
}

// TestCluster runs the read-through, collapse, refresh and purge suites on a
// three-master Redis Cluster, each app instance with a cluster client of
// its own, plus checks that only a cluster needs: a bucket and its locks
// share a slot, and purges reach every master.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := redistest.StartClusterT(t, 3)
	t.Logf("cluster of %d masters up in %v", len(c.Nodes()), time.Since(start).Round(time.Millisecond))
	prevNew, prevOn := newClient, onCluster
	defer func() { newClient, onCluster = prevNew, prevOn }()
	newClient = func() redis.UniversalClient { return clusterClient(c, nil) }
	onCluster = c

	suites := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"BucketAndLockKeysShareASlot", testBucketAndLockKeysShareASlot},
		{"FillNotificationsAcrossClients", testFillNotificationsAcrossClients},
		{"PurgesVisitEveryMaster", testPurgesVisitEveryMaster},
		// readthrough_test.go
		{"MissThenHitOverTheWire", TestMissThenHitOverTheWire},
		{"RedisLayout", TestRedisLayout},
		{"ConditionalHeadAndBypassOverTheWire", TestConditionalHeadAndBypassOverTheWire},
		{"NeverStoreOverTheWire", TestNeverStoreOverTheWire},
		{"FlushTurnsHitsIntoMisses", TestFlushTurnsHitsIntoMisses},
		{"OneCommandPerFreshHit", TestOneCommandPerFreshHit},
		{"StreamingOverH1AndH2", TestStreamingOverH1AndH2},
		{"BodyMatchesContentLengthOnHit", TestBodyMatchesContentLengthOnHit},
		{"RefreshAheadUnderLoad", TestRefreshAheadUnderLoad},
		{"StaleIfErrorOnRedis", TestStaleIfErrorOnRedis},
		// collapse_test.go: four instances, fill notifications over the
		// cluster's pub/sub while the keys live on any master.
		{"StampedeOneOriginCall", TestStampedeOneOriginCall},
		{"StampedeLockDeletedMidFill", TestStampedeLockDeletedMidFill},
		{"StampedeLeaderPanics", TestStampedeLeaderPanics},
		{"StampedeLeaderClientDisconnects", TestStampedeLeaderClientDisconnects},
		{"StampedeUncacheableNotShared", TestStampedeUncacheableNotShared},
		// purge_test.go
		{"PurgeThroughAdminAcrossInstances", TestPurgeThroughAdminAcrossInstances},
		{"AdminBadInputOverTheWire", TestAdminBadInputOverTheWire},
		{"BulkPurges", TestBulkPurges},
		{"PurgeRacingFillOnRedis", TestPurgeRacingFillOnRedis},
		// writes_test.go
		{"WriteInvalidatesAcrossInstances", TestWriteInvalidatesAcrossInstances},
		{"WriteRacingFillAcrossInstances", TestWriteRacingFillAcrossInstances},
		{"RevalidationAcrossInstances", TestRevalidationAcrossInstances},
	}
	for _, s := range suites {
		t.Run(s.name, s.fn)
	}
	t.Logf("cluster start and suites took %v", time.Since(start).Round(time.Millisecond))
}

// masterOf maps every slot to the address of the master serving it.
func masterOf(t testing.TB, rdb *redis.ClusterClient) map[int64]string {
	t.Helper()
	shards, err := rdb.ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int64]string, 16384)
	for _, sh := range shards {
		var addr string
		for _, n := range sh.Nodes {
			if n.Role == "master" {
				addr = net.JoinHostPort(n.IP, fmt.Sprint(n.Port))
			}
		}
		for _, r := range sh.Slots {
			for slot := r.Start; slot <= r.End; slot++ {
				m[slot] = addr
			}
		}
	}
	return m
}

// keySlots returns the cluster slot of each key (CLUSTER KEYSLOT, which
// any node answers).
func keySlots(t testing.TB, rdb *redis.ClusterClient, keys []string) []int64 {
	t.Helper()
	ctx := context.Background()
	node := redis.NewClient(&redis.Options{Addr: rdb.Options().Addrs[0]})
	defer node.Close()
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ClusterKeySlot(ctx, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(keys))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out
}

// testBucketAndLockKeysShareASlot holds the fill locks of buckets spread
// over the masters (crafted parameter values included) and checks with
// CLUSTER KEYSLOT that each lock key hashes to its bucket's slot, so the
// bucket's script, its lock and its fence never cross nodes.
func testBucketAndLockKeysShareASlot(t *testing.T) {
	p := prefix(t)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprintf(w, "%s %s", r.PathValue("id"), r.PathValue("v"))
	}}
	a := startApp(t, appConfig{prefix: p, opts: []httpcache.Option{patient()}, routes: []route{
		{"GET /k/{id}/v/{v}", policy.Policy{BucketParams: []string{"id"}}, o},
	}})
	t.Cleanup(open)
	ids := []string{"a%7Bb%7Dc", "%7D%7B", "x%7B", "%7Dy", "with%20space", "pipe%7Cbar"}
	for i := range 30 {
		ids = append(ids, fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	results := make([]resp, len(ids))
	for i, id := range ids {
		wg.Go(func() { results[i] = get(a.URL + "/k/" + id + "/v/1") })
	}
	var locks []string
	waitFor(t, "every fill lock", func() bool {
		locks = scanKeys(t, a.Client, p+":l:*")
		return len(locks) == len(ids)
	})
	open()
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.status != 200 {
			t.Fatalf("%s: %d %v", ids[i], r.status, r.err)
		}
	}
	buckets := scanKeys(t, a.Client, p+":b:*")
	if len(buckets) != len(ids) {
		t.Fatalf("%d bucket keys for %d buckets: %q", len(buckets), len(ids), buckets)
	}
	// The bucket of a lock key: the hash tag, from the first '{' to the
	// first '}' after it (the field after it is binary and may hold braces).
	bucketOf := func(lock string) string {
		rest := strings.TrimPrefix(lock, p+":l:{")
		tag, _, _ := strings.Cut(rest, "}")
		return p + ":b:{" + tag + "}"
	}
	rdb := a.Client.(*redis.ClusterClient)
	var pairs []string
	for _, l := range locks {
		b := bucketOf(l)
		if !slices.Contains(buckets, b) {
			t.Fatalf("lock %q: its bucket %q is not among the buckets", l, b)
		}
		if strings.Count(b, "{") != 1 || strings.Count(b, "}") != 1 {
			t.Errorf("bucket key %q has stray braces", b)
		}
		pairs = append(pairs, l, b)
	}
	slots := keySlots(t, rdb, pairs)
	owners := masterOf(t, rdb)
	perMaster := map[string]int{}
	for i := 0; i < len(pairs); i += 2 {
		if slots[i] != slots[i+1] {
			t.Errorf("lock %q in slot %d, its bucket %q in slot %d", pairs[i], slots[i], pairs[i+1], slots[i+1])
		}
		perMaster[owners[slots[i+1]]]++
	}
	if len(perMaster) != len(onCluster.Nodes()) {
		t.Errorf("buckets on %d masters, want all %d: %v", len(perMaster), len(onCluster.Nodes()), perMaster)
	}
	t.Logf("%d buckets and their fill locks, pairwise in one slot; buckets per master %v", len(ids), perMaster)
}

// subscribedOnNodes lists the masters of c holding a subscription to
// channel, plain (SUBSCRIBE) or sharded (SSUBSCRIBE), with the number of
// subscribers.
func subscribedOnNodes(t testing.TB, c *redistest.Cluster, channel string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	m := map[string]int64{}
	for _, n := range c.Nodes() {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr()})
		plain, err := rdb.PubSubNumSub(ctx, channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		sharded, err := rdb.PubSubShardNumSub(ctx, channel).Result()
		rdb.Close()
		if err != nil {
			t.Fatal(err)
		}
		if c := plain[channel] + sharded[channel]; c > 0 {
			m[n.Addr()] = c
		}
	}
	return m
}

// testFillNotificationsAcrossClients: fill notifications published by one
// instance's store reach the subscription of another's, whichever masters
// the buckets live on. (The stampede suites prove the same under load.)
func testFillNotificationsAcrossClients(t *testing.T) {
	p := prefix(t)
	ctx := context.Background()
	stores := make([]*redisstore.Store, 3)
	for i := range stores {
		s, err := redisstore.New(newClient(), redisstore.WithPrefix(p))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	// Buckets spread over the masters.
	rdb := newClient().(*redis.ClusterClient)
	buckets := make([]string, 12)
	keys := make([]string, len(buckets))
	for i := range buckets {
		buckets[i] = fmt.Sprint("bucket ", i)
		keys[i] = stores[0].BucketKey(buckets[i])
	}
	owners := masterOf(t, rdb)
	masters := map[string]bool{}
	for i, slot := range keySlots(t, rdb, keys) {
		masters[owners[slot]] = true
		field := fmt.Sprint("field ", i)
		sub, pub := stores[i%3], stores[(i+1)%3]
		fills, unwatch, err := sub.Watch(ctx, buckets[i], field)
		if err != nil {
			t.Fatalf("watch %q: %v", buckets[i], err)
		}
		if err := pub.Publish(ctx, buckets[i], field, storage.Fill{Stored: true}); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-fills:
			if !f.Stored {
				t.Errorf("notification of %q: %+v", buckets[i], f)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the notification of %q (on %s) did not arrive", buckets[i], owners[slot])
		}
		unwatch()
	}
	t.Logf("notifications between 3 stores for buckets on %d masters arrived; subscriptions to %s: %v",
		len(masters), p+":fill", subscribedOnNodes(t, onCluster, p+":fill"))
}

// bucketsPerMaster counts, on each master, the bucket keys under p that
// hold at least one entry (a purge tombstone holds only the generation).
func bucketsPerMaster(t testing.TB, rdb *redis.ClusterClient, p string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	m := map[string]int{}
	err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		iter := n.Scan(ctx, 0, p+":b:*", 1000).Iterator()
		count := 0
		for iter.Next(ctx) {
			fields, err := n.HKeys(ctx, iter.Val()).Result()
			if err != nil {
				return err
			}
			if slices.ContainsFunc(fields, func(f string) bool { return f != storage.GenerationField }) {
				count++
			}
		}
		mu.Lock()
		m[n.Options().Addr] = count
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testPurgesVisitEveryMaster fills buckets spread over every master and
// purges them by route, by tag (the tag's set lives in yet another slot)
// and all at once: each purge removes every one of them, on every master,
// and the next request of each is a miss.
func testPurgesVisitEveryMaster(t *testing.T) {
	const n = 90
	p := prefix(t)
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Surrogate-Key", "every-p")
		fmt.Fprintf(w, "p %s", r.PathValue("id"))
	}}
	apps := startApps(t, 2, appConfig{prefix: p, opts: []httpcache.Option{patient()}, routes: []route{
		{"GET /p/{id}", policy.Policy{TTL: time.Hour}, o},
		{"GET /q/{id}", policy.Policy{TTL: time.Hour}, o},
	}}, nil)
	rdb := apps[0].Client.(*redis.ClusterClient)
	fill := func(path string, wantHit bool) {
		t.Helper()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		var wrong atomic.Int64
		for id := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				r := get(fmt.Sprintf("%s%s%d", apps[id%2].URL, path, id), "Host", serviceHost)
				if r.status != 200 || r.body != fmt.Sprintf("p %d", id) || r.hit() != wantHit {
					wrong.Add(1)
				}
			})
		}
		wg.Wait()
		if w := wrong.Load(); w > 0 {
			t.Fatalf("%s: %d of %d responses wrong (want hit=%v)", path, w, n, wantHit)
		}
	}
	check := func(what string, want int) {
		t.Helper()
		per := bucketsPerMaster(t, rdb, p)
		total := 0
		for _, c := range per {
			total += c
		}
		if total != want {
			t.Errorf("%s: %d buckets with entries, want %d (per master %v)", what, total, want, per)
		}
		if want > 0 && slices.Contains(slices.Collect(maps.Values(per)), 0) {
			t.Errorf("%s: some master holds none of the buckets: %v", what, per)
		}
		t.Logf("%s: buckets with entries per master %v", what, per)
	}
	ctx := context.Background()
	fill("/p/", false)
	fill("/q/", false)
	check("filled", 2*n)

	removed, err := apps[1].Cache.PurgeRoute(ctx, "GET /p/{id}")
	if err != nil || removed != n {
		t.Fatalf("route purge removed %d (%v), want %d", removed, err, n)
	}
	check("after the route purge", n)
	fill("/p/", false)
	fill("/q/", true)

	removed, err = apps[0].Cache.PurgeTag(ctx, "every-p")
	if err != nil || removed != 2*n {
		t.Fatalf("tag purge removed %d (%v), want %d", removed, err, 2*n)
	}
	check("after the tag purge", 0)
	fill("/p/", false)
	fill("/q/", false)

	removed, err = apps[1].Cache.PurgeAll(ctx)
	if err != nil || removed < 2*n {
		t.Fatalf("purge of everything removed %d (%v), want at least %d", removed, err, 2*n)
	}
	check("after the purge of everything", 0)
	fill("/q/", false)
}

// redirects counts the MOVED and ASK replies the nodes of a cluster client
// send back (go-redis follows them), and the other errors by message.
type redirects struct {
	moved, ask, other atomic.Int64
	mu                sync.Mutex
	others            map[string]int
}

func (h *redirects) note(cmd redis.Cmder, err error) {
	switch name := cmd.Name(); {
	case err == nil || err == redis.Nil:
	case name == "client" || name == "hello":
		// The connection handshake tries commands Redis 7.0 lacks
		// (CLIENT SETINFO, CLIENT MAINT_NOTIFICATIONS) and goes on.
	case strings.HasPrefix(err.Error(), "MOVED "):
		h.moved.Add(1)
	case strings.HasPrefix(err.Error(), "ASK "):
		h.ask.Add(1)
	case strings.HasPrefix(err.Error(), "NOSCRIPT"):
		// go-redis sends the script's body next
	default:
		h.other.Add(1)
		h.mu.Lock()
		if h.others == nil {
			h.others = map[string]int{}
		}
		h.others[name+": "+err.Error()]++
		h.mu.Unlock()
	}
}

func (h *redirects) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *redirects) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// A redirect is returned, not set on cmd, which go-redis retries.
		err := next(ctx, cmd)
		h.note(cmd, err)
		return err
	}
}
func (h *redirects) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.note(c, c.Err())
		}
		return err
	}
}

// clusterNode is one master as the migration sees it.
type clusterNode struct {
	id, host, port string
	rdb            *redis.Client
}

// TestClusterSlotMigration moves the slots of keys in use from one master
// to another, twice, with the standard resharding sequence (SETSLOT
// IMPORTING on the target, MIGRATING on the source, MIGRATE ... KEYS until
// the slot is empty, SETSLOT NODE on every master), then the slot of the
// fill channel, while two instances serve a steady, bounded load of reads,
// fills and refreshes over a few hundred keys. go-redis follows the MOVED
// and ASK replies: every response is a 200 with the right body, and cold
// stampedes over both instances still cost one origin call per key.
func TestClusterSlotMigration(t *testing.T) {
	const (
		keys    = 300
		workers = 8
	)
	c := redistest.StartClusterT(t, 3)
	ctx := context.Background()
	p := prefix(t)
	var hook redirects
	var errMu sync.Mutex
	storeErrs := map[string]int{}
	onError := httpcache.WithOnError(func(_ context.Context, err error) {
		errMu.Lock()
		storeErrs[err.Error()]++
		errMu.Unlock()
	})
	// A short TTL with refresh-ahead keeps fills, locks, refreshes and
	// notifications going through the migration, not only hits.
	pol := policy.Policy{TTL: time.Second, RefreshAhead: 0.5, StaleWhileRevalidate: 5 * time.Second}
	o := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s", r.PathValue("id"))
	}}
	// A slow origin for cold stampedes across both instances, which only
	// fill notifications collapse to one origin call.
	var coldMu sync.Mutex
	coldCalls := map[string]int{}
	cold := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		coldMu.Lock()
		coldCalls[r.PathValue("id")]++
		coldMu.Unlock()
		time.Sleep(200 * time.Millisecond)
		fmt.Fprintf(w, "cold %s", r.PathValue("id"))
	}}
	coldPol := policy.Policy{TTL: time.Minute, LockWait: 2 * time.Second}
	apps := startApps(t, 2, appConfig{prefix: p, opts: []httpcache.Option{onError}, routes: []route{
		{"GET /m/{id}", pol, o},
		{"GET /c/{id}", coldPol, cold},
	}}, func() redis.UniversalClient { return clusterClient(c, &hook) })
	// notifies reports whether a fill notification published by from's
	// store reaches a watcher of to's store within two seconds.
	var notes atomic.Int64
	notifies := func(from, to *app) bool {
		field := fmt.Sprint("note ", notes.Add(1))
		fills, unwatch, err := to.Store.Watch(ctx, "probe", field)
		defer unwatch()
		if err != nil {
			return false // not subscribed yet: the notification may not arrive
		}
		if err := from.Store.Publish(ctx, "probe", field, storage.Fill{Stored: true}); err != nil {
			t.Errorf("publish: %v", err)
			return false
		}
		select {
		case <-fills:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	// stampede sends concurrent cold requests for a few new keys to both
	// instances and checks that each key cost one origin call.
	stampede := func(label string) {
		t.Helper()
		start := time.Now()
		for k := range 3 {
			id := fmt.Sprint(label, "-", k)
			for i, r := range fire(apps, 16, "/c/"+id) {
				if r.err != nil || r.status != 200 || r.body != "cold "+id {
					t.Errorf("%s: response %d: %d %q %q err=%v", id, i, r.status, r.body, r.cacheStatus(), r.err)
				}
			}
			coldMu.Lock()
			n := coldCalls[id]
			coldMu.Unlock()
			if n != 1 {
				t.Errorf("%s: %d origin calls for 16 concurrent requests over 2 instances, want 1 (fill notifications lost?)", id, n)
			}
		}
		t.Logf("%s: 3 cold stampedes over 2 instances in %v", label, time.Since(start).Round(time.Millisecond))
	}

	// The masters, and the slot of each key's bucket.
	var nodes []*clusterNode
	byAddr := map[string]*clusterNode{}
	for _, n := range c.Nodes() {
		rdb := n.Client()
		id, err := rdb.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(n.Addr())
		cn := &clusterNode{id: id, host: host, port: port, rdb: rdb}
		nodes = append(nodes, cn)
		byAddr[n.Addr()] = cn
	}
	kr, err := keying.Compile("GET /m/{id}", pol)
	if err != nil {
		t.Fatal(err)
	}
	bucketKeys := make([]string, keys)
	for id := range keys {
		b, err := kr.BucketFor(map[string]string{"id": fmt.Sprint(id)})
		if err != nil {
			t.Fatal(err)
		}
		bucketKeys[id] = apps[0].Store.BucketKey(b)
	}
	admin := clusterClient(c, nil)
	slots := keySlots(t, admin, bucketKeys)
	// The fill channel's slot moves last, on its own.
	channel := p + ":fill"
	chSlot := keySlots(t, admin, []string{channel})[0]
	usedSlots := func(owner *clusterNode) []int64 {
		owners := masterOf(t, admin)
		var s []int64
		for _, slot := range slots {
			if byAddr[owners[slot]] == owner && slot != chSlot && !slices.Contains(s, slot) {
				s = append(s, slot)
			}
		}
		slices.Sort(s)
		return s
	}

	// The load: workers send GETs of random keys to random instances,
	// pausing a little between requests, until stopped.
	var (
		requests, hits, stale, failures atomic.Int64
		failMu                          sync.Mutex
		firstFailures                   []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := rng.IntN(keys)
				r := get(fmt.Sprintf("%s/m/%d", apps[rng.IntN(len(apps))].URL, id), "Host", serviceHost)
				requests.Add(1)
				switch {
				case r.err != nil || r.status != 200 || r.body != fmt.Sprintf("item %d", id):
					failures.Add(1)
					failMu.Lock()
					if len(firstFailures) < 5 {
						firstFailures = append(firstFailures, fmt.Sprintf("key %d: %d %q %q err=%v", id, r.status, r.body, r.cacheStatus(), r.err))
					}
					failMu.Unlock()
				case strings.Contains(r.cacheStatus(), "stale-while-revalidate"):
					stale.Add(1)
				case r.hit():
					hits.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()
	waitFor(t, "the load to warm up", func() bool { return requests.Load() >= 2*keys })
	stampede("before")

	slotIDs := map[int64][]int{}
	for id, slot := range slots {
		slotIDs[slot] = append(slotIDs[slot], id)
	}
	probes := 0
	// migrate moves one slot from src to dst and returns how many keys it
	// moved.
	migrate := func(slot int64, src, dst *clusterNode) int {
		t.Helper()
		do := func(n *clusterNode, args ...any) {
			t.Helper()
			if err := n.rdb.Do(ctx, args...).Err(); err != nil {
				t.Fatalf("%v on %s:%s: %v", args, n.host, n.port, err)
			}
		}
		do(dst, "cluster", "setslot", slot, "importing", src.id)
		do(src, "cluster", "setslot", slot, "migrating", dst.id)
		// A miss of a new variant of a key in the slot while it migrates:
		// its fill lock is created on the target, through an ASK reply.
		if ids := slotIDs[slot]; len(ids) > 0 {
			probes++
			id := ids[0]
			if r := get(fmt.Sprintf("%s/m/%d?probe=%d", apps[probes%2].URL, id, probes), "Host", serviceHost); r.err != nil || r.status != 200 || r.body != fmt.Sprintf("item %d", id) {
				t.Errorf("probe of key %d in migrating slot %d: %d %q %q err=%v", id, slot, r.status, r.body, r.cacheStatus(), r.err)
			}
		}
		moved := 0
		for {
			ks, err := src.rdb.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(ks) == 0 {
				break
			}
			args := []any{"migrate", dst.host, dst.port, "", 0, 5000, "keys"}
			for _, k := range ks {
				args = append(args, k)
			}
			do(src, args...)
			moved += len(ks)
		}
		// The target first, then the source, then the others.
		do(dst, "cluster", "setslot", slot, "node", dst.id)
		do(src, "cluster", "setslot", slot, "node", dst.id)
		for _, n := range nodes {
			if n != src && n != dst {
				do(n, "cluster", "setslot", slot, "node", dst.id)
			}
		}
		return moved
	}

	type move struct {
		src, dst *clusterNode
		slots    []int64
	}
	moves := []move{{src: nodes[0], dst: nodes[1]}, {src: nodes[2], dst: nodes[0]}}
	start := time.Now()
	var slotsMoved, keysMoved int
	for i := range moves {
		m := &moves[i]
		m.slots = usedSlots(m.src)
		for _, slot := range m.slots {
			keysMoved += migrate(slot, m.src, m.dst)
		}
		slotsMoved += len(m.slots)
	}
	took := time.Since(start)
	// Keep serving a while on the new layout: clients that have not
	// reloaded it yet follow MOVED.
	before := requests.Load()
	waitFor(t, "requests on the new layout", func() bool { return requests.Load() >= before+keys })
	stampede("after the key slots moved")

	// Then the slot of the fill channel itself (a sharded channel lives on
	// the master that owns its slot).
	chSrc := byAddr[masterOf(t, admin)[chSlot]]
	chDst := nodes[0]
	if chDst == chSrc {
		chDst = nodes[1]
	}
	subsBefore := subscribedOnNodes(t, c, channel)
	if !notifies(apps[1], apps[0]) || !notifies(apps[0], apps[1]) {
		t.Errorf("fill notifications between the instances are lost before the channel's slot moves")
	}
	keysMoved += migrate(chSlot, chSrc, chDst)
	slotsMoved++
	before = requests.Load()
	waitFor(t, "requests after the channel's slot moved", func() bool { return requests.Load() >= before+keys })
	subsAfter := subscribedOnNodes(t, c, channel)
	t.Logf("fill channel %q (slot %d) moved from %s:%s to %s:%s; subscriptions before %v, after %v",
		channel, chSlot, chSrc.host, chSrc.port, chDst.host, chDst.port, subsBefore, subsAfter)
	// Lost notifications cost latency, not correctness: waiters re-read
	// the store while they wait.
	stampede("after the channel's slot moved")
	stopLoad()
	t.Run("FillNotificationsAfterTheChannelsSlotMoved", func(t *testing.T) {
		if !notifies(apps[1], apps[0]) || !notifies(apps[0], apps[1]) {
			t.Errorf("fill notifications between the instances are lost since the channel's slot moved; subscriptions %v",
				subscribedOnNodes(t, c, channel))
		}
	})

	owners := masterOf(t, admin)
	for _, m := range moves {
		for _, slot := range m.slots {
			if owner := byAddr[owners[slot]]; owner != m.dst {
				t.Errorf("slot %d is served by %v after its move to %s:%s", slot, owner, m.dst.host, m.dst.port)
			}
		}
	}
	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d responses failed or had a wrong body during the migration; first: %q", f, requests.Load(), firstFailures)
	}
	var st httpcache.Stats
	for _, a := range apps {
		s := a.Cache.Stats()
		st.Hits += s.Hits
		st.Misses += s.Misses
		st.StaleServed += s.StaleServed
		st.Collapsed += s.Collapsed
		st.StoreErrors += s.StoreErrors
		st.Refreshed += s.Refreshed
		st.Stored += s.Stored
		st.Bypassed += s.Bypassed
	}
	t.Logf("moved %d slots: %d holding keys in use from master 0 to 1, then %d from master 2 to 0, in %v, then the fill channel's; %d keys (buckets, and fill locks held at the time); %d misses of new variants in migrating slots",
		slotsMoved, len(moves[0].slots), len(moves[1].slots), took.Round(time.Millisecond), keysMoved, probes)
	t.Logf("%d requests: %d fresh hits, %d stale while revalidating, %d failed; cache: hits %d, misses %d, collapsed %d, stored %d, refreshed %d, bypassed %d, store errors %d; origin calls %d",
		requests.Load(), hits.Load(), stale.Load(), failures.Load(), st.Hits, st.Misses, st.Collapsed, st.Stored, st.Refreshed, st.Bypassed, st.StoreErrors, o.calls.Load())
	hook.mu.Lock()
	errMu.Lock()
	t.Logf("go-redis followed %d MOVED and %d ASK replies; other node errors %d %v; errors the cache absorbed: %v",
		hook.moved.Load(), hook.ask.Load(), hook.other.Load(), hook.others, storeErrs)
	errMu.Unlock()
	hook.mu.Unlock()
	if hook.moved.Load() == 0 || hook.ask.Load() == 0 {
		t.Errorf("%d MOVED and %d ASK replies: the migration did not touch keys in use", hook.moved.Load(), hook.ask.Load())
	}
}
