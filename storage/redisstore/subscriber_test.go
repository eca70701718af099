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

// TestSubscriptionHealthCheck pauses Redis so that the subscription's ping
// goes unanswered, and checks that the store starts over and delivers
// notifications again afterwards.
func TestSubscriptionHealthCheck(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client(func(o *redis.Options) { o.MaxRetries = -1 })
	s, err := New(client, WithPrefix("health"), healthEvery(50*time.Millisecond), WithWatchBound(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()

	ch, stop := s.Watch("b", "f")
	defer stop()
	if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(3 * time.Second):
		t.Fatal("no notification before the pause")
	}

	if err := srv.Pause(400 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)

	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, stop := s.Watch("b", "f")
		if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			stop()
			return
		case <-time.After(200 * time.Millisecond):
		}
		stop()
		if time.Now().After(deadline) {
			t.Fatal("no notification after the pause")
		}
	}
}
