package redisstore_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// replicaReads starts a master and a replica and returns a go-redis
// ClusterClient over them that sends read-only commands to the replica:
// go-redis's documented way to "load-balance read/write operations
// between master and slaves" of standalone servers (ClusterSlots with
// ReadOnly; RouteRandomly and RouteByLatency do the same for some reads,
// and a real cluster with replicas with ReadOnly too).
func replicaReads(t *testing.T) (master, replica *redistest.Server, rdb *redis.ClusterClient) {
	t.Helper()
	master = redistest.StartT(t)
	host, port, _ := net.SplitHostPort(master.Addr())
	replica = redistest.StartT(t, "--replicaof", host, port)
	if err := redistest.WaitReplicaSynced(replica, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	rdb = redis.NewClusterClient(&redis.ClusterOptions{
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		MaxRetries:            -1,
		ReadOnly:              true,
		ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
			return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: master.Addr()}, {Addr: replica.Addr()}}}}, nil
		},
	})
	t.Cleanup(func() { rdb.Close() })
	return master, replica, rdb
}

// TestReviewTrackReplicaReads: the tracker tracks the masters only
// (ForEachMaster), but a client that sends reads to replicas (ReadOnly,
// RouteRandomly, RouteByLatency) makes the hit path's HGET read a replica,
// which may not yet have applied a change whose report has already
// arrived from the master. A read that starts after the report is, by the
// Tracker contract, a read that sees the change: its copy is valid until
// the next report of that bucket, and nothing will report the replica
// catching up. Redis replicas lag by design. Fixed: Track refuses such a
// client, and a client of a replica, with ErrNoTracking.
func TestReviewTrackReplicaReads(t *testing.T) {
	_, _, rdb := replicaReads(t)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefixFor(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Fixed: Track refuses such a client.
	stop, err := s.Track(t.Context(), 20*time.Millisecond, func(storage.Changes) {})
	if err == nil {
		stop()
		t.Fatal("Track accepted a client that reads replicas")
	}
	if !errors.Is(err, storage.ErrNoTracking) || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("Track over a client that reads replicas: %v, want ErrNoTracking naming replicas", err)
	}
	// So does a plain client of a replica.
	_, replica, _ := replicaReads(t)
	rs, err := redisstore.New(replica.Client(func(o *redis.Options) { o.ContextTimeoutEnabled, o.DialerRetries = true, 1 }), redisstore.WithPrefix(prefixFor(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	if stop, err := rs.Track(t.Context(), 20*time.Millisecond, func(storage.Changes) {}); err == nil {
		stop()
		t.Error("Track accepted a client of a replica")
	} else if !errors.Is(err, storage.ErrNoTracking) {
		t.Errorf("Track over a client of a replica: %v, want ErrNoTracking", err)
	}
}

// TestReviewLocalTierReplicaReads is the same end to end: the local tier
// keeps a copy of the replica's pre-purge entry, read after the purge's
// report, and serves it long after the replica applied the purge.
func TestReviewLocalTierReplicaReads(t *testing.T) {
	_, _, rdb := replicaReads(t)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefixFor(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Fixed: the local tier refuses to start over it, naming the way out.
	c, err := httpcache.New(s, httpcache.WithLocalTier(1<<20), httpcache.WithoutStartupHealthCheck())
	if err == nil {
		c.Close(context.Background())
		t.Fatal("a local tier started over a client that reads replicas")
	}
	if !strings.Contains(err.Error(), "replicas") || !strings.Contains(err.Error(), "WithUntrackedLocalTier") {
		t.Errorf("New: %v", err)
	}
}

// TestReviewLocalTierTagPurgeSameInstance: on a real Redis, a tag (or
// route, or all) purge made through a cache with a local tier returns
// before this very instance has heard of it (the cache leaves bulk purges
// to the store's reports), so a request that comes right after the purge
// returned, on the same instance, is served the purged copy. (A bucket
// purge is marked at once and does not show this.)
func TestReviewLocalTierTagPurgeSameInstance(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client())
	c, err := httpcache.New(s, httpcache.WithLocalTier(1<<20), httpcache.WithoutStartupHealthCheck())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	var version atomic.Int64
	m := http.NewServeMux()
	m.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{TTL: time.Hour, Local: true,
		Tags: func(*http.Request) []string { return []string{"items"} }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "version "+strings.Repeat("|", int(version.Load())))
		})))
	get := func() (string, string) {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest("GET", "http://example.com/items/1", nil))
		return rec.Body.String(), rec.Header().Get("Cache-Status")
	}
	stale := 0
	const rounds = 20
	for range rounds {
		for deadline := time.Now().Add(5 * time.Second); ; {
			if _, status := get(); strings.Contains(status, "detail=local") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no local copy")
			}
			time.Sleep(5 * time.Millisecond)
		}
		before, _ := get()
		version.Add(1)
		if _, err := c.PurgeTag(t.Context(), "items"); err != nil {
			t.Fatal(err)
		}
		if body, _ := get(); body == before {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d requests made right after PurgeTag returned, on the instance that purged, got the purged copy", stale, rounds)
	}
}
