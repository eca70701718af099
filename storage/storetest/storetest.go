package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// Store is the store contract the suite checks: the methods the middleware
// calls.
type Store interface {
	Get(ctx context.Context, bucket, field string) ([]byte, error)
	Set(ctx context.Context, bucket, field string, value []byte, opt storage.SetOptions) error
	Delete(ctx context.Context, bucket, field string) error
	TryLock(ctx context.Context, bucket, field string, ttl time.Duration) (storage.Lock, error)
	Watch(bucket, field string) (<-chan storage.Fill, func())
	Publish(ctx context.Context, bucket, field string, f storage.Fill) error
	Close() error
}

// Purger is the invalidation contract. [Run] checks it on stores that
// implement it.
type Purger interface {
	PurgeBucket(ctx context.Context, bucket string) (int64, error)
	PurgePrefix(ctx context.Context, bucketPrefix string) (int64, error)
	PurgeTag(ctx context.Context, tag string) (int64, error)
	PurgeAll(ctx context.Context) (int64, error)
}

// Fencer is the purge fence contract of the miss path: GetForFill reads a
// field and the bucket's purge generation, which a fill passes to its Set
// with [storage.SetOptions].Fenced. [Run] checks it on stores that
// implement it and [Purger].
type Fencer interface {
	GetForFill(ctx context.Context, bucket, field string) (value []byte, generation string, err error)
}

// ShortFenceTTL is the fence TTL the suite asks for in the tests of
// tombstone expiry. Every other test asks for the store's default (a
// fenceTTL of zero), which must be long enough for the suite: a minute or
// more.
const ShortFenceTTL = 200 * time.Millisecond

// within bounds every wait for something that should happen; it is long so
// that a loaded machine does not fail the suite, and it is only reached when
// the store is broken.
const within = 3 * time.Second

// quiet is how long the suite waits to conclude that something does not
// happen (a notification that must not be delivered).
const quiet = 100 * time.Millisecond

// Run checks a store against the contract. newStore returns a new store
// instance for the test t whose purge tombstones live for fenceTTL, or for
// the store's default when fenceTTL is zero (see [ShortFenceTTL]); one test
// always asks for the same fenceTTL. Every instance returned for the same t
// must share one backend (the same MemoryStore, or the same Redis and key
// prefix), because some tests use two instances to stand for two
// processes, and that backend must hold nothing of other tests (PurgeAll
// is checked). newStore is responsible for closing what it creates, for
// example with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T, fenceTTL time.Duration) Store) {
	tests := []struct {
		name     string
		run      func(t *testing.T, newStore func(t *testing.T) Store)
		fenceTTL time.Duration
	}{
		{name: "GetMissing", run: testGetMissing},
		{name: "SetGet", run: testSetGet},
		{name: "Overwrite", run: testOverwrite},
		{name: "Delete", run: testDelete},
		{name: "ValuesAreCopied", run: testValuesAreCopied},
		{name: "BinaryFields", run: testBinaryFields},
		{name: "TTLExpires", run: testTTLExpires},
		{name: "TTLNeverShrinks", run: testTTLNeverShrinks},
		{name: "TTLGrows", run: testTTLGrows},
		{name: "MaxFields", run: testMaxFields},
		{name: "LockExclusive", run: testLockExclusive},
		{name: "LockExtend", run: testLockExtend},
		{name: "LockExpires", run: testLockExpires},
		{name: "LockUnlockTwice", run: testLockUnlockTwice},
		{name: "WatchPublish", run: testWatchPublish},
		{name: "WatchOnce", run: testWatchOnce},
		{name: "WatchOtherKeys", run: testWatchOtherKeys},
		{name: "WatchSecondInstance", run: testWatchSecondInstance},
		{name: "WatchUnregister", run: testWatchUnregister},
		{name: "WatchConcurrent", run: testWatchConcurrent},
		{name: "CloseIdempotent", run: testCloseIdempotent},
		{name: "PurgeBucket", run: testPurgeBucket},
		{name: "PurgePrefix", run: testPurgePrefix},
		{name: "PurgeTag", run: testPurgeTag},
		{name: "PurgeAll", run: testPurgeAll},
		{name: "GetForFill", run: testGetForFill},
		{name: "FencedSet", run: testFencedSet},
		{name: "FenceRefusesAfterPurge", run: testFenceRefusesAfterPurge},
		{name: "FenceRepeatedPurges", run: testFenceRepeatedPurges},
		{name: "FencePurgePrefix", run: testFencePurgePrefix},
		{name: "FencePurgeTag", run: testFencePurgeTag},
		{name: "FencePurgeAll", run: testFencePurgeAll},
		{name: "FenceFirstFill", run: testFenceFirstFill},
		{name: "FenceMaxFields", run: testFenceMaxFields},
		{name: "FenceReservedField", run: testFenceReservedField},
		{name: "FenceRace", run: testFenceRace},
		{name: "FenceExpires", run: testFenceExpires, fenceTTL: ShortFenceTTL},
		{name: "FenceKeptByRefill", run: testFenceKeptByRefill, fenceTTL: ShortFenceTTL},
		{name: "DictionariesEmpty", run: testDictionariesEmpty},
		{name: "DictionaryFirstIsCurrent", run: testDictionaryFirstIsCurrent},
		{name: "DictionarySecondKeepsCurrent", run: testDictionarySecondKeepsCurrent},
		{name: "DictionaryReplace", run: testDictionaryReplace},
		{name: "DictionaryBound", run: testDictionaryBound},
		{name: "DictionariesSurvivePurges", run: testDictionariesSurvivePurges},
		{name: "DictionaryInvalid", run: testDictionaryInvalid},
		{name: "DictionaryRoutes", run: testDictionaryRoutes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, func(t *testing.T) Store { return newStore(t, tt.fenceTTL) })
		})
	}
}

var opt = storage.SetOptions{TTL: time.Minute}

func mustSet(t *testing.T, s Store, bucket, field, value string, o storage.SetOptions) {
	t.Helper()
	if err := s.Set(t.Context(), bucket, field, []byte(value), o); err != nil {
		t.Fatalf("Set(%q, %q): %v", bucket, field, err)
	}
}

// present reports whether field exists in bucket, failing on other errors.
func present(t *testing.T, s Store, bucket, field string) bool {
	t.Helper()
	_, err := s.Get(t.Context(), bucket, field)
	switch {
	case err == nil:
		return true
	case errors.Is(err, storage.ErrNotFound):
		return false
	default:
		t.Fatalf("Get(%q, %q): %v", bucket, field, err)
		return false
	}
}

func wantValue(t *testing.T, s Store, bucket, field, want string) {
	t.Helper()
	got, err := s.Get(t.Context(), bucket, field)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v, want %q", bucket, field, err, want)
	}
	if string(got) != want {
		t.Fatalf("Get(%q, %q) = %q, want %q", bucket, field, got, want)
	}
}

func wantMissing(t *testing.T, s Store, bucket, field string) {
	t.Helper()
	got, err := s.Get(t.Context(), bucket, field)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q, %q) = %q, %v; want an error matching storage.ErrNotFound", bucket, field, got, err)
	}
}

// eventuallyMissing waits until field of bucket is gone.
func eventuallyMissing(t *testing.T, s Store, bucket, field string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for present(t, s, bucket, field) {
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q, %q) still finds the field after %v", bucket, field, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testGetMissing(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	wantMissing(t, s, "b", "f")
	mustSet(t, s, "b", "f", "v", opt)
	wantMissing(t, s, "b", "g")
	wantMissing(t, s, "c", "f")
}

func testSetGet(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	tests := []struct {
		give  string
		field string
		value string
	}{
		{give: "text", field: "f", value: "hello"},
		{give: "empty value", field: "empty", value: ""},
		{give: "binary value", field: "bin", value: "\x00\xff\x01{}\r\n"},
		{give: "large value", field: "large", value: string(bytes.Repeat([]byte("0123456789"), 20000))},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			mustSet(t, s, "bucket", tt.field, tt.value, opt)
			wantValue(t, s, "bucket", tt.field, tt.value)
		})
	}
}

func testOverwrite(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	mustSet(t, s, "b", "f", "one", opt)
	mustSet(t, s, "b", "f", "two", opt)
	wantValue(t, s, "b", "f", "two")
	// A second instance sees the same value.
	wantValue(t, newStore(t), "b", "f", "two")
}

func testDelete(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	mustSet(t, s, "b", "f", "v", opt)
	mustSet(t, s, "b", "g", "w", opt)
	if err := s.Delete(ctx, "b", "f"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, s, "b", "f")
	wantValue(t, s, "b", "g", "w")
	if err := s.Delete(ctx, "b", "f"); err != nil {
		t.Fatalf("Delete of a missing field: %v", err)
	}
	if err := s.Delete(ctx, "nobucket", "f"); err != nil {
		t.Fatalf("Delete in a missing bucket: %v", err)
	}
	if err := s.Delete(ctx, "b", "g"); err != nil {
		t.Fatalf("Delete of the last field: %v", err)
	}
	wantMissing(t, s, "b", "g")
	mustSet(t, s, "b", "f", "again", opt)
	wantValue(t, s, "b", "f", "again")
}

func testValuesAreCopied(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	v := []byte("value")
	if err := s.Set(ctx, "b", "f", v, opt); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X'
	wantValue(t, s, "b", "f", "value")
	got, err := s.Get(ctx, "b", "f")
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'Y'
	wantValue(t, s, "b", "f", "value")
}

func testBinaryFields(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	fields := []string{
		string(all),
		"\x00",
		"\x00\x00",
		"a\x00",
		"a",
		":{}*?[]\\",
		string(bytes.Repeat([]byte{0xff}, 16)),
	}
	buckets := []string{"route|1", "route|1:x", "r*?[x]\\", "ünïcödé"}
	for _, b := range buckets {
		for i, f := range fields {
			mustSet(t, s, b, f, fmt.Sprintf("%s#%d", b, i), opt)
		}
	}
	for _, b := range buckets {
		for i, f := range fields {
			wantValue(t, s, b, f, fmt.Sprintf("%s#%d", b, i))
		}
	}
}

func testTTLExpires(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	mustSet(t, s, "b", "f", "v", storage.SetOptions{TTL: 50 * time.Millisecond})
	eventuallyMissing(t, s, "b", "f")
}

func testTTLNeverShrinks(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	long := 600 * time.Millisecond
	start := time.Now()
	mustSet(t, s, "b", "long", "v", storage.SetOptions{TTL: long})
	mustSet(t, s, "b", "short", "v", storage.SetOptions{TTL: 30 * time.Millisecond})
	time.Sleep(150 * time.Millisecond)
	if time.Since(start) < long {
		if !present(t, s, "b", "long") || !present(t, s, "b", "short") {
			t.Fatal("a write with a shorter TTL shortened the bucket's lifetime")
		}
	}
	// The bucket still expires at the longer lifetime.
	eventuallyMissing(t, s, "b", "long")
}

func testTTLGrows(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	mustSet(t, s, "b", "first", "v", storage.SetOptions{TTL: 60 * time.Millisecond})
	start := time.Now()
	mustSet(t, s, "b", "second", "v", storage.SetOptions{TTL: 800 * time.Millisecond})
	time.Sleep(200 * time.Millisecond)
	if time.Since(start) < 800*time.Millisecond {
		if !present(t, s, "b", "first") {
			t.Fatal("a write with a longer TTL did not grow the bucket's lifetime")
		}
	}
	eventuallyMissing(t, s, "b", "second")
}

// wantFull checks that a Set of a new field into a full bucket is refused
// with ErrBucketFull and stores nothing.
func wantFull(t *testing.T, s Store, bucket, field string, o storage.SetOptions) {
	t.Helper()
	err := s.Set(t.Context(), bucket, field, []byte("junk"), o)
	if !errors.Is(err, storage.ErrBucketFull) {
		t.Fatalf("Set(%q, %q) into a full bucket (MaxFields %d): %v, want an error matching storage.ErrBucketFull", bucket, field, o.MaxFields, err)
	}
	wantMissing(t, s, bucket, field)
}

// testMaxFields checks the bound on the fields of a bucket: a full bucket
// refuses new fields and keeps the ones it holds, which can still be
// overwritten; nothing is ever evicted.
func testMaxFields(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		give   int // MaxFields
		writes int
	}{
		{give: 1, writes: 5},
		{give: 3, writes: 10},
		{give: 5, writes: 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("max%d", tt.give), func(t *testing.T) {
			s := newStore(t)
			bucket := fmt.Sprintf("bounded%d", tt.give)
			o := storage.SetOptions{TTL: time.Minute, MaxFields: tt.give}
			for i := range tt.writes {
				f := fmt.Sprintf("f%d", i)
				if i < tt.give {
					mustSet(t, s, bucket, f, "v", o)
					wantValue(t, s, bucket, f, "v")
				} else {
					wantFull(t, s, bucket, f, o)
				}
			}
			// The first fields are all kept, and refreshing them is
			// always allowed.
			for i := range min(tt.give, tt.writes) {
				f := fmt.Sprintf("f%d", i)
				wantValue(t, s, bucket, f, "v")
				mustSet(t, s, bucket, f, "refreshed", o)
				wantValue(t, s, bucket, f, "refreshed")
			}
			for i := tt.give; i < tt.writes; i++ {
				wantMissing(t, s, bucket, fmt.Sprintf("f%d", i))
			}
		})
	}
	t.Run("deleteMakesRoom", func(t *testing.T) {
		s := newStore(t)
		o := storage.SetOptions{TTL: time.Minute, MaxFields: 2}
		mustSet(t, s, "b", "a", "v", o)
		mustSet(t, s, "b", "b", "v", o)
		wantFull(t, s, "b", "c", o)
		if err := s.Delete(t.Context(), "b", "a"); err != nil {
			t.Fatal(err)
		}
		mustSet(t, s, "b", "c", "v", o)
		wantValue(t, s, "b", "b", "v")
		wantValue(t, s, "b", "c", "v")
		wantFull(t, s, "b", "d", o)
	})
	t.Run("boundLowered", func(t *testing.T) {
		// A bucket filled under a higher bound keeps every field when
		// the bound is lowered; its fields can still be refreshed.
		s := newStore(t)
		for i := range 6 {
			mustSet(t, s, "b", fmt.Sprintf("f%d", i), "v", opt)
		}
		lowered := storage.SetOptions{TTL: time.Minute, MaxFields: 2}
		wantFull(t, s, "b", "new", lowered)
		mustSet(t, s, "b", "f4", "refreshed", lowered)
		for i := range 6 {
			want := "v"
			if i == 4 {
				want = "refreshed"
			}
			wantValue(t, s, "b", fmt.Sprintf("f%d", i), want)
		}
	})
	t.Run("refusedKeepsLifetime", func(t *testing.T) {
		// A refused write does not grow the bucket's lifetime: the
		// bucket still expires when its fields say.
		s := newStore(t)
		short := storage.SetOptions{TTL: 100 * time.Millisecond, MaxFields: 1}
		mustSet(t, s, "b", "kept", "v", short)
		wantFull(t, s, "b", "junk", storage.SetOptions{TTL: time.Hour, MaxFields: 1})
		eventuallyMissing(t, s, "b", "kept")
	})
	t.Run("refusedRecordsNoTags", func(t *testing.T) {
		s := newStore(t)
		o := storage.SetOptions{TTL: time.Minute, MaxFields: 1}
		mustSet(t, s, "b", "kept", "v", o)
		o.Tags = []string{"junk"}
		wantFull(t, s, "b", "junk", o)
		p := purger(t, s)
		n, err := p.PurgeTag(t.Context(), "junk")
		wantCount(t, "PurgeTag of the tag of a refused write", n, err, 0)
		wantValue(t, s, "b", "kept", "v")
	})
	t.Run("unbounded", func(t *testing.T) {
		s := newStore(t)
		for i := range 20 {
			mustSet(t, s, "unbounded", fmt.Sprintf("f%d", i), "v", opt)
		}
		for i := range 20 {
			wantValue(t, s, "unbounded", fmt.Sprintf("f%d", i), "v")
		}
	})
}

func mustLock(t *testing.T, s Store, bucket, field string, ttl time.Duration) storage.Lock {
	t.Helper()
	l, err := s.TryLock(t.Context(), bucket, field, ttl)
	if err != nil {
		t.Fatalf("TryLock(%q, %q): %v", bucket, field, err)
	}
	if l == nil {
		t.Fatalf("TryLock(%q, %q) returned a nil lock", bucket, field)
	}
	return l
}

func wantHeld(t *testing.T, s Store, bucket, field string) {
	t.Helper()
	l, err := s.TryLock(t.Context(), bucket, field, time.Second)
	if !errors.Is(err, storage.ErrLockHeld) {
		if l != nil {
			_ = l.Unlock(t.Context())
		}
		t.Fatalf("TryLock(%q, %q) on a held lock: %v, want an error matching storage.ErrLockHeld", bucket, field, err)
	}
}

func testLockExclusive(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ctx := t.Context()
	l := mustLock(t, s1, "b", "f", 5*time.Second)
	wantHeld(t, s1, "b", "f")
	wantHeld(t, s2, "b", "f")
	// Other fields and buckets have locks of their own.
	other := mustLock(t, s2, "b", "g", 5*time.Second)
	another := mustLock(t, s2, "c", "f", 5*time.Second)
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	l = mustLock(t, s2, "b", "f", 5*time.Second)
	wantHeld(t, s1, "b", "f")
	for _, l := range []storage.Lock{l, other, another} {
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	}
}

func testLockExtend(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ctx := t.Context()
	ttl := 150 * time.Millisecond
	l := mustLock(t, s1, "b", "f", ttl)
	// Extending keeps the lock well past its first expiry.
	for range 6 {
		time.Sleep(ttl / 3)
		if err := l.Extend(ctx); err != nil {
			t.Fatalf("Extend: %v", err)
		}
	}
	wantHeld(t, s2, "b", "f")
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	mustLock(t, s2, "b", "f", time.Second)
}

func testLockExpires(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ctx := t.Context()
	ttl := 50 * time.Millisecond
	l := mustLock(t, s1, "b", "f", ttl)
	time.Sleep(ttl + 50*time.Millisecond)
	// Expired: another caller gets it.
	l2 := mustLock(t, s2, "b", "f", 5*time.Second)
	if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend of an expired lock: %v, want an error matching storage.ErrLockLost", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Unlock of an expired lock: %v, want an error matching storage.ErrLockLost", err)
	}
	// The late Unlock must not have released the new holder's lock.
	wantHeld(t, s1, "b", "f")
	if err := l2.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of the new holder: %v", err)
	}

	// Expired with nobody taking it over: still lost.
	l = mustLock(t, s1, "b", "g", ttl)
	time.Sleep(ttl + 50*time.Millisecond)
	if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend of an expired lock: %v, want an error matching storage.ErrLockLost", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Unlock of an expired lock: %v, want an error matching storage.ErrLockLost", err)
	}
}

func testLockUnlockTwice(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	l := mustLock(t, s, "b", "f", 5*time.Second)
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("second Unlock: %v, want an error matching storage.ErrLockLost", err)
	}
	if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend after Unlock: %v, want an error matching storage.ErrLockLost", err)
	}
}

// wantFill waits for a notification on ch.
func wantFill(t *testing.T, ch <-chan storage.Fill, want storage.Fill) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("received %+v, want %+v", got, want)
		}
	case <-time.After(within):
		t.Fatalf("no notification after %v", within)
	}
}

// wantNoFill checks that nothing arrives on ch for a while.
func wantNoFill(t *testing.T, ch <-chan storage.Fill) {
	t.Helper()
	select {
	case got, ok := <-ch:
		t.Fatalf("received %+v (open: %v), want nothing", got, ok)
	case <-time.After(quiet):
	}
}

func mustPublish(t *testing.T, s Store, bucket, field string, f storage.Fill) {
	t.Helper()
	if err := s.Publish(t.Context(), bucket, field, f); err != nil {
		t.Fatalf("Publish(%q, %q): %v", bucket, field, err)
	}
}

func testWatchPublish(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	for _, want := range []storage.Fill{{Stored: true}, {Stored: false}, {Failed: true}} {
		t.Run(fmt.Sprintf("stored=%v", want.Stored), func(t *testing.T) {
			ch, stop := s.Watch("b", "f\x00\xff")
			defer stop()
			mustPublish(t, s, "b", "f\x00\xff", want)
			wantFill(t, ch, want)
		})
	}
}

func testWatchOnce(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ch, stop := s.Watch("b", "f")
	defer stop()
	mustPublish(t, s, "b", "f", storage.Fill{Stored: true})
	mustPublish(t, s, "b", "f", storage.Fill{Stored: false})
	wantFill(t, ch, storage.Fill{Stored: true})
	wantNoFill(t, ch)
}

func testWatchOtherKeys(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	// Pairs that a careless encoding of (bucket, field) would confuse.
	ch, stop := s.Watch("ab", "c")
	defer stop()
	mustPublish(t, s, "a", "bc", storage.Fill{Stored: true})
	mustPublish(t, s, "abc", "", storage.Fill{Stored: true})
	mustPublish(t, s, "ab", "c\x00", storage.Fill{Stored: true})
	mustPublish(t, s, "ab", "C", storage.Fill{Stored: true})
	wantNoFill(t, ch)
	mustPublish(t, s, "ab", "c", storage.Fill{Stored: true})
	wantFill(t, ch, storage.Fill{Stored: true})
}

func testWatchSecondInstance(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ch1, stop1 := s1.Watch("b", "f")
	defer stop1()
	ch2, stop2 := s2.Watch("b", "f")
	defer stop2()
	mustPublish(t, s2, "b", "f", storage.Fill{Stored: true})
	wantFill(t, ch1, storage.Fill{Stored: true})
	wantFill(t, ch2, storage.Fill{Stored: true})

	ch1, stop1 = s1.Watch("b", "g")
	defer stop1()
	mustPublish(t, s2, "b", "g", storage.Fill{})
	wantFill(t, ch1, storage.Fill{})
}

func testWatchUnregister(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ch, stop := s.Watch("b", "f")
	kept, stopKept := s.Watch("b", "f")
	defer stopKept()
	stop()
	stop() // idempotent
	mustPublish(t, s, "b", "f", storage.Fill{Stored: true})
	wantFill(t, kept, storage.Fill{Stored: true})
	wantNoFill(t, ch)
	stopKept()
	stopKept()
}

func testWatchConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	const watchers = 100
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		got     = map[string]int{}
		stops   []func()
		ready   sync.WaitGroup
		publish = make(chan struct{})
	)
	keys := []string{"f1", "f2", "f3"}
	for i := range watchers {
		field := keys[i%len(keys)]
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			ch, stop := s.Watch("b", field)
			mu.Lock()
			stops = append(stops, stop)
			mu.Unlock()
			ready.Done()
			<-publish
			wait := within
			if field == "f3" {
				wait = quiet // never published
			}
			select {
			case f := <-ch:
				if !f.Stored {
					t.Errorf("watcher of %s received %+v", field, f)
				}
				mu.Lock()
				got[field]++
				mu.Unlock()
			case <-time.After(wait):
			}
		}()
	}
	ready.Wait()
	close(publish)
	for _, f := range keys[:2] { // f3 is never published
		mustPublish(t, s1, "b", f, storage.Fill{Stored: true})
	}
	wg.Wait()
	for _, stop := range stops {
		stop()
	}
	for _, f := range keys[:2] {
		want := 0
		for i := range watchers {
			if keys[i%len(keys)] == f {
				want++
			}
		}
		if got[f] != want {
			t.Errorf("%d watchers of %s notified, want %d", got[f], f, want)
		}
	}
	if got["f3"] != 0 {
		t.Errorf("%d watchers of an unpublished field notified", got["f3"])
	}
}

func testCloseIdempotent(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ch, stop := s.Watch("b", "f")
	defer stop()
	_ = ch
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// purger returns the store as a Purger, skipping the test when it is not
// one.
func purger(t *testing.T, s Store) Purger {
	p, ok := s.(Purger)
	if !ok {
		t.Skipf("%T does not implement storetest.Purger", s)
	}
	return p
}

func wantCount(t *testing.T, what string, got int64, err error, want int64) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s = %d, want %d", what, got, want)
	}
}

func testPurgeBucket(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	p := purger(t, s)
	ctx := t.Context()
	mustSet(t, s, "b", "f", "v", opt)
	mustSet(t, s, "b", "g", "v", opt)
	mustSet(t, s, "c", "f", "v", opt)
	n, err := p.PurgeBucket(ctx, "b")
	wantCount(t, "PurgeBucket", n, err, 1)
	wantMissing(t, s, "b", "f")
	wantMissing(t, s, "b", "g")
	wantValue(t, s, "c", "f", "v")
	n, err = p.PurgeBucket(ctx, "b")
	wantCount(t, "PurgeBucket of a missing bucket", n, err, 0)
}

func testPurgePrefix(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	p := purger(t, s)
	ctx := t.Context()
	buckets := []string{
		"users|1", "users|2", "users|2:x", "users", "user|1", "posts|1",
		"a*b|1", "aXb|1", "q?|1", "qq|1", "s[x]|1", "sx|1", `t\|1`, "t|1",
	}
	for _, b := range buckets {
		mustSet(t, s, b, "f", "v", opt)
		mustSet(t, s, b, "g", "v", opt)
	}
	tests := []struct {
		give    string
		want    int64
		removed []string
	}{
		{give: "users|", want: 3, removed: []string{"users|1", "users|2", "users|2:x"}},
		{give: "a*", want: 1, removed: []string{"a*b|1"}},
		{give: "q?", want: 1, removed: []string{"q?|1"}},
		{give: "s[x]", want: 1, removed: []string{"s[x]|1"}},
		{give: `t\`, want: 1, removed: []string{`t\|1`}},
		{give: "nothing", want: 0},
	}
	gone := map[string]bool{}
	for _, tt := range tests {
		n, err := p.PurgePrefix(ctx, tt.give)
		wantCount(t, fmt.Sprintf("PurgePrefix(%q)", tt.give), n, err, tt.want)
		for _, b := range tt.removed {
			gone[b] = true
		}
		for _, b := range buckets {
			if got := present(t, s, b, "f"); got == gone[b] {
				t.Fatalf("after PurgePrefix(%q): bucket %q present = %v", tt.give, b, got)
			}
		}
	}
	// Many buckets, more than one batch of a scan, in a store of their
	// own: the tombstones of the purges above expire meanwhile, and a
	// key that expires during a SCAN may shift miniredis's cursor.
	s = newStore(t)
	p = purger(t, s)
	const many = 1200
	for i := range many {
		mustSet(t, s, fmt.Sprintf("many|%d", i), "f", "v", opt)
	}
	n, err := p.PurgePrefix(ctx, "many|")
	wantCount(t, `PurgePrefix("many|")`, n, err, many)
	wantMissing(t, s, "many|7", "f")
}

func testPurgeTag(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	p := purger(t, s)
	ctx := t.Context()
	tagged := func(tags ...string) storage.SetOptions {
		return storage.SetOptions{TTL: time.Minute, Tags: tags}
	}
	mustSet(t, s, "a", "f", "v", tagged("t1"))
	mustSet(t, s, "b", "f", "v", tagged("t1", "t2"))
	mustSet(t, s, "b", "g", "v", tagged("t1"))
	mustSet(t, s, "c", "f", "v", tagged("t2"))
	mustSet(t, s, "d", "f", "v", opt)
	n, err := p.PurgeTag(ctx, "t1")
	wantCount(t, `PurgeTag("t1")`, n, err, 2)
	wantMissing(t, s, "a", "f")
	wantMissing(t, s, "b", "f")
	wantMissing(t, s, "b", "g")
	wantValue(t, s, "c", "f", "v")
	wantValue(t, s, "d", "f", "v")
	n, err = p.PurgeTag(ctx, "t1")
	wantCount(t, `second PurgeTag("t1")`, n, err, 0)
	// t2 still names b, which is gone, and c.
	n, err = p.PurgeTag(ctx, "t2")
	wantCount(t, `PurgeTag("t2")`, n, err, 1)
	wantMissing(t, s, "c", "f")
	n, err = p.PurgeTag(ctx, "never")
	wantCount(t, `PurgeTag("never")`, n, err, 0)

	const many = 1200
	for i := range many {
		mustSet(t, s, fmt.Sprintf("many|%d", i), "f", "v", tagged("big"))
	}
	n, err = p.PurgeTag(ctx, "big")
	wantCount(t, `PurgeTag("big")`, n, err, many)
	wantMissing(t, s, "many|7", "f")
}

func testPurgeAll(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	p := purger(t, s)
	ctx := t.Context()
	for i := range 50 {
		mustSet(t, s, fmt.Sprintf("b%d", i), "f", "v", opt)
	}
	n, err := p.PurgeAll(ctx)
	wantCount(t, "PurgeAll", n, err, 50)
	wantMissing(t, s, "b7", "f")

	// Tags and locks count as keys too, and held locks are released.
	mustSet(t, s, "b", "f", "v", storage.SetOptions{TTL: time.Minute, Tags: []string{"t"}})
	l := mustLock(t, s, "b", "f", time.Minute)
	n, err = p.PurgeAll(ctx)
	wantCount(t, "PurgeAll", n, err, 3)
	wantMissing(t, s, "b", "f")
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Unlock after PurgeAll: %v, want an error matching storage.ErrLockLost", err)
	}
	n, err = p.PurgeAll(ctx)
	wantCount(t, "PurgeAll of nothing", n, err, 0)
}
