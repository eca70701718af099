package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/storage"
)

var _ storage.HealthChecker = (*Store)(nil)

// Bounds and thresholds of [Store.CheckHealth].
const (
	// healthCallTimeout bounds each command (or pipeline) of the check.
	healthCallTimeout = time.Second
	// healthPings is the number of PINGs whose median is the round trip.
	healthPings = 5
	// roundTripWarn and roundTripError are the medians above which the
	// round trip is a warning and an error: every hit pays one round
	// trip, and the cache's default store timeout is 100ms.
	roundTripWarn  = 5 * time.Millisecond
	roundTripError = 50 * time.Millisecond
	// sampleRandomKeys is the number of RANDOMKEYs per master that
	// estimate the prefix's share of the keys.
	sampleRandomKeys = 64
	// healthScanCount is the COUNT of each SCAN of the check, and
	// scanCalls the most SCAN calls per master: up to 4000 keys are
	// visited, counting the prefix's keys exactly in a database that
	// small and finding buckets to sample.
	healthScanCount = 1000
	scanCalls       = 4
	// sampleBuckets is the most buckets sampled for entry sizes, and
	// sampleFields the most fields read in each (HRANDFIELD, HSTRLEN).
	sampleBuckets = 16
	sampleFields  = 16
	// listpackTarget is the hash-max-listpack-value the check
	// recommends: above the size of most compressed entries.
	listpackTarget = 1024
	// nearFull is the share of maxmemory above which noeviction is an
	// error rather than a warning: fills are about to be refused.
	nearFull = 0.9
)

// healthNode is one Redis server of the deployment.
type healthNode struct {
	addr   string
	client *redis.Client
	master bool
}

// nodeFacts is what INFO and CONFIG GET said about one node.
type nodeFacts struct {
	node      healthNode
	err       error             // INFO failed: nothing is known of the node
	info      map[string]string // INFO (default sections)
	config    map[string]string // CONFIG GET *; nil when unavailable
	configErr error
}

// value returns the setting name from CONFIG GET, or else the INFO field
// infoName ("" for none), and whether either had it.
func (f nodeFacts) value(name, infoName string) (string, bool) {
	if v, ok := f.config[name]; ok {
		return v, true
	}
	if infoName != "" {
		v, ok := f.info[infoName]
		return v, ok
	}
	return "", false
}

// bucketSample is what one sampled bucket holds.
type bucketSample struct {
	fields   int64   // HLEN, the generation field included
	sizes    []int64 // value sizes of the sampled fields (entries)
	keyBytes []int64 // field name sizes of the same fields
	encoding string  // OBJECT ENCODING
	memory   int64   // MEMORY USAGE, 0 when unknown
	keyLen   int
}

// keySample is the sampled or counted size of the store's key prefix.
type keySample struct {
	dbsize  int64 // keys on the masters
	exact   bool  // counted with SCAN rather than estimated
	keys    int64 // keys under the prefix (estimated unless exact)
	buckets int64 // of which buckets
	drawn   int   // RANDOMKEYs drawn, when estimated
	err     error
}

// CheckHealth implements [storage.HealthChecker]: it checks the Redis
// deployment the store is on and reports, in this order, findings with
// these check ids:
//
//   - "version": the server version; Redis 6.2 is needed (HRANDFIELD),
//     7.0 for tags (PEXPIRE NX/GT) and Cluster (sharded pub/sub).
//   - "mode": single, Sentinel or Cluster; for a cluster, its state and
//     every node that did not answer.
//   - "config": an info finding when CONFIG GET is unavailable (renamed
//     or disabled, as managed Redis often does). The check then reads
//     INFO, which has maxmemory, its policy and the persistence state,
//     but not hash-max-listpack-value nor the save rules.
//   - "maxmemory": a warning when unbounded (0): Redis then grows until
//     the machine runs out of memory, and no eviction policy applies.
//   - "maxmemory-policy": a warning on noeviction (fills are refused
//     when Redis is full), an error when it is also 90% full.
//   - "hash-max-listpack-value": compared with the sizes of this cache's
//     entries, sampled from up to 16 buckets under the prefix (HLEN,
//     HRANDFIELD and HSTRLEN of up to 16 fields, OBJECT ENCODING and
//     MEMORY USAGE of each): the share of entries above the limit, and
//     what raising it to 1024 would save, estimated from the sampled
//     buckets' memory against the listpacks they would become.
//   - "persistence": an info finding when RDB snapshots or the AOF are
//     on, with their cost: a cache can be refilled from the origin.
//   - "round-trip": the median of 5 PINGs to each node; a warning above
//     5ms, an error above 50ms.
//   - "key-prefix": the number of keys and buckets under the prefix,
//     never from an unbounded scan: counted by at most 4 SCAN calls of
//     COUNT 1000 per master (exact when they walk the whole database),
//     otherwise estimated from DBSIZE and 64 RANDOMKEYs per master.
//   - "client-tracking": whether CLIENT TRACKING is available (Redis 6;
//     probed with CLIENT TRACKINGINFO, which turns nothing on).
//   - "sharded-pubsub": whether SPUBLISH works (Redis 7; probed with one
//     SPUBLISH to a channel nobody subscribes to); on a cluster the
//     store's fill notifications need it.
//
// On a cluster the node checks (version, config, maxmemory and its
// policy, listpack limit, persistence) run on every node that answers;
// a finding that differs between nodes is reported per node, its message
// starting with the node's address. Each command has a timeout of one
// second, and the whole check ends with ctx. CheckHealth returns an
// error only when no node answered.
func (s *Store) CheckHealth(ctx context.Context) (storage.HealthReport, error) {
	rep := storage.HealthReport{Store: "redis", Findings: []storage.Finding{}}
	mode, nodes, err := s.healthNodes(ctx)
	if err != nil {
		return rep, fmt.Errorf("redisstore: check health: %w", err)
	}
	rep.Mode = mode

	facts := make([]nodeFacts, len(nodes))
	for i, n := range nodes {
		facts[i] = readFacts(ctx, n)
	}
	var live []nodeFacts
	for _, f := range facts {
		if f.err == nil {
			live = append(live, f)
		}
	}
	if len(live) == 0 {
		return rep, fmt.Errorf("redisstore: check health: %w", facts[0].err)
	}
	rep.Version = live[0].info["redis_version"]
	minVersion := rep.Version
	for _, f := range live {
		if v := f.info["redis_version"]; versionLess(v, minVersion) {
			minVersion = v
		}
	}

	var masters []healthNode
	for _, f := range live {
		if f.node.master {
			masters = append(masters, f.node)
		}
	}
	keys, buckets := s.sampleKeys(ctx, masters)

	var add []storage.Finding
	add = append(add, perNode(live, versionFinding)...)
	add = append(add, modeFinding(ctx, mode, facts))
	add = append(add, perNode(live, configFinding)...)
	add = append(add, perNode(live, maxmemoryFinding)...)
	add = append(add, perNode(live, policyFinding)...)
	add = append(add, perNode(live, func(f nodeFacts) storage.Finding {
		return listpackFinding(f, buckets, keys)
	})...)
	add = append(add, perNode(live, persistenceFinding)...)
	rt, rtFinding := roundTrip(ctx, live)
	rep.RoundTrip = rt
	add = append(add, rtFinding)
	add = append(add, prefixFinding(s.prefix, keys))
	add = append(add, trackingFinding(ctx, live[0], minVersion))
	add = append(add, s.shardedFinding(ctx, mode, minVersion))
	rep.Findings = add
	return rep, nil
}

// healthNodes returns the deployment's mode and its nodes: every master
// and replica of a cluster, every shard of a ring, or the one server.
func (s *Store) healthNodes(ctx context.Context) (string, []healthNode, error) {
	var (
		mu    sync.Mutex
		nodes []healthNode
	)
	collect := func(master bool) func(context.Context, *redis.Client) error {
		return func(_ context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, healthNode{addr: c.Options().Addr, client: c, master: master})
			return nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	defer cancel()
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		if err := c.ForEachMaster(cctx, collect(true)); err != nil {
			return "cluster", nil, err
		}
		if err := c.ForEachSlave(cctx, collect(false)); err != nil {
			return "cluster", nil, err
		}
		slices.SortFunc(nodes, func(a, b healthNode) int {
			if a.master != b.master {
				if a.master {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.addr, b.addr)
		})
		if c.Options().ClusterSlots != nil {
			// The slots come from the caller (redis.NewFailoverClusterClient
			// asks Sentinel): no Redis Cluster, and no CLUSTER INFO to ask.
			return "sentinel", nodes, nil
		}
		return "cluster", nodes, nil
	case *redis.Ring:
		if err := c.ForEachShard(cctx, collect(true)); err != nil {
			return "single", nil, err
		}
		slices.SortFunc(nodes, func(a, b healthNode) int { return cmp.Compare(a.addr, b.addr) })
		return "single", nodes, nil
	case *redis.Client:
		mode := "single"
		if c.Options().Addr == "FailoverClient" { // set by redis.NewFailoverClient
			mode = "sentinel"
		}
		return mode, []healthNode{{addr: c.Options().Addr, client: c, master: true}}, nil
	}
	return "", nil, fmt.Errorf("a %T client cannot be checked", s.rdb)
}

// readFacts reads INFO and CONFIG GET * of one node.
func readFacts(ctx context.Context, n healthNode) nodeFacts {
	f := nodeFacts{node: n}
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	info, err := n.client.Info(cctx).Result()
	cancel()
	if err != nil {
		f.err = fmt.Errorf("node %s: INFO: %w", n.addr, err)
		return f
	}
	f.info = parseInfo(info)
	cctx, cancel = context.WithTimeout(ctx, healthCallTimeout)
	f.config, f.configErr = n.client.ConfigGet(cctx, "*").Result()
	cancel()
	if f.configErr != nil {
		f.config = nil
	}
	return f
}

// parseInfo turns INFO's "name:value" lines into a map.
func parseInfo(info string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// perNode runs check on every node and merges the results: one finding
// when every node gives the same, otherwise one per node, its message
// starting with the node's address.
func perNode(facts []nodeFacts, check func(nodeFacts) storage.Finding) []storage.Finding {
	found := make([]storage.Finding, len(facts))
	same := true
	for i, f := range facts {
		found[i] = check(f)
		if found[i] != found[0] {
			same = false
		}
	}
	if same {
		return found[:1]
	}
	for i, f := range facts {
		found[i].Message = "node " + f.node.addr + ": " + found[i].Message
	}
	return found
}

func versionFinding(f nodeFacts) storage.Finding {
	v := f.info["redis_version"]
	out := storage.Finding{Check: "version", Level: storage.LevelOK, Message: "Redis " + v}
	switch {
	case v == "":
		out.Level = storage.LevelWarn
		out.Message = "the server reports no redis_version in INFO: a proxy or an emulation, whose support of the commands the store needs is unknown"
		out.Fix = "Use Redis 7.0 or later, or check that the server supports HRANDFIELD, PEXPIRE NX/GT, EVALSHA and (on a cluster) SPUBLISH."
	case versionLess(v, "6.2"):
		out.Level = storage.LevelError
		out.Message += ": older than 6.2, which the store needs (HRANDFIELD, PEXPIRE NX/GT)"
		out.Fix = "Upgrade to Redis 7.0 or later."
	case versionLess(v, "7.0"):
		out.Level = storage.LevelWarn
		out.Message += ": older than 7.0; writes with tags fail (PEXPIRE NX/GT) and a cluster has no sharded pub/sub"
		out.Fix = "Upgrade to Redis 7.0 or later."
	}
	return out
}

// modeFinding describes the deployment; for a cluster, its state and the
// nodes that did not answer.
func modeFinding(ctx context.Context, mode string, facts []nodeFacts) storage.Finding {
	out := storage.Finding{Check: "mode", Level: storage.LevelOK}
	switch mode {
	case "sentinel":
		out.Message = "Sentinel-managed master (through go-redis's failover client)"
		return out
	case "single":
		if len(facts) > 1 {
			out.Message = fmt.Sprintf("a ring of %d single servers", len(facts))
		} else {
			out.Message = "single server " + facts[0].node.addr
			if role := facts[0].info["role"]; role == "slave" {
				out.Level = storage.LevelError
				out.Message += ", which is a replica: writes fail"
				out.Fix = "Point the client at the master, or use a failover client with Sentinel."
			}
		}
		return out
	}
	var masters, replicas int
	var down []string
	var first *nodeFacts
	for i, f := range facts {
		if f.err != nil {
			down = append(down, f.node.addr)
			continue
		}
		if first == nil {
			first = &facts[i]
		}
		if f.node.master {
			masters++
		} else {
			replicas++
		}
	}
	out.Message = fmt.Sprintf("cluster: %d masters and %d replicas answered", masters, replicas)
	if first != nil {
		cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
		info, err := first.node.client.ClusterInfo(cctx).Result()
		cancel()
		if err != nil {
			out.Level = storage.LevelWarn
			out.Message += "; CLUSTER INFO failed: " + err.Error()
			out.Fix = "Check that the CLUSTER command is allowed for the cache's user."
		} else if state := parseInfo(info)["cluster_state"]; state != "ok" {
			out.Level = storage.LevelError
			out.Message += "; cluster_state is " + state
			out.Fix = "Repair the cluster (redis-cli --cluster check, then fix): while its state is not ok it refuses commands."
		}
	}
	if len(down) > 0 {
		out.Level = storage.LevelError
		out.Message += "; no answer from " + strings.Join(down, ", ")
		out.Fix = strings.TrimSpace(out.Fix + " Check the nodes that did not answer: the cache's requests to their slots go to the origin.")
	}
	return out
}

func configFinding(f nodeFacts) storage.Finding {
	if f.configErr == nil {
		return storage.Finding{Check: "config", Level: storage.LevelOK, Message: "CONFIG GET answers"}
	}
	return storage.Finding{
		Check: "config", Level: storage.LevelInfo,
		Message: "CONFIG GET is unavailable (" + f.configErr.Error() + "); maxmemory, its policy and persistence were read from INFO, " +
			"hash-max-listpack-value and the RDB save rules could not be read",
		Fix: "Nothing to do on a managed Redis that disables CONFIG: read those settings in the provider's parameter group.",
	}
}

func maxmemoryFinding(f nodeFacts) storage.Finding {
	out := storage.Finding{Check: "maxmemory"}
	v, ok := f.value("maxmemory", "maxmemory")
	mm, err := strconv.ParseInt(v, 10, 64)
	switch {
	case !ok || err != nil:
		out.Level = storage.LevelInfo
		out.Message = "maxmemory could not be read"
		out.Fix = "Check the maxmemory setting in the provider's console."
	case mm == 0:
		out.Level = storage.LevelWarn
		out.Message = "maxmemory is 0 (unbounded): Redis grows until the machine runs out of memory, and no eviction policy applies"
		out.Fix = "Set maxmemory to what Redis may use (below the machine's memory, leaving room for forks and buffers), e.g. CONFIG SET maxmemory 2gb, and in redis.conf."
	default:
		out.Level = storage.LevelOK
		out.Message = "maxmemory is " + formatBytes(mm)
	}
	return out
}

func policyFinding(f nodeFacts) storage.Finding {
	out := storage.Finding{Check: "maxmemory-policy"}
	policy, ok := f.value("maxmemory-policy", "maxmemory_policy")
	if !ok {
		out.Level = storage.LevelInfo
		out.Message = "maxmemory-policy could not be read"
		out.Fix = "Check the maxmemory-policy setting in the provider's console; allkeys-lru suits a cache."
		return out
	}
	out.Message = "maxmemory-policy is " + policy
	switch policy {
	case "allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu":
		out.Level = storage.LevelOK
	case "noeviction":
		out.Level = storage.LevelWarn
		out.Message += ": when Redis is full it refuses writes, so fills are not stored and every request for a new entry goes to the origin"
		out.Fix = "CONFIG SET maxmemory-policy allkeys-lru (and in redis.conf), or volatile-lru when the Redis also holds data without TTLs that must stay: the cache's buckets carry TTLs."
		mm, _ := strconv.ParseInt(f.info["maxmemory"], 10, 64)
		used, _ := strconv.ParseInt(f.info["used_memory"], 10, 64)
		if mm > 0 && float64(used) >= nearFull*float64(mm) {
			out.Level = storage.LevelError
			out.Message = fmt.Sprintf("maxmemory-policy is noeviction and Redis is %.0f%% full (%s of %s): fills are refused or soon will be",
				100*float64(used)/float64(mm), formatBytes(used), formatBytes(mm))
		}
	default:
		out.Level = storage.LevelInfo
		out.Message += ": it evicts, but not the least recently or frequently used keys first"
		out.Fix = "allkeys-lru (or allkeys-lfu) keeps the entries clients read; volatile-lru when the Redis also holds data without TTLs."
	}
	return out
}

func persistenceFinding(f nodeFacts) storage.Finding {
	out := storage.Finding{Check: "persistence"}
	aof := f.info["aof_enabled"] == "1"
	if v, ok := f.config["appendonly"]; ok {
		aof = v == "yes"
	}
	save, rules := f.config["save"]
	rdb := rules && strings.TrimSpace(save) != ""
	if !rules {
		// Without CONFIG, INFO tells whether snapshots were taken.
		n, _ := strconv.ParseInt(f.info["rdb_saves"], 10, 64)
		rdb = n > 0 || f.info["rdb_bgsave_in_progress"] == "1"
	}
	var on []string
	if rdb {
		if rules {
			on = append(on, fmt.Sprintf("RDB snapshots (save %q)", save))
		} else {
			on = append(on, "RDB snapshots (taken since start)")
		}
	}
	if aof {
		aofText := "the append-only file"
		if fsync, ok := f.config["appendfsync"]; ok {
			aofText += " (appendfsync " + fsync + ")"
		}
		on = append(on, aofText)
	}
	if len(on) == 0 {
		out.Level = storage.LevelOK
		out.Message = "persistence is off (no RDB save rules, no AOF)"
		if !rules {
			out.Message = "no RDB snapshot since start and no AOF (the save rules could not be read)"
		}
		return out
	}
	out.Level = storage.LevelInfo
	out.Message = "persistence is on: " + strings.Join(on, " and ") +
		"; a cache usually does not need it (it refills from the origin), and it costs a fork per snapshot (copy-on-write memory, latency spikes) and a disk write per fill with the AOF"
	out.Fix = `Unless entries must survive a restart, turn it off: CONFIG SET save "" and CONFIG SET appendonly no (and in redis.conf).`
	return out
}

// listpackFinding compares the node's hash-max-listpack-value with the
// sampled buckets and estimates what raising it to listpackTarget saves.
func listpackFinding(f nodeFacts, buckets []bucketSample, keys keySample) storage.Finding {
	out := storage.Finding{Check: "hash-max-listpack-value"}
	limitText, ok := f.config["hash-max-listpack-value"]
	if !ok {
		limitText, ok = f.config["hash-max-ziplist-value"]
	}
	limit, err := strconv.ParseInt(limitText, 10, 64)
	known := ok && err == nil
	maxEntries, err := strconv.ParseInt(cmp.Or(f.config["hash-max-listpack-entries"], f.config["hash-max-ziplist-entries"]), 10, 64)
	if err != nil {
		maxEntries = 128 // the default
	}

	var sizes []int64
	var hashtables int
	for _, b := range buckets {
		sizes = append(sizes, b.sizes...)
		if b.encoding == "hashtable" {
			hashtables++
		}
	}
	slices.Sort(sizes)

	if !known {
		out.Level = storage.LevelInfo
		out.Message = "hash-max-listpack-value could not be read"
		if len(buckets) > 0 {
			out.Message += fmt.Sprintf("; %d of %d sampled buckets are hashtables, entries are %s", hashtables, len(buckets), sizeSummary(sizes))
		}
		out.Fix = fmt.Sprintf("Set hash-max-listpack-value to %d in the provider's parameter group: buckets whose entries fit stay compact listpacks.", listpackTarget)
		return out
	}
	out.Message = fmt.Sprintf("hash-max-listpack-value is %d", limit)
	if len(sizes) == 0 {
		if limit >= listpackTarget {
			out.Level = storage.LevelOK
			out.Message += "; no entries under the prefix to compare with yet"
			return out
		}
		out.Level = storage.LevelInfo
		out.Message += "; no entries under the prefix to compare with yet, and most compressed responses are larger than " + strconv.FormatInt(limit, 10) + " bytes"
		out.Fix = fmt.Sprintf("CONFIG SET hash-max-listpack-value %d (and in redis.conf), then run the check again once the cache holds entries.", listpackTarget)
		return out
	}
	above, aboveTarget := 0, 0
	for _, n := range sizes {
		if n > limit {
			above++
		}
		if n > listpackTarget {
			aboveTarget++
		}
	}
	out.Message += fmt.Sprintf("; %d of %d sampled entries (%.0f%%) are larger, so their buckets are hashtables (%d of %d sampled buckets); entries are %s",
		above, len(sizes), 100*float64(above)/float64(len(sizes)), hashtables, len(buckets), sizeSummary(sizes))
	var crowded int
	for _, b := range buckets {
		if b.fields > maxEntries {
			crowded++
		}
	}
	if crowded > 0 {
		out.Message += fmt.Sprintf("; %d sampled buckets hold more than hash-max-listpack-entries (%d) fields and are hashtables whatever their entries' sizes", crowded, maxEntries)
	}
	if limit >= listpackTarget || above == 0 {
		out.Level = storage.LevelOK
		return out
	}
	saved, before := listpackSavings(buckets, maxEntries)
	out.Level = storage.LevelWarn
	if aboveTarget > 0 {
		out.Message += fmt.Sprintf("; %d%% of the sampled entries also exceed %d", 100*aboveTarget/len(sizes), listpackTarget)
	}
	switch {
	case before > 0 && saved <= 0:
		out.Level = storage.LevelInfo
		out.Message += fmt.Sprintf("; at %d the sampled buckets would take no less memory (their hashtables are as small as the listpacks the allocator would round them to)", listpackTarget)
		out.Fix = fmt.Sprintf("Nothing to gain for entries like these; run the check again as the entries change. Raising it to %d costs nothing either.", listpackTarget)
		return out
	case before > 0:
		perBucket := saved / int64(len(buckets))
		out.Message += fmt.Sprintf("; at %d the sampled buckets would take about %.0f%% less memory (%s of %s, about %s per bucket",
			listpackTarget, 100*float64(saved)/float64(before), formatBytes(saved), formatBytes(before), formatBytes(perBucket))
		if keys.err == nil && keys.buckets > 0 {
			out.Message += fmt.Sprintf(", about %s over %s%d buckets", formatBytes(perBucket*keys.buckets), approx(keys.exact), keys.buckets)
		}
		out.Message += ")"
	case aboveTarget == len(sizes):
		out.Level = storage.LevelInfo
		out.Message += fmt.Sprintf("; raising it to %d would not help these entries", listpackTarget)
		out.Fix = "Entries this large stay in hashtables; smaller entries (compression, zstd dictionaries) would let buckets become listpacks."
		return out
	}
	out.Fix = fmt.Sprintf("CONFIG SET hash-max-listpack-value %d (and in redis.conf): buckets created or refilled afterwards whose entries fit are listpacks, much smaller than hashtables; existing buckets change as they expire and refill. Keep hash-max-listpack-entries at 128 or so: listpack lookups are linear.", listpackTarget)
	return out
}

// listpackSavings estimates, over the sampled buckets whose memory is
// known, the bytes that buckets now hashtables would save as listpacks
// with values up to listpackTarget, and their memory now.
func listpackSavings(buckets []bucketSample, maxEntries int64) (saved, before int64) {
	for _, b := range buckets {
		if b.memory <= 0 {
			continue
		}
		before += b.memory
		if b.encoding != "hashtable" || b.fields > maxEntries || len(b.sizes) == 0 {
			continue
		}
		var lp, fits int64 = 7, 1 // listpack header and end byte
		for i, n := range b.sizes {
			if n > listpackTarget {
				fits = 0
			}
			lp += listpackEntry(b.keyBytes[i]) + listpackEntry(n)
		}
		if fits == 0 {
			continue
		}
		// Scale the sampled fields to the bucket's, round up to what the
		// allocator gives, and add what a key costs either way: its
		// object (16 bytes), its dict entry (24) and its name (an sds).
		lp = 7 + (lp-7)*b.fields/int64(len(b.sizes))
		after := jemallocSize(lp) + 16 + 24 + jemallocSize(int64(b.keyLen)+4)
		if after < b.memory {
			saved += b.memory - after
		}
	}
	return saved, before
}

// jemallocSize is the size class jemalloc (Redis's allocator) rounds an
// allocation of n bytes up to: multiples of 16 up to 128, then four
// classes per doubling (160, 192, 224, 256, 320, ...).
func jemallocSize(n int64) int64 {
	if n <= 8 {
		return 8
	}
	if n <= 128 {
		return (n + 15) &^ 15
	}
	step := int64(1) << (bits.Len64(uint64(n-1)) - 3)
	return (n + step - 1) &^ (step - 1)
}

// listpackEntry is the size of a string of n bytes in a listpack: its
// encoding header, the bytes and the back length.
func listpackEntry(n int64) int64 {
	var header int64 = 5
	switch {
	case n < 64:
		header = 1
	case n < 4096:
		header = 2
	}
	total := header + n
	switch {
	case total < 128:
		return total + 1
	case total < 16384:
		return total + 2
	case total < 2097152:
		return total + 3
	}
	return total + 5
}

// sizeSummary describes sorted sizes by median and 90th percentile.
func sizeSummary(sizes []int64) string {
	if len(sizes) == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d bytes at the median and %d at the 90th percentile", sizes[len(sizes)/2], sizes[len(sizes)*9/10])
}

// roundTrip measures the median of healthPings PINGs to each node and
// reports the slowest node's.
func roundTrip(ctx context.Context, facts []nodeFacts) (time.Duration, storage.Finding) {
	out := storage.Finding{Check: "round-trip"}
	var worst time.Duration
	var worstAddr string
	for _, f := range facts {
		var times []time.Duration
		for range healthPings {
			cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
			start := time.Now()
			err := f.node.client.Ping(cctx).Err()
			d := time.Since(start)
			cancel()
			if err != nil {
				d = healthCallTimeout
			}
			times = append(times, d)
		}
		slices.Sort(times)
		if m := times[len(times)/2]; m > worst {
			worst, worstAddr = m, f.node.addr
		}
	}
	out.Message = fmt.Sprintf("median round trip (%d PINGs) is %s", healthPings, worst.Round(time.Microsecond))
	if len(facts) > 1 {
		out.Message += " on the slowest node, " + worstAddr
	}
	switch {
	case worst > roundTripError:
		out.Level = storage.LevelError
		out.Message += fmt.Sprintf(", above %s: hits pay it and calls near the store timeout (100ms by default) fail", roundTripError)
		out.Fix = "Run Redis near the service (same zone), check its load (slow commands: SLOWLOG GET, LATENCY DOCTOR) and the network."
	case worst > roundTripWarn:
		out.Level = storage.LevelWarn
		out.Message += fmt.Sprintf(", above %s: every hit pays it", roundTripWarn)
		out.Fix = "Run Redis near the service (same zone), check its load (SLOWLOG GET, LATENCY DOCTOR) and the network."
	default:
		out.Level = storage.LevelOK
	}
	return worst, out
}

// sampleKeys sizes the prefix on every master and samples up to
// sampleBuckets of its buckets.
func (s *Store) sampleKeys(ctx context.Context, masters []healthNode) (keySample, []bucketSample) {
	var ks keySample
	var buckets []bucketSample
	var estimate float64
	exact := true
	for _, n := range masters {
		res, err := s.sampleNode(ctx, n, max(0, sampleBuckets-len(buckets)))
		if err != nil {
			ks.err = err
			return ks, buckets
		}
		ks.dbsize += res.dbsize
		ks.drawn += res.drawn
		exact = exact && res.exact
		estimate += res.keys
		ks.buckets += int64(res.buckets + 0.5)
		buckets = append(buckets, res.samples...)
	}
	ks.exact = exact
	ks.keys = int64(estimate + 0.5)
	return ks, buckets
}

// nodeSample is what sampleNode learnt of one master.
type nodeSample struct {
	dbsize        int64
	exact         bool
	drawn         int
	keys, buckets float64
	samples       []bucketSample
}

// sampleNode counts or estimates the prefix's keys and buckets on one
// master, and samples up to want of its buckets. It walks the keyspace
// with at most scanCalls SCAN calls of COUNT healthScanCount: when they
// finish it, the count is exact; otherwise 64 RANDOMKEYs estimate the
// prefix's share of DBSIZE.
func (s *Store) sampleNode(ctx context.Context, n healthNode, want int) (nodeSample, error) {
	var res nodeSample
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	dbsize, err := n.client.DBSize(cctx).Result()
	cancel()
	if err != nil {
		return res, fmt.Errorf("node %s: DBSIZE: %w", n.addr, err)
	}
	res.dbsize = dbsize
	own, bucketKey := s.prefix+":", s.prefix+":b:{"
	var candidates []string
	var seenKeys, seenBuckets int64
	var cursor uint64
	for range scanCalls {
		cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
		keys, next, err := n.client.Scan(cctx, cursor, escapeGlob(own)+"*", healthScanCount).Result()
		cancel()
		if err != nil {
			return res, fmt.Errorf("node %s: SCAN: %w", n.addr, err)
		}
		for _, k := range keys {
			seenKeys++
			if strings.HasPrefix(k, bucketKey) {
				seenBuckets++
				if len(candidates) < want && !slices.Contains(candidates, k) {
					candidates = append(candidates, k)
				}
			}
		}
		if cursor = next; cursor == 0 {
			res.exact = true
			break
		}
	}
	res.keys, res.buckets = float64(seenKeys), float64(seenBuckets)
	if !res.exact {
		cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
		cmds, err := n.client.Pipelined(cctx, func(p redis.Pipeliner) error {
			for range sampleRandomKeys {
				p.RandomKey(cctx)
			}
			return nil
		})
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			return res, fmt.Errorf("node %s: RANDOMKEY: %w", n.addr, err)
		}
		var hits, bucketHits int
		for _, c := range cmds {
			k, err := c.(*redis.StringCmd).Result()
			if err != nil {
				continue
			}
			res.drawn++
			if strings.HasPrefix(k, own) {
				hits++
			}
			if strings.HasPrefix(k, bucketKey) {
				bucketHits++
			}
		}
		if res.drawn > 0 {
			// Never below what SCAN saw.
			res.keys = max(res.keys, float64(dbsize)*float64(hits)/float64(res.drawn))
			res.buckets = max(res.buckets, float64(dbsize)*float64(bucketHits)/float64(res.drawn))
		}
	}
	res.samples, err = sampleBucketsOn(ctx, n, candidates)
	return res, err
}

// bucketSampleScript returns the hash's HLEN, then the length of the name
// and of the value of up to ARGV[1] random fields, never the generation
// field.
var bucketSampleScript = redis.NewScript(`
local out = {redis.call('HLEN', KEYS[1])}
for _, f in ipairs(redis.call('HRANDFIELD', KEYS[1], tonumber(ARGV[1]))) do
  if f ~= '\0g' then
    out[#out + 1] = string.len(f)
    out[#out + 1] = redis.call('HSTRLEN', KEYS[1], f)
  end
end
return out
`)

// sampleBucketsOn reads the field count, entry sizes, encoding and memory
// of each bucket key on node n, in one pipeline.
func sampleBucketsOn(ctx context.Context, n healthNode, keys []string) ([]bucketSample, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	type cmds struct {
		sizes    *redis.Cmd
		encoding *redis.StringCmd
		memory   *redis.IntCmd
	}
	all := make([]cmds, len(keys))
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	defer cancel()
	_, err := n.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			all[i].sizes = bucketSampleScript.Eval(cctx, p, []string{k}, sampleFields)
			all[i].encoding = p.ObjectEncoding(cctx, k)
			all[i].memory = p.MemoryUsage(cctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && cctx.Err() != nil {
		return nil, fmt.Errorf("node %s: sample buckets: %w", n.addr, err)
	}
	var out []bucketSample
	for i, c := range all {
		ints, err := c.sizes.Int64Slice()
		if err != nil || len(ints) == 0 || ints[0] == 0 {
			continue // expired or purged meanwhile
		}
		b := bucketSample{fields: ints[0], keyLen: len(keys[i])}
		for j := 1; j+1 < len(ints); j += 2 {
			b.keyBytes = append(b.keyBytes, ints[j])
			b.sizes = append(b.sizes, ints[j+1])
		}
		b.encoding, _ = c.encoding.Result()
		b.memory, _ = c.memory.Result()
		out = append(out, b)
	}
	return out, nil
}

// escapeGlob escapes the characters that SCAN's MATCH treats as a
// pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func prefixFinding(prefix string, ks keySample) storage.Finding {
	out := storage.Finding{Check: "key-prefix", Level: storage.LevelInfo}
	if ks.err != nil {
		out.Message = "the keys under " + prefix + ": could not be sampled: " + ks.err.Error()
		return out
	}
	if ks.exact {
		out.Message = fmt.Sprintf("%d keys under %q (%d buckets) of the %d keys of the database, counted", ks.keys, prefix+":", ks.buckets, ks.dbsize)
		return out
	}
	share := 0.0
	if ks.dbsize > 0 {
		share = 100 * float64(ks.keys) / float64(ks.dbsize)
	}
	out.Message = fmt.Sprintf("about %d keys under %q (about %d buckets), %.0f%% of the %d keys of the database, estimated from %d random keys",
		ks.keys, prefix+":", ks.buckets, share, ks.dbsize, ks.drawn)
	return out
}

// trackingFinding reports whether CLIENT TRACKING is available, which a
// local tier in front of the store can use to drop entries changed
// elsewhere. CLIENT TRACKINGINFO reads the connection's tracking state
// and turns nothing on.
func trackingFinding(ctx context.Context, f nodeFacts, version string) storage.Finding {
	out := storage.Finding{Check: "client-tracking"}
	if version != "" && versionLess(version, "6.0") {
		out.Level = storage.LevelInfo
		out.Message = "CLIENT TRACKING is unavailable: Redis " + version + " is older than 6.0"
		out.Fix = "Upgrade to Redis 7 to use httpcache.WithLocalTier, whose copies are kept coherent by tracking (without it, only WithUntrackedLocalTier's time-bounded copies)."
		return out
	}
	if version != "" && versionLess(version, "6.2") {
		out.Level = storage.LevelOK
		out.Message = "CLIENT TRACKING is available (Redis " + version + ")"
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	err := f.node.client.Do(cctx, "client", "trackinginfo").Err()
	cancel()
	if err != nil {
		out.Level = storage.LevelInfo
		out.Message = "CLIENT TRACKING is not available: CLIENT TRACKINGINFO answered " + err.Error()
		out.Fix = "Allow the CLIENT command (its ID and TRACKING subcommands) for the cache's user to use httpcache.WithLocalTier, whose copies are kept coherent by tracking."
		return out
	}
	out.Level = storage.LevelOK
	out.Message = "CLIENT TRACKING is available"
	return out
}

// shardedFinding reports whether sharded pub/sub works, with one SPUBLISH
// to a channel of the prefix that nobody subscribes to.
func (s *Store) shardedFinding(ctx context.Context, mode, version string) storage.Finding {
	out := storage.Finding{Check: "sharded-pubsub"}
	bad := storage.LevelInfo
	if mode == "cluster" {
		bad = storage.LevelError // the store's fill notifications use it
	}
	if version != "" && versionLess(version, "7.0") {
		out.Level = bad
		out.Message = "sharded pub/sub is unavailable: Redis " + version + " is older than 7.0"
		if mode == "cluster" {
			out.Message += "; the store's fill notifications on a cluster need it"
		}
		out.Fix = "Upgrade to Redis 7.0 or later."
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	err := s.rdb.SPublish(cctx, s.prefix+":doctor", "").Err()
	cancel()
	if err != nil {
		out.Level = bad
		out.Message = "sharded pub/sub is not available: SPUBLISH answered " + err.Error()
		out.Fix = "Allow SPUBLISH and SSUBSCRIBE for the cache's user."
		return out
	}
	out.Level = storage.LevelOK
	out.Message = "sharded pub/sub (SPUBLISH) is available"
	return out
}

// versionLess compares dotted versions numerically; an empty or
// unparsable version is less than any other.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// formatBytes prints n bytes in binary units.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// approx is "the " for a count and "about " for an estimate.
func approx(exact bool) string {
	if exact {
		return "the "
	}
	return "about "
}
