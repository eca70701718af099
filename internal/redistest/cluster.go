package redistest

import (
	"context"

	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters without replicas, each a
// redis-server process on loopback ports.
type Cluster struct {
	nodes   []*Server
	clients clients
}

// clusterTimeout bounds how long the nodes may take to join one cluster:
// redis-cli polls the join once a second, and on a loaded two-core
// machine (the race detector, other packages' tests) the gossip has been
// seen to take more than startTimeout.
const clusterTimeout = 60 * time.Second

// StartCluster starts masters redis-server processes in cluster mode (each
// with its own cluster config file and bus port), joins them with
// `redis-cli --cluster create`, and returns once every node reports
// cluster_state:ok. Call [Cluster.Close] when done. Redis Cluster needs at
// least three masters.
func StartCluster(masters int) (*Cluster, error) {
	if masters < 3 {
		return nil, fmt.Errorf("redistest: a cluster needs at least 3 masters, not %d", masters)
	}
	c := &Cluster{}
	for range masters {
		n, err := startNode()
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startNode starts one cluster node, retrying when its bus port turns out
// to be taken.
func startNode() (*Server, error) {
	var lastErr error
	for range 3 {
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		n, err := Start(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000",
		)
		if err == nil {
			return n, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// StartClusterT starts a cluster like [StartCluster] for a test: it skips or
// fails the test through [Require] when Redis is not installed, fails it
// when the cluster does not start, and closes the cluster when the test
// ends.
func StartClusterT(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	Require(tb)
	c, err := StartCluster(masters)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// waitOK waits until every node says cluster_state:ok.
func (c *Cluster) waitOK(ctx context.Context) error {
	for _, n := range c.nodes {
		rdb := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, Addr: n.Addr()})
		var info string
		var err error
		for {
			info, err = rdb.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				_ = rdb.Close()
				return fmt.Errorf("redistest: node %s not ok: %v %v", n.Addr(), err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = rdb.Close()
	}
	return nil
}

// Addrs returns the addresses of the masters.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the masters' servers, to kill or pause one of them.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Client returns a new cluster client of the cluster. [Cluster.Close] closes
// it if the test has not. It sets ContextTimeoutEnabled and DialerRetries
// 1, which redisstore.New requires.
func (c *Cluster) Client() *redis.ClusterClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{ContextTimeoutEnabled: true, DialerRetries: 1, Addrs: c.Addrs()})
	c.clients.add(rdb)
	return rdb
}

// Close stops every node, closes the clients made by [Cluster.Client] and
// removes the nodes' directories. It is idempotent.
func (c *Cluster) Close() {
	if !c.clients.closeAll() {
		return
	}
	for _, n := range c.nodes {
		n.Close()
	}
}
