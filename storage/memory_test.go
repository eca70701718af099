package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/storetest"
)

var (
	_ storetest.Store        = (*storage.MemoryStore)(nil)
	_ storetest.Purger       = (*storage.MemoryStore)(nil)
	_ storetest.Fencer       = (*storage.MemoryStore)(nil)
	_ storetest.Dictionaries = (*storage.MemoryStore)(nil)
)

func TestMemoryStoreConformance(t *testing.T) {
	// Every instance made for one test is the same store: that is how
	// several middleware instances share a MemoryStore.
	var (
		mu     sync.Mutex
		stores = map[*testing.T]*storage.MemoryStore{}
	)
	storetest.Run(t, func(t *testing.T, fenceTTL time.Duration) storetest.Store {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[t]
		if !ok {
			s = storage.NewMemoryStore(storage.WithFenceTTL(fenceTTL))
			stores[t] = s
		}
		return s
	})
}

// TestMemoryStoreFakeClock checks that the store follows the synctest clock.
func TestMemoryStoreFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := storage.NewMemoryStore()
		if err := s.Set(ctx, "b", "f", []byte("v"), storage.SetOptions{TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "b", "g", []byte("v"), storage.SetOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		l, err := s.TryLock(ctx, "b", "f", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Minute)
		if _, err := s.Get(ctx, "b", "g"); err != nil {
			t.Fatalf("Get before the bucket's hour is over: %v", err)
		}
		if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
			t.Fatalf("Extend after the lock's ttl: %v, want ErrLockLost", err)
		}
		time.Sleep(time.Minute)
		if _, err := s.Get(ctx, "b", "f"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after an hour: %v, want ErrNotFound", err)
		}
	})
}

func TestMemoryStoreFlush(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMemoryStore()
	if err := s.Set(ctx, "b", "f", []byte("v"), storage.SetOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	l, err := s.TryLock(ctx, "b", "f", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDictionary(ctx, "r|", 1, []byte("dict")); err != nil {
		t.Fatal(err)
	}
	ch, stop := s.Watch("b", "f")
	defer stop()
	s.Flush()
	if cur, dicts, err := s.Dictionaries(ctx, "r|"); cur != 0 || len(dicts) != 0 || err != nil {
		t.Errorf("Dictionaries after Flush = %d, %d dictionaries, %v; want none", cur, len(dicts), err)
	}
	if _, err := s.Get(ctx, "b", "f"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get after Flush: %v, want ErrNotFound", err)
	}
	if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend after Flush: %v, want ErrLockLost", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Unlock after Flush: %v, want ErrLockLost", err)
	}
	// Watchers survive a flush, as the Redis subscription survives FLUSHALL.
	if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
		t.Fatal(err)
	}
	if f := <-ch; !f.Stored {
		t.Errorf("received %+v", f)
	}
}

func TestMemoryStoreRejectsBraces(t *testing.T) {
	s := storage.NewMemoryStore()
	for _, b := range []string{"a{b", "a}b", "{}"} {
		if err := s.Set(context.Background(), b, "f", nil, storage.SetOptions{}); err == nil {
			t.Errorf("Set(%q) accepted a bucket with a brace", b)
		}
	}
}

// TestMemoryStoreFenceTTL checks the lifetime of purge tombstones on the
// synctest clock: the default, a configured one, and one that a refill
// grows.
func TestMemoryStoreFenceTTL(t *testing.T) {
	tests := []struct {
		give []storage.MemoryOption
		want time.Duration
	}{
		{want: storage.DefaultFenceTTL},
		{give: []storage.MemoryOption{storage.WithFenceTTL(0)}, want: storage.DefaultFenceTTL},
		{give: []storage.MemoryOption{storage.WithFenceTTL(-time.Second)}, want: storage.DefaultFenceTTL},
		{give: []storage.MemoryOption{storage.WithFenceTTL(10 * time.Second)}, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				s := storage.NewMemoryStore(tt.give...)
				if _, err := s.PurgeBucket(ctx, "b"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.PurgeBucket(ctx, "c"); err != nil {
					t.Fatal(err)
				}
				_, gen, _ := s.GetForFill(ctx, "c", "f")
				// c is refilled for an hour: it keeps its generation.
				if err := s.Set(ctx, "c", "f", []byte("v"), storage.SetOptions{TTL: time.Hour, Fenced: true, Generation: gen}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tt.want - time.Millisecond)
				if _, g, _ := s.GetForFill(ctx, "b", "f"); g != "1" {
					t.Fatalf("generation just before the fence TTL = %q, want 1", g)
				}
				time.Sleep(time.Millisecond)
				if _, g, _ := s.GetForFill(ctx, "b", "f"); g != "" {
					t.Fatalf("generation after the fence TTL = %q, want \"\"", g)
				}
				if _, g, err := s.GetForFill(ctx, "c", "f"); g != gen || err != nil {
					t.Fatalf("refilled bucket after the fence TTL: generation %q, %v; want %q", g, err, gen)
				}
			})
		})
	}
}
