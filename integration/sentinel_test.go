package integration

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
)

const sentinelMaster = "mymaster"

// sentinelLimit bounds each wait on Sentinel: discovering the replica, and
// completing the failover.
const sentinelLimit = 8 * time.Second

// sentinelClientFor returns a Sentinel-aware client configured like
// outageClient, closed when the test ends (after the apps, whose cleanups
// run first).
func sentinelClientFor(t *testing.T, sen *redistest.Sentinel) redis.UniversalClient {
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            sentinelMaster,
		SentinelAddrs:         []string{sen.Addr()},
		ContextTimeoutEnabled: true,
		ReadTimeout:           200 * time.Millisecond,
		WriteTimeout:          200 * time.Millisecond,
		DialTimeout:           100 * time.Millisecond,
		MaxRetries:            -1,
		PoolTimeout:           100 * time.Millisecond,
		DialerRetries:         1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// sentinelReplicaKnown reports whether the sentinel lists addr as a
// healthy replica of the master, able to be promoted.
func sentinelReplicaKnown(ctx context.Context, sc *redis.SentinelClient, addr string) bool {
	rs, err := sc.Replicas(ctx, sentinelMaster).Result()
	if err != nil {
		return false
	}
	for _, r := range rs {
		if net.JoinHostPort(r["ip"], r["port"]) == addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
			return true
		}
	}
	return false
}

// sentinelMasterAddr returns the master's address as the sentinel reports it.
func sentinelMasterAddr(ctx context.Context, sc *redis.SentinelClient) string {
	a, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil || len(a) != 2 {
		return ""
	}
	return net.JoinHostPort(a[0], a[1])
}

// redisRole returns the first line of ROLE on the server at addr.
func redisRole(ctx context.Context, addr string) string {
	c := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, Addr: addr, MaxRetries: -1})
	defer c.Close()
	v, err := c.Do(ctx, "role").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	s, _ := v[0].(string)
	return s
}

// TestFaultSentinelFailover: a master, one replica and one Sentinel; the
// two app instances reach Redis through Sentinel-aware clients. Under load,
// the master fails over to the replica, which already holds the cached
// entries: asked to (SENTINEL FAILOVER, the master stays up until the
// clients move), and after a crash (kill -9: the master is down for
// down-after-milliseconds, 1s, plus the failover itself). No client sees
// either, and the cache serves hits from the new master within the
// recovery limit.
func TestFaultSentinelFailover(t *testing.T) {
	t.Run("sentinel-failover", func(t *testing.T) { testSentinelFailover(t, false) })
	t.Run("master-killed", func(t *testing.T) { testSentinelFailover(t, true) })
}

func testSentinelFailover(t *testing.T, kill bool) {
	quietRedisLog(t)
	// Diskless sync without its default 5s wait for more replicas.
	master := startServer(t, "--repl-diskless-sync-delay", "0")
	mhost, mport, _ := net.SplitHostPort(master.Addr())
	replica := startServer(t, "--replicaof", mhost, mport)
	if err := redistest.WaitReplicaSynced(replica, sentinelLimit); err != nil {
		t.Fatal(err)
	}
	// Started after the replica synced, the sentinel finds it in its first
	// INFO of the master instead of ten seconds later.
	sen := redistest.StartSentinelT(t,
		"sentinel monitor "+sentinelMaster+" "+mhost+" "+mport+" 1",
		"sentinel down-after-milliseconds "+sentinelMaster+" 1000",
		"sentinel failover-timeout "+sentinelMaster+" 5000",
	)
	sc := sen.Client()
	deadline := time.Now().Add(sentinelLimit)
	for !sentinelReplicaKnown(t.Context(), sc, replica.Addr()) {
		if time.Now().After(deadline) {
			t.Fatalf("the sentinel never listed %s as a healthy replica%s", replica.Addr(), sen.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}

	cfg := faultConfig{delay: 2 * time.Millisecond, keys: 8, policy: policy.Policy{TTL: time.Minute}}
	rig := buildFaultRig(t, cfg, master, func() redis.UniversalClient { return sentinelClientFor(t, sen) })

	origin := rig.baseline(t, 500*time.Millisecond)
	l := warm(t, rig)
	newMaster := replica.Client()

	fault := time.Now()
	if kill {
		if err := master.Kill(); err != nil {
			t.Fatal(err)
		}
	} else {
		// SENTINEL FAILOVER answers NOGOODSLAVE until the sentinel has a
		// recent INFO of the replica; retry until it accepts.
		for {
			err := sc.Failover(t.Context(), sentinelMaster).Err()
			if err == nil {
				break
			}
			if time.Since(fault) > sentinelLimit {
				t.Fatalf("SENTINEL FAILOVER: %v%s", err, sen.LogTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The failover is over when the sentinel names the replica as master
	// (and publishes +switch-master, which the apps' clients follow). After
	// SENTINEL FAILOVER the sentinel turns the old master into a replica
	// only seconds later, once it sees it again; until then the old master
	// still answers, with the entries it had.
	for sentinelMasterAddr(t.Context(), sc) != replica.Addr() {
		if time.Since(fault) > sentinelLimit {
			t.Fatalf("failover not done %v after the fault: sentinel says master %s%s",
				sentinelLimit, sentinelMasterAddr(t.Context(), sc), sen.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
	switched := time.Now()
	hitsAtSwitch := faultRedisInfo(t, newMaster, "keyspace_hits")
	t.Logf("failover done (new master %s) %v after the fault", replica.Addr(), switched.Sub(fault).Round(time.Millisecond))
	if r := redisRole(t.Context(), replica.Addr()); r != "master" {
		t.Fatalf("the promoted replica's role is %q", r)
	}

	recovered := checkRecovery(t, l, switched)
	// The hits must come from the new master: the load goes on until it
	// has served a window's worth of them.
	var newHits int64
	for {
		newHits = faultRedisInfo(t, newMaster, "keyspace_hits") - hitsAtSwitch
		if newHits >= faultRecoveryWindow {
			break
		}
		if time.Since(switched) > 3*recoveryLimit {
			t.Fatalf("the new master served %d hits in %v after the failover: the cache did not follow it", newHits, time.Since(switched).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	onNew := time.Since(switched)
	l.halt()
	t.Logf("the new master served %d hits within %v of the failover", newHits, onNew.Round(time.Millisecond))
	if onNew > recoveryLimit {
		t.Errorf("the cache took %v to serve %d hits from the new master, want under %v", onNew, faultRecoveryWindow, recoveryLimit)
	}

	all := l.all()
	during := faultBetween(all, fault, switched)
	if kill {
		checkOpenCircuit(t, "master killed", during, origin)
	} else {
		f := faultSummarize(during)
		t.Logf("during the failover: %v; origin alone p99=%v", f, origin.p99.Round(10*time.Microsecond))
		checkMaxLatency(t, "during the failover", f, faultMaxLatency)
	}
	logSlowest(t, during, fault, 3)
	rec := faultSummarize(faultBetween(all, fault, switched.Add(recovered)))
	t.Logf("from the fault until the hit ratio was back (%v): %v", switched.Add(recovered).Sub(fault).Round(time.Millisecond), rec)
	checkAfter(t, all, switched)
	t.Logf("whole load: %v", faultCheckAll(t, l))
	rig.logStats(t)
}
