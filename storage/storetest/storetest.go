package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// Store is what [Run] checks: a [storage.Store] that is also a
// [storage.Locker], since a cache collapses misses across instances through
// its store's locks and notifications. Run also checks the optional
// [storage.Fencer], [storage.Purger], [storage.Sampler],
// [storage.DictionaryStore] and [storage.Tracker] on a store that
// implements them, and Close on one that implements [io.Closer]; the
// tests of a capability the store lacks are skipped, and so are the
// Tracker tests when Track returns [storage.ErrNoTracking].
type Store interface {
	storage.Store
	storage.Locker
}

// ShortFenceTTL is the fence TTL the suite asks for in the tests of
// tombstone expiry. Every other test asks for the store's default (a
// fenceTTL of zero), which must be long enough for the suite: a minute or
// more.
const ShortFenceTTL = 200 * time.Millisecond

// within bounds every wait for something that should happen; it is long so
// that a loaded machine does not fail the suite, and it is only reached when
// the store is broken. The suite never waits a fixed time to conclude that
// something does not happen: it waits for a later event that proves it
// (see settle).
const within = 3 * time.Second

// Run checks a store against the contract of package storage, each check a
// subtest of t. newStore returns a new store instance for the test t whose
// purge tombstones live for fenceTTL, or for the store's default when
// fenceTTL is zero (see [ShortFenceTTL]); one test always asks for the
// same fenceTTL. Every instance returned for the same t must share one
// backend (the same memstore.Store, or the same Redis and key prefix),
// because some tests use two instances to stand for two processes, and
// that backend must hold nothing of other tests (PurgeAll is checked).
// newStore is responsible for closing what it creates, for example with
// t.Cleanup.
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
		{name: "WatchContext", run: testWatchContext},
		{name: "WatchConcurrent", run: testWatchConcurrent},
		{name: "CloseIdempotent", run: testCloseIdempotent},
		{name: "SampleFields", run: testSampleFields},
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
		{name: "TrackFirstAll", run: testTrackFirstAll},
		{name: "TrackSet", run: testTrackSet},
		{name: "TrackDelete", run: testTrackDelete},
		{name: "TrackExpiry", run: testTrackExpiry},
		{name: "TrackPurgeBucket", run: testTrackPurgeBucket},
		{name: "TrackPurgePrefix", run: testTrackPurgePrefix},
		{name: "TrackPurgeTag", run: testTrackPurgeTag},
		{name: "TrackPurgeAll", run: testTrackPurgeAll},
		{name: "TrackThrough", run: testTrackThrough},
		{name: "TrackStop", run: testTrackStop},
		{name: "TrackContext", run: testTrackContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, func(t *testing.T) Store { return newStore(t, tt.fenceTTL) })
		})
	}
}

var opt = storage.SetOptions{TTL: time.Minute}

// bulkOpt is the option of the writes of bulk tests: on a loaded machine
// writing a thousand buckets to miniredis, whose TTLs run on the wall
// clock, can take longer than opt's minute.
var bulkOpt = storage.SetOptions{TTL: time.Hour}

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

// testTTLNeverShrinks checks that a write with a shorter TTL leaves the
// bucket's longer lifetime. It waits for a control bucket written with the
// shorter TTL at the same time to expire, which proves that the shorter
// TTL has run out; the verdict is only drawn while the longer one cannot
// have.
func testTTLNeverShrinks(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	long, short := 800*time.Millisecond, 30*time.Millisecond
	start := time.Now()
	mustSet(t, s, "b", "long", "v", storage.SetOptions{TTL: long})
	mustSet(t, s, "b", "short", "v", storage.SetOptions{TTL: short})
	mustSet(t, s, "control", "f", "v", storage.SetOptions{TTL: short})
	eventuallyMissing(t, s, "control", "f")
	longLived := present(t, s, "b", "long")
	shortLived := present(t, s, "b", "short")
	if time.Since(start) < long && (!longLived || !shortLived) {
		t.Fatal("a write with a shorter TTL shortened the bucket's lifetime")
	}
	// The bucket still expires at the longer lifetime.
	eventuallyMissing(t, s, "b", "long")
}

// testTTLGrows checks that a write with a longer TTL grows the bucket's
// lifetime, with a control bucket as testTTLNeverShrinks does.
func testTTLGrows(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	short, long := 60*time.Millisecond, 800*time.Millisecond
	mustSet(t, s, "b", "first", "v", storage.SetOptions{TTL: short})
	start := time.Now()
	mustSet(t, s, "b", "second", "v", storage.SetOptions{TTL: long})
	mustSet(t, s, "control", "f", "v", storage.SetOptions{TTL: short})
	eventuallyMissing(t, s, "control", "f")
	if !present(t, s, "b", "first") && time.Since(start) < long {
		t.Fatal("a write with a longer TTL did not grow the bucket's lifetime")
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

// testLockExtend extends a lock until it has outlived its first expiry
// well, then checks that it is still held. A failure is reported only when
// the lock could not have expired: when the call that found it gone
// returned less than its TTL after the previous Extend started. A machine
// too slow to tell skips the test.
func testLockExtend(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ctx := t.Context()
	ttl := 300 * time.Millisecond
	last := time.Now() // the start of the last call that took or extended the lock
	l := mustLock(t, s1, "b", "f", ttl)
	for first := last; time.Since(first) < 2*ttl; {
		time.Sleep(ttl / 5) // pacing only: the verdict does not rest on it
		start := time.Now()
		err := l.Extend(ctx)
		if err != nil {
			if errors.Is(err, storage.ErrLockLost) && time.Since(last) >= ttl {
				t.Skipf("the machine is too slow to check Extend: %v between extensions of a lock of %v", time.Since(last), ttl)
			}
			t.Fatalf("Extend %v after the previous one started, lock TTL %v: %v", start.Sub(last), ttl, err)
		}
		last = start
	}
	// The lock outlived its first TTL; the last Extend keeps it a TTL more.
	l2, err := s2.TryLock(ctx, "b", "f", time.Second)
	switch {
	case errors.Is(err, storage.ErrLockHeld):
	case err == nil && time.Since(last) >= ttl:
		_ = l2.Unlock(ctx)
		t.Skipf("the machine is too slow to check Extend: %v after the last extension of a lock of %v", time.Since(last), ttl)
	case err == nil:
		_ = l2.Unlock(ctx)
		t.Fatalf("TryLock of an extended lock succeeded %v after the last Extend started, lock TTL %v", time.Since(last), ttl)
	default:
		t.Fatalf("TryLock of an extended lock: %v, want an error matching storage.ErrLockHeld", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	mustLock(t, s2, "b", "f", time.Second)
}

// eventuallyLock waits until TryLock takes the lock of field in bucket.
func eventuallyLock(t *testing.T, s Store, bucket, field string, ttl time.Duration) storage.Lock {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l, err := s.TryLock(t.Context(), bucket, field, ttl)
		switch {
		case err == nil:
			return l
		case !errors.Is(err, storage.ErrLockHeld):
			t.Fatalf("TryLock(%q, %q): %v", bucket, field, err)
		case time.Now().After(deadline):
			t.Fatalf("TryLock(%q, %q) still finds the lock held after %v", bucket, field, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLockExpires(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ctx := t.Context()
	// A store may bound a lock's commands by a fraction of its TTL (the
	// Redis store: half): a first command opens the connections, so that
	// the short lock's do not pay for the dial.
	wantMissing(t, s1, "b", "f")
	wantMissing(t, s2, "b", "f")
	ttl := 100 * time.Millisecond
	l := mustLock(t, s1, "b", "f", ttl)
	// Expired: another caller gets it.
	l2 := eventuallyLock(t, s2, "b", "f", 5*time.Second)
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

	// Expired with nobody taking it over: still lost. The lock was
	// taken before TryLock returned, so it has expired a TTL after that
	// (and a margin for the backend's millisecond clock).
	l = mustLock(t, s1, "b", "g", ttl)
	expired := time.Now().Add(ttl + 5*time.Millisecond)
	time.Sleep(time.Until(expired))
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

// watch calls Watch, which must keep its promise, and unregisters the
// watcher when the test ends.
func watch(t *testing.T, s Store, bucket, field string) (<-chan storage.Fill, func()) {
	t.Helper()
	ch, stop, err := s.Watch(t.Context(), bucket, field)
	if stop == nil {
		t.Fatalf("Watch(%q, %q) returned a nil func", bucket, field)
	}
	t.Cleanup(stop)
	if err != nil {
		t.Fatalf("Watch(%q, %q): %v", bucket, field, err)
	}
	if ch == nil {
		t.Fatalf("Watch(%q, %q) returned a nil channel", bucket, field)
	}
	return ch, stop
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

// settles numbers the keys settle watches, so that no two calls share one.
var settles atomic.Int64

// settle returns once s has delivered every notification that its backend
// received before the call: it watches a key of its own, publishes on it
// and waits for that notification, which a Locker delivers after the
// earlier ones.
func settle(t *testing.T, s Store) {
	t.Helper()
	field := strconv.FormatInt(settles.Add(1), 10)
	ch, stop := watch(t, s, "storetest-settle", field)
	defer stop()
	mustPublish(t, s, "storetest-settle", field, storage.Fill{Stored: true})
	wantFill(t, ch, storage.Fill{Stored: true})
}

// wantNoFill checks that ch, a channel of a watcher registered with s,
// holds nothing once s has delivered every notification published so far.
func wantNoFill(t *testing.T, s Store, ch <-chan storage.Fill) {
	t.Helper()
	settle(t, s)
	select {
	case got, ok := <-ch:
		t.Fatalf("received %+v (open: %v), want nothing", got, ok)
	default:
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
		t.Run(fmt.Sprintf("stored=%v,failed=%v", want.Stored, want.Failed), func(t *testing.T) {
			ch, stop := watch(t, s, "b", "f\x00\xff")
			defer stop()
			mustPublish(t, s, "b", "f\x00\xff", want)
			wantFill(t, ch, want)
		})
	}
}

func testWatchOnce(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ch, stop := watch(t, s, "b", "f")
	defer stop()
	mustPublish(t, s, "b", "f", storage.Fill{Stored: true})
	mustPublish(t, s, "b", "f", storage.Fill{Stored: false})
	wantFill(t, ch, storage.Fill{Stored: true})
	wantNoFill(t, s, ch)
}

func testWatchOtherKeys(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	// Pairs that a careless encoding of (bucket, field) would confuse.
	ch, stop := watch(t, s, "ab", "c")
	defer stop()
	mustPublish(t, s, "a", "bc", storage.Fill{Stored: true})
	mustPublish(t, s, "abc", "", storage.Fill{Stored: true})
	mustPublish(t, s, "ab", "c\x00", storage.Fill{Stored: true})
	mustPublish(t, s, "ab", "C", storage.Fill{Stored: true})
	wantNoFill(t, s, ch)
	mustPublish(t, s, "ab", "c", storage.Fill{Stored: true})
	wantFill(t, ch, storage.Fill{Stored: true})
}

func testWatchSecondInstance(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	ch1, stop1 := watch(t, s1, "b", "f")
	defer stop1()
	ch2, stop2 := watch(t, s2, "b", "f")
	defer stop2()
	mustPublish(t, s2, "b", "f", storage.Fill{Stored: true})
	wantFill(t, ch1, storage.Fill{Stored: true})
	wantFill(t, ch2, storage.Fill{Stored: true})

	ch1, stop1 = watch(t, s1, "b", "g")
	defer stop1()
	mustPublish(t, s2, "b", "g", storage.Fill{})
	wantFill(t, ch1, storage.Fill{})
}

func testWatchUnregister(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ch, stop := watch(t, s, "b", "f")
	kept, stopKept := watch(t, s, "b", "f")
	defer stopKept()
	stop()
	stop() // idempotent
	mustPublish(t, s, "b", "f", storage.Fill{Stored: true})
	wantFill(t, kept, storage.Fill{Stored: true})
	wantNoFill(t, s, ch)
	stopKept()
	stopKept()
}

// testWatchContext checks that Watch does not block past its context: with
// one that has ended, on a new instance (whose notifications may not be
// set up yet), it returns at once, and either keeps its promise or says it
// cannot. A Watch with a live context afterwards keeps its promise.
func testWatchContext(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	type result struct {
		ch   <-chan storage.Fill
		stop func()
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ch, stop, err := s.Watch(ctx, "b", "f")
		done <- result{ch, stop, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(within):
		t.Fatalf("Watch with an ended context still blocks after %v", within)
	}
	if r.stop == nil {
		t.Fatal("Watch with an ended context returned a nil func")
	}
	defer r.stop()
	switch {
	case r.err == nil:
		mustPublish(t, s, "b", "f", storage.Fill{Stored: true})
		wantFill(t, r.ch, storage.Fill{Stored: true})
	case !errors.Is(r.err, storage.ErrWatchUnconfirmed) || !errors.Is(r.err, context.Canceled):
		t.Fatalf("Watch with an ended context: %v, want nil or an error matching storage.ErrWatchUnconfirmed and context.Canceled", r.err)
	}
	r.stop()
	r.stop() // idempotent
	ch, stop := watch(t, s, "b", "g")
	defer stop()
	mustPublish(t, s, "b", "g", storage.Fill{Failed: true})
	wantFill(t, ch, storage.Fill{Failed: true})
}

// testWatchConcurrent registers watchers of two instances from many
// goroutines at once, publishes two of their three keys, and checks that
// exactly the watchers of those two are notified.
func testWatchConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	const watchers = 100
	keys := []string{"f1", "f2", "f3"} // f3 is never published
	var (
		mu    sync.Mutex
		got   = map[string]int{}
		chans = map[string][]<-chan storage.Fill{}
		ready sync.WaitGroup
	)
	for i := range watchers {
		field := keys[i%len(keys)]
		s := s1
		if i%2 == 1 {
			s = s2
		}
		ready.Go(func() {
			ch, stop, err := s.Watch(t.Context(), "b", field)
			if stop != nil {
				t.Cleanup(stop)
			}
			if err != nil {
				t.Errorf("Watch: %v", err)
				return
			}
			mu.Lock()
			chans[field] = append(chans[field], ch)
			mu.Unlock()
		})
	}
	ready.Wait()
	if t.Failed() {
		return
	}
	var wg sync.WaitGroup
	for _, field := range keys[:2] {
		for _, ch := range chans[field] {
			wg.Go(func() {
				select {
				case f := <-ch:
					if !f.Stored {
						t.Errorf("watcher of %s received %+v", field, f)
					}
					mu.Lock()
					got[field]++
					mu.Unlock()
				case <-time.After(within):
				}
			})
		}
	}
	for _, f := range keys[:2] {
		mustPublish(t, s1, "b", f, storage.Fill{Stored: true})
	}
	wg.Wait()
	for _, f := range keys[:2] {
		if want := len(chans[f]); got[f] != want {
			t.Errorf("%d watchers of %s notified, want %d", got[f], f, want)
		}
	}
	settle(t, s1)
	settle(t, s2)
	for _, ch := range chans["f3"] {
		select {
		case f := <-ch:
			t.Errorf("a watcher of an unpublished field received %+v", f)
		default:
		}
	}
}

// testCloseIdempotent checks Close, on a store that has one, with a
// watcher registered.
func testCloseIdempotent(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	c, ok := s.(io.Closer)
	if !ok {
		t.Skipf("%T does not implement io.Closer", s)
	}
	_, stop := watch(t, s, "b", "f")
	defer stop()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// purger returns the store as a Purger, skipping the test when it is not
// one.
// testSampleFields checks [storage.Sampler]: distinct fields of the
// bucket with their values, at most n, never the generation field.
func testSampleFields(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	sm, ok := s.(storage.Sampler)
	if !ok {
		t.Skipf("%T does not implement storage.Sampler", s)
	}
	ctx := t.Context()
	if got, err := sm.SampleFields(ctx, "none", 5); err != nil || len(got) != 0 {
		t.Fatalf("sample of a missing bucket = %v, %v", got, err)
	}
	want := map[string]string{}
	for i := range 10 {
		f, v := fmt.Sprintf("f%d", i), fmt.Sprintf("v%d", i)
		mustSet(t, s, "b", f, v, opt)
		want[f] = v
	}
	if p, ok := s.(storage.Purger); ok {
		// A purge leaves the generation field; refill after it.
		if _, err := p.PurgeBucket(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		for f, v := range want {
			mustSet(t, s, "b", f, v, opt)
		}
	}
	for _, n := range []int{0, 3, 10, 20} {
		got, err := sm.SampleFields(ctx, "b", n)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != min(n, 10) {
			t.Errorf("SampleFields(%d) gave %d fields", n, len(got))
		}
		for f, v := range got {
			if want[f] != string(v) {
				t.Errorf("SampleFields(%d): field %q = %q, want %q", n, f, v, want[f])
			}
		}
	}
}

// purger returns the store as a Purger, skipping the test when it is
// not one.
func purger(t *testing.T, s Store) storage.Purger {
	t.Helper()
	p, ok := s.(storage.Purger)
	if !ok {
		t.Skipf("%T does not implement storage.Purger", s)
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
		mustSet(t, s, fmt.Sprintf("many|%d", i), "f", "v", bulkOpt)
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
		mustSet(t, s, fmt.Sprintf("many|%d", i), "f", "v", storage.SetOptions{TTL: time.Hour, Tags: []string{"big"}})
	}
	n, err = p.PurgeTag(ctx, "big")
	wantCount(t, `PurgeTag("big")`, n, err, many)
	wantMissing(t, s, "many|7", "f")

	// A purge removes its tag too: what is left is d, untagged, and the
	// tag t2 that c alone was recorded under is gone with it.
	n, err = p.PurgeAll(ctx)
	wantCount(t, "PurgeAll after the tag purges (d only, no tag left)", n, err, 1)
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
