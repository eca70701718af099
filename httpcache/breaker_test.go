package httpcache

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/policy"
)

func TestBreakerSkipsAFailingStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		var gets atomic.Int64
		store := storeFuncs{Store: newMemStore(t), get: func() error {
			gets.Add(1)
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}, set: func() error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}}
		c := newTestCache(t, store, WithBreaker(3, time.Second))
		o := textOrigin("ok")
		h := mux(t, c, "/b", policy.Policy{}, o)
		do(h, "GET", "/b")
		down.Store(true)
		for i := range 3 { // one failed read each: the rest of the request skips the store
			if got := do(h, "GET", "/b"); got.status != 200 || got.body != "ok" {
				t.Fatalf("request %d during the outage: %d %q", i, got.status, got.body)
			}
		}
		before := gets.Load()
		for range 10 {
			got := do(h, "GET", "/b")
			if got.body != "ok" || !strings.Contains(got.cacheStatus(), "store-unavailable") {
				t.Fatalf("with the circuit open: %q %q", got.body, got.cacheStatus())
			}
		}
		if n := gets.Load() - before; n != 0 {
			t.Errorf("the open circuit still sent %d reads to the store", n)
		}
		time.Sleep(time.Second) // cooldown: one probe, still failing
		do(h, "GET", "/b")
		if n := gets.Load() - before; n != 1 {
			t.Errorf("probe reads = %d, want 1", n)
		}
		if got := do(h, "GET", "/b"); !strings.Contains(got.cacheStatus(), "store-unavailable") {
			t.Errorf("a failed probe did not reopen the circuit: %q", got.cacheStatus())
		}
		down.Store(false)
		time.Sleep(time.Second)
		do(h, "GET", "/b") // successful probe closes it
		if got := do(h, "GET", "/b"); !got.isHit() {
			t.Errorf("after recovery: %q, want hits again", got.cacheStatus())
		}
	})
}

func TestStoreTimeoutBoundsSlowStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := storeFuncs{Store: newMemStore(t)}
		slow := &slowStore{storeFuncs: store, delay: time.Hour}
		c := newTestCache(t, slow, WithStoreTimeout(50*time.Millisecond), WithoutBreaker())
		h := mux(t, c, "/s", policy.Policy{}, textOrigin("ok"))
		start := time.Now()
		if got := do(h, "GET", "/s"); got.body != "ok" {
			t.Fatalf("got %q", got.body)
		}
		// A miss reads twice (lookup, then the fill's fenced re-read) and
		// writes once, each bounded by the timeout.
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("request took %v with a hung store, want a few store timeouts", d)
		}
	})
}

// slowStore never answers reads before ctx ends.
type slowStore struct {
	storeFuncs
	delay time.Duration
}

func (s *slowStore) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.storeFuncs.Get(ctx, bucket, field)
}
