package memstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
	"github.com/readthrough/readthrough/storage/storetest"
)

// mustNew returns a new store, failing t on an error.
func mustNew(t *testing.T, opts ...memstore.Option) *memstore.Store {
	t.Helper()
	s, err := memstore.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	// Every instance made for one test is the same store: that is how
	// several caches share a Store.
	var (
		mu     sync.Mutex
		stores = map[*testing.T]*memstore.Store{}
	)
	storetest.Run(t, func(t *testing.T, fenceTTL time.Duration) storetest.Store {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[t]
		if !ok {
			s = mustNew(t, memstore.WithFenceTTL(fenceTTL))
			stores[t] = s
		}
		return s
	})
}

// TestFakeClock checks that the store follows the synctest clock.
func TestFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := mustNew(t)
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

// TestLockFakeClock checks the lifetime of locks, and that Extend pushes
// it out, to the nanosecond of the synctest clock.
func TestLockFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := mustNew(t)
		const ttl = 10 * time.Second
		l, err := s.TryLock(ctx, "b", "f", ttl)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl - time.Nanosecond)
		if err := l.Extend(ctx); err != nil {
			t.Fatalf("Extend just before the lock's ttl: %v", err)
		}
		time.Sleep(ttl - time.Nanosecond)
		if _, err := s.TryLock(ctx, "b", "f", ttl); !errors.Is(err, storage.ErrLockHeld) {
			t.Fatalf("TryLock just before the extended ttl: %v, want ErrLockHeld", err)
		}
		time.Sleep(time.Nanosecond)
		if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
			t.Fatalf("Unlock at the extended ttl: %v, want ErrLockLost", err)
		}
		if _, err := s.TryLock(ctx, "b", "f", ttl); err != nil {
			t.Fatalf("TryLock of an expired lock: %v", err)
		}
	})
}

func TestFlush(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t)
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
	ch, stop, err := s.Watch(ctx, "b", "f")
	if err != nil {
		t.Fatal(err)
	}
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
	// Watchers survive a flush, as the Redis subscription survives
	// FLUSHALL; Publish delivers before it returns.
	if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-ch:
		if !f.Stored {
			t.Errorf("received %+v", f)
		}
	default:
		t.Error("Publish returned before delivering")
	}
}

// TestWatchEndedContext checks that Watch needs no live context: it never
// waits.
func TestWatchEndedContext(t *testing.T) {
	s := mustNew(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ch, stop, err := s.Watch(ctx, "b", "f")
	if err != nil {
		t.Fatalf("Watch with an ended context: %v", err)
	}
	defer stop()
	if err := s.Publish(ctx, "b", "f", storage.Fill{Failed: true}); err != nil {
		t.Fatal(err)
	}
	if f := <-ch; !f.Failed {
		t.Errorf("received %+v", f)
	}
}

func TestRejectsBraces(t *testing.T) {
	s := mustNew(t)
	ctx := t.Context()
	for _, b := range []string{"a{b", "a}b", "{}"} {
		if err := s.Set(ctx, b, "f", nil, storage.SetOptions{}); err == nil || !strings.HasPrefix(err.Error(), "memstore: ") {
			t.Errorf("Set(%q) = %v, want a memstore error", b, err)
		}
		if _, err := s.TryLock(ctx, b, "f", time.Second); err == nil || !strings.HasPrefix(err.Error(), "memstore: ") {
			t.Errorf("TryLock(%q) = %v, want a memstore error", b, err)
		}
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		give    []memstore.Option
		wantErr string // "" for none
	}{
		{give: nil},
		{give: []memstore.Option{memstore.WithFenceTTL(0)}},
		{give: []memstore.Option{memstore.WithFenceTTL(time.Second)}},
		{give: []memstore.Option{memstore.WithFenceTTL(-time.Second)}, wantErr: "memstore: WithFenceTTL"},
		{give: []memstore.Option{memstore.WithFenceTTL(-time.Second), memstore.WithFenceTTL(time.Second)}},
	}
	for _, tt := range tests {
		s, err := memstore.New(tt.give...)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("New(%d options) = %v, want no error", len(tt.give), err)
		case tt.wantErr == "" && s == nil:
			t.Errorf("New(%d options) returned a nil store", len(tt.give))
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
			t.Errorf("New(%d options) = %v, want an error starting %q", len(tt.give), err, tt.wantErr)
		}
	}
}

// TestFenceTTL checks the lifetime of purge tombstones on the synctest
// clock: the default, a configured one, and one that a refill grows.
func TestFenceTTL(t *testing.T) {
	tests := []struct {
		give []memstore.Option
		want time.Duration
	}{
		{want: storage.DefaultFenceTTL},
		{give: []memstore.Option{memstore.WithFenceTTL(0)}, want: storage.DefaultFenceTTL},
		{give: []memstore.Option{memstore.WithFenceTTL(10 * time.Second)}, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				s := mustNew(t, tt.give...)
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
