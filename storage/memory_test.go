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
	_ storetest.Store  = (*storage.MemoryStore)(nil)
	_ storetest.Purger = (*storage.MemoryStore)(nil)
)

func TestMemoryStoreConformance(t *testing.T) {
	// Every instance made for one test is the same store: that is how
	// several middleware instances share a MemoryStore.
	var (
		mu     sync.Mutex
		stores = map[*testing.T]*storage.MemoryStore{}
	)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[t]
		if !ok {
			s = storage.NewMemoryStore()
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
	ch, stop := s.Watch("b", "f")
	defer stop()
	s.Flush()
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
