package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/storage"
)

type healthEvery time.Duration

func (d healthEvery) apply(o *options) { o.healthEvery = time.Duration(d) }

// awaitUp waits until Redis has confirmed a subscription other than old
// (nil: any), and returns it. It fails the test after a deadline only a
// broken subscriber reaches.
func (s *subscriber) awaitUp(t *testing.T, old *redis.PubSub) *redis.PubSub {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		state, ps, changed := s.state, s.ps, s.changed
		s.mu.Unlock()
		if state == stateUp && ps != old {
			return ps
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no new confirmed subscription after 10s (state %d)", state)
		}
	}
}

// TestSubscriptionHealthCheck pauses Redis so that the subscription's ping
// goes unanswered, and checks that the store notices, starts over, and
// delivers notifications again once Redis confirms the new subscription.
func TestSubscriptionHealthCheck(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client(func(o *redis.Options) { o.MaxRetries = -1 })
	s, err := New(client, WithPrefix("health"), healthEvery(50*time.Millisecond), WithWatchBound(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()

	deliver := func(when string) {
		t.Helper()
		ch, stop, err := s.Watch(ctx, "b", "f")
		defer stop()
		if err != nil {
			t.Fatalf("Watch %s: %v", when, err)
		}
		if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(3 * time.Second):
			t.Fatalf("no notification %s", when)
		}
	}
	_, stop, _ := s.Watch(ctx, "x", "x") // opens the subscription
	stop()
	ps := s.sub.awaitUp(t, nil)
	deliver("before the pause")

	if err := srv.Pause(400 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// The unanswered ping ends the subscription, and a new one is
	// confirmed once the pause is over.
	s.sub.awaitUp(t, ps)
	deliver("after the pause")
}
