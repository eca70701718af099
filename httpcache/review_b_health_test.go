package httpcache

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/storage/redisstore"
)

// The tests of this file come from the second review of the operators'
// tools (2026-12-05): each comment tells what the reviewer checked or
// found, and the test guards it.

// Review (rev-b): Close right after New, against a Redis that accepts
// connections and never answers, returns promptly: cancelling the
// start-up health check must interrupt it.
func TestReviewBCloseDuringStartupHealthCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	client := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ContextTimeoutEnabled: true, DialerRetries: 1, MaxRetries: -1})
	defer client.Close()
	store, err := redisstore.New(client)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c, err := New(store, append([]Option{WithLogger(quietLogger())}, reviewBHealthOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the check is under way, blocked on INFO
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = c.Close(ctx)
	took := time.Since(start)
	t.Logf("Close took %v (err %v)", took, err)
	if took > 200*time.Millisecond {
		t.Errorf("Close took %v waiting for the start-up health check it cancelled", took)
	}
}

var reviewBHealthOpts []Option // []Option{WithoutStartupHealthCheck()} made it pass before the fix
