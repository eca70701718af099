package redisstore_test

// Review (rev-b): the doctor on go-redis's Sentinel-backed cluster client
// (redis.NewFailoverClusterClient), which is a *redis.ClusterClient over
// plain, non-cluster servers.

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/storage"
)

// The tests of this file come from the second review of the operators'
// tools (2026-12-05): each comment tells what the reviewer checked or
// found, and the test guards it.

func TestReviewBCheckHealthFailoverClusterClient(t *testing.T) {
	master := redistest.StartT(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	sen := redistest.StartSentinelT(t, "sentinel monitor mymaster "+host+" "+port+" 1")
	client := redis.NewFailoverClusterClient(&redis.FailoverOptions{
		MasterName:            "mymaster",
		SentinelAddrs:         []string{sen.Addr()},
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { client.Close() })
	rep := checkHealth(t, newStore(t, client))
	t.Logf("mode %q", rep.Mode)
	for _, f := range rep.Findings {
		if f.Check == "mode" || f.Check == "sharded-pubsub" {
			t.Logf("%s: %s: %s (fix: %s)", f.Check, f.Level, f.Message, f.Fix)
		}
	}
	if rep.Mode == "cluster" {
		t.Errorf("a Sentinel-managed master (failover cluster client) is reported as a Redis Cluster")
	}
	if f := finding(t, rep, "mode"); f.Level != storage.LevelOK {
		t.Errorf("mode finding on a healthy Sentinel deployment: %s: %s (fix: %s)", f.Level, f.Message, f.Fix)
	}
}
