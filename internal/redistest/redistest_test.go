package redistest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
)

func TestServer(t *testing.T) {
	s := redistest.StartT(t)
	ctx := t.Context()
	if s.Addr() == "127.0.0.1:6379" {
		t.Fatalf("started on the system Redis port")
	}
	c := s.Client(func(o *redis.Options) { o.MaxRetries = -1 })
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		// The first command after a restart may meet the dead
		// connection of the pool.
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after Restart: %v", err)
		}
	}
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("Get after Restart: %v, want redis.Nil (no persistence)", err)
	}

	if err := s.Pause(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("Get during Pause: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("a command during Pause took %v", d)
	}

	s.Close()
	s.Close() // idempotent
	if err := s.Restart(); err == nil {
		t.Error("Restart of a closed server succeeded")
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := redistest.StartT(t), redistest.StartT(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers on %s", a.Addr())
	}
	ctx := t.Context()
	if err := a.Client().Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Client().Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("key of one server seen on the other: %v", err)
	}
}

func TestStartExtraArgs(t *testing.T) {
	s := redistest.StartT(t, "--maxmemory", "10mb")
	got, err := s.Client().ConfigGet(t.Context(), "maxmemory").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["maxmemory"] != "10485760" {
		t.Errorf("maxmemory = %q", got["maxmemory"])
	}
}

func TestCluster(t *testing.T) {
	c := redistest.StartClusterT(t, 3)
	if n := len(c.Addrs()); n != 3 {
		t.Fatalf("%d addresses", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rdb := c.Client()
	// Keys spread over the slots of every master.
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if got, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || got != i {
			t.Fatalf("Get(k%d) = %d, %v", i, got, err)
		}
	}
	var masters atomic.Int32
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := node.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("master %s holds no key", node.Options().Addr)
		}
		masters.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := masters.Load(); n != 3 {
		t.Errorf("%d masters", n)
	}
	c.Close()
	c.Close()
}

func TestStartClusterTooSmall(t *testing.T) {
	if _, err := redistest.StartCluster(2); err == nil {
		t.Fatal("StartCluster(2) succeeded")
	}
}
