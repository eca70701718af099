package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// fencer returns the store as a Fencer and a Purger, skipping the test
// when it is not both.
func fencer(t *testing.T, s Store) (storage.Fencer, storage.Purger) {
	t.Helper()
	f, ok := s.(storage.Fencer)
	if !ok {
		t.Skipf("%T does not implement storage.Fencer", s)
	}
	return f, purger(t, s)
}

// fenced returns the options of a fenced write expecting generation gen.
func fenced(gen string) storage.SetOptions {
	return storage.SetOptions{TTL: time.Minute, Fenced: true, Generation: gen}
}

// forFill calls GetForFill and returns the generation, checking that the
// field is present with value want, or missing when want is nil.
func forFill(t *testing.T, f storage.Fencer, bucket, field string, want *string) string {
	t.Helper()
	got, gen, err := f.GetForFill(t.Context(), bucket, field)
	switch {
	case want == nil && !errors.Is(err, storage.ErrNotFound):
		t.Fatalf("GetForFill(%q, %q) = %q, %q, %v; want an error matching storage.ErrNotFound", bucket, field, got, gen, err)
	case want == nil && got != nil:
		t.Fatalf("GetForFill(%q, %q) of a missing field returned the value %q", bucket, field, got)
	case want != nil && err != nil:
		t.Fatalf("GetForFill(%q, %q): %v, want %q", bucket, field, err, *want)
	case want != nil && string(got) != *want:
		t.Fatalf("GetForFill(%q, %q) = %q, want %q", bucket, field, got, *want)
	}
	return gen
}

// fill is a fill that has read its generation: the first half of a miss.
type fill struct {
	bucket, field, gen string
}

func startFill(t *testing.T, f storage.Fencer, bucket, field string) fill {
	t.Helper()
	return fill{bucket, field, forFill(t, f, bucket, field, nil)}
}

// wantStored finishes the fill with a fenced Set that must succeed.
func (fl fill) wantStored(t *testing.T, s Store, value string) {
	t.Helper()
	if err := s.Set(t.Context(), fl.bucket, fl.field, []byte(value), fenced(fl.gen)); err != nil {
		t.Fatalf("fenced Set(%q, %q) with generation %q: %v", fl.bucket, fl.field, fl.gen, err)
	}
	wantValue(t, s, fl.bucket, fl.field, value)
}

// wantRefused finishes the fill with a fenced Set that must fail with
// ErrPurged and store nothing.
func (fl fill) wantRefused(t *testing.T, s Store) {
	t.Helper()
	err := s.Set(t.Context(), fl.bucket, fl.field, []byte("stale"), fenced(fl.gen))
	if !errors.Is(err, storage.ErrPurged) {
		t.Fatalf("fenced Set(%q, %q) with generation %q after a purge: %v, want an error matching storage.ErrPurged", fl.bucket, fl.field, fl.gen, err)
	}
	wantMissing(t, s, fl.bucket, fl.field)
}

// wantNewer checks that generation next follows prev: different and, as
// both stores write decimal numbers, larger.
func wantNewer(t *testing.T, prev, next string) {
	t.Helper()
	if next == "" || next == prev {
		t.Fatalf("generation after a purge = %q, previous %q: want a new one", next, prev)
	}
	p, errP := strconv.ParseUint(prev, 10, 64)
	n, errN := strconv.ParseUint(next, 10, 64)
	if prev == "" {
		p, errP = 0, nil
	}
	if errP == nil && errN == nil && n <= p {
		t.Fatalf("generation went from %q to %q, want it to grow", prev, next)
	}
}

func ptr(s string) *string { return &s }

func testGetForFill(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	if gen := forFill(t, f, "b", "f", nil); gen != "" {
		t.Fatalf("generation of a missing bucket = %q, want \"\"", gen)
	}
	mustSet(t, s, "b", "f", "v", opt)
	if gen := forFill(t, f, "b", "f", ptr("v")); gen != "" {
		t.Fatalf("generation of a bucket never purged = %q, want \"\"", gen)
	}
	if gen := forFill(t, f, "b", "g", nil); gen != "" {
		t.Fatalf("generation of a bucket never purged = %q, want \"\"", gen)
	}
	forFill(t, f, "b", "\x00", nil)
	forFill(t, f, "b", "", nil)

	// A purge leaves a generation: returned with a missing field too.
	n, err := p.PurgeBucket(t.Context(), "b")
	wantCount(t, "PurgeBucket", n, err, 1)
	gen := forFill(t, f, "b", "f", nil)
	wantNewer(t, "", gen)
	mustSet(t, s, "b", "f", "w", opt)
	if got := forFill(t, f, "b", "f", ptr("w")); got != gen {
		t.Fatalf("generation after a write = %q, want %q", got, gen)
	}
	// The value is a copy.
	got, _, err := f.GetForFill(t.Context(), "b", "f")
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'X'
	wantValue(t, s, "b", "f", "w")
}

func testFencedSet(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	// Never purged: the generation is "" and a fenced write stores.
	startFill(t, f, "b", "f").wantStored(t, s, "one")
	mustSet(t, s, "b", "g", "v", opt)
	fl := fill{"b", "h", forFill(t, f, "b", "h", nil)}
	fl.wantStored(t, s, "two")
	// A generation that the bucket does not have is refused.
	if err := s.Set(ctx, "b", "f", []byte("x"), fenced("7")); !errors.Is(err, storage.ErrPurged) {
		t.Fatalf("fenced Set with a wrong generation: %v, want an error matching storage.ErrPurged", err)
	}
	wantValue(t, s, "b", "f", "one")

	// After a purge, a fill that reads the new generation stores, and
	// the bucket keeps its generation.
	n, err := p.PurgeBucket(ctx, "b")
	wantCount(t, "PurgeBucket", n, err, 1)
	fl = startFill(t, f, "b", "f")
	wantNewer(t, "", fl.gen)
	fl.wantStored(t, s, "three")
	startFill(t, f, "b", "g").wantStored(t, s, "four")
	if gen := forFill(t, f, "b", "f", ptr("three")); gen != fl.gen {
		t.Fatalf("generation after fenced writes = %q, want %q", gen, fl.gen)
	}
	// The old generation "" is refused now; an unfenced write is not.
	if err := s.Set(ctx, "b", "f", []byte("x"), fenced("")); !errors.Is(err, storage.ErrPurged) {
		t.Fatalf("fenced Set with the generation before the purge: %v, want an error matching storage.ErrPurged", err)
	}
	mustSet(t, s, "b", "f", "unfenced", opt)
	wantValue(t, s, "b", "f", "unfenced")

	// Deleting every field keeps the generation.
	for _, field := range []string{"f", "g"} {
		if err := s.Delete(ctx, "b", field); err != nil {
			t.Fatal(err)
		}
	}
	if gen := forFill(t, f, "b", "f", nil); gen != fl.gen {
		t.Fatalf("generation after deleting every field = %q, want %q", gen, fl.gen)
	}
}

func testFenceRefusesAfterPurge(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	f, _ := fencer(t, s1)
	ctx := t.Context()
	mustSet(t, s1, "b", "old", "v", opt)
	mustSet(t, s1, "c", "f", "v", opt)
	// Two fills read the bucket before the purge, one of a field that
	// exists and one of a field that does not.
	missing := startFill(t, f, "b", "f")
	present := fill{"b", "old", forFill(t, f, "b", "old", ptr("v"))}
	other := startFill(t, f, "c", "g")
	n, err := purger(t, s2).PurgeBucket(ctx, "b")
	wantCount(t, "PurgeBucket", n, err, 1)
	missing.wantRefused(t, s1)
	present.wantRefused(t, s1)
	wantMissing(t, s1, "b", "old")
	// Another bucket is not fenced by this purge.
	other.wantStored(t, s1, "w")
	wantValue(t, s1, "c", "f", "v")

	// The tombstone holds nothing.
	for _, field := range []string{"f", "old", "", storage.GenerationField} {
		wantMissing(t, s1, "b", field)
	}
	// A fill that starts after the purge stores.
	startFill(t, f, "b", "f").wantStored(t, s2, "new")
}

func testFenceRepeatedPurges(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	mustSet(t, s, "b", "f", "v", opt)
	gen := forFill(t, f, "b", "f", ptr("v"))
	tests := []struct {
		give   string // what the bucket holds before the purge
		refill bool
		want   int64
	}{
		{give: "an entry", want: 1},
		{give: "only a tombstone", want: 0},
		{give: "only a tombstone, again", want: 0},
		{give: "a refilled entry", refill: true, want: 1},
		{give: "only a tombstone after the refill", want: 0},
	}
	for _, tt := range tests {
		if tt.refill {
			startFill(t, f, "b", "f").wantStored(t, s, "refill")
		}
		stale := fill{"b", "g", gen}
		n, err := p.PurgeBucket(ctx, "b")
		wantCount(t, "PurgeBucket of "+tt.give, n, err, tt.want)
		next := forFill(t, f, "b", "f", nil)
		wantNewer(t, gen, next)
		stale.wantRefused(t, s)
		gen = next
	}
	// A bucket that never existed gets a generation as well, and counts 0.
	fl := startFill(t, f, "never", "f")
	n, err := p.PurgeBucket(ctx, "never")
	wantCount(t, "PurgeBucket of a missing bucket", n, err, 0)
	fl.wantRefused(t, s)
	wantNewer(t, "", forFill(t, f, "never", "f", nil))
}

func testFencePurgePrefix(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	for _, b := range []string{"users|1", "users|2", "posts|1"} {
		mustSet(t, s, b, "f", "v", opt)
	}
	stale := []fill{
		startFill(t, f, "users|1", "g"),
		{"users|2", "f", forFill(t, f, "users|2", "f", ptr("v"))},
	}
	kept := startFill(t, f, "posts|1", "g")
	n, err := p.PurgePrefix(ctx, "users|")
	wantCount(t, `PurgePrefix("users|")`, n, err, 2)
	for _, fl := range stale {
		fl.wantRefused(t, s)
	}
	kept.wantStored(t, s, "w")
	// Tombstones alone are not counted again, and fence again.
	again := startFill(t, f, "users|1", "g")
	n, err = p.PurgePrefix(ctx, "users|")
	wantCount(t, `second PurgePrefix("users|")`, n, err, 0)
	again.wantRefused(t, s)
	startFill(t, f, "users|1", "g").wantStored(t, s, "new")
	n, err = p.PurgePrefix(ctx, "users|")
	wantCount(t, `PurgePrefix("users|") after a refill`, n, err, 1)
}

func testFencePurgeTag(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	tagged := storage.SetOptions{TTL: time.Minute, Tags: []string{"t"}}
	mustSet(t, s, "a", "f", "v", tagged)
	mustSet(t, s, "b", "f", "v", tagged)
	mustSet(t, s, "c", "f", "v", opt)
	stale := []fill{startFill(t, f, "a", "g"), startFill(t, f, "b", "g")}
	kept := startFill(t, f, "c", "g")
	n, err := p.PurgeTag(ctx, "t")
	wantCount(t, `PurgeTag("t")`, n, err, 2)
	for _, fl := range stale {
		fl.wantRefused(t, s)
	}
	kept.wantStored(t, s, "w")
	// A fenced write may record the bucket under the tag again.
	fl := startFill(t, f, "a", "f")
	if err := s.Set(ctx, "a", "f", []byte("new"), storage.SetOptions{TTL: time.Minute, Tags: []string{"t"}, Fenced: true, Generation: fl.gen}); err != nil {
		t.Fatalf("fenced Set with tags: %v", err)
	}
	stale = []fill{startFill(t, f, "a", "g")}
	n, err = p.PurgeTag(ctx, "t")
	wantCount(t, `second PurgeTag("t")`, n, err, 1)
	stale[0].wantRefused(t, s)
	wantMissing(t, s, "a", "f")
}

func testFencePurgeAll(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	for i := range 5 {
		mustSet(t, s, fmt.Sprintf("b%d", i), "f", "v", opt)
	}
	var stale []fill
	for i := range 5 {
		stale = append(stale, startFill(t, f, fmt.Sprintf("b%d", i), "g"))
	}
	n, err := p.PurgeAll(ctx)
	wantCount(t, "PurgeAll", n, err, 5)
	for _, fl := range stale {
		fl.wantRefused(t, s)
	}
	// Only tombstones are left: nothing to count, and they fence again.
	fl := startFill(t, f, "b0", "g")
	n, err = p.PurgeAll(ctx)
	wantCount(t, "PurgeAll of tombstones", n, err, 0)
	fl.wantRefused(t, s)
	startFill(t, f, "b0", "g").wantStored(t, s, "new")
	n, err = p.PurgeAll(ctx)
	wantCount(t, "PurgeAll after a refill", n, err, 1)
}

// testFenceFirstFill checks that a purge fences the first fill of a bucket
// that does not exist yet: PurgeBucket always, PurgePrefix and PurgeAll
// through the fill's lock.
func testFenceFirstFill(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	tests := []struct {
		give   string
		bucket string
		purge  func() (int64, error)
		want   int64
	}{
		{
			give: "PurgeBucket", bucket: "r0|1", want: 0,
			purge: func() (int64, error) { return p.PurgeBucket(ctx, "r0|1") },
		},
		{
			give: "PurgePrefix", bucket: "r1|1", want: 0,
			purge: func() (int64, error) { return p.PurgePrefix(ctx, "r1|") },
		},
		{
			// The buckets the first two cases refilled, and the lock.
			give: "PurgeAll", bucket: "r2|1", want: 3,
			purge: func() (int64, error) { return p.PurgeAll(ctx) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			l := mustLock(t, s, tt.bucket, "f", time.Minute)
			fl := startFill(t, f, tt.bucket, "f")
			n, err := tt.purge()
			wantCount(t, tt.give, n, err, tt.want)
			fl.wantRefused(t, s)
			startFill(t, f, tt.bucket, "f").wantStored(t, s, "new")
			_ = l.Unlock(ctx) // lost to PurgeAll
		})
	}
}

// testFenceMaxFields checks that the purge generation does not count
// toward MaxFields, and that the fence is checked before the bound.
func testFenceMaxFields(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	for _, bound := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("max%d", bound), func(t *testing.T) {
			bucket := fmt.Sprintf("bounded%d", bound)
			mustSet(t, s, bucket, "old", "v", opt)
			before := forFill(t, f, bucket, "f0", nil) // a fill older than the purge
			if _, err := p.PurgeBucket(ctx, bucket); err != nil {
				t.Fatal(err)
			}
			gen := forFill(t, f, bucket, "f0", nil)
			o := fenced(gen)
			o.MaxFields = bound
			for i := range bound {
				field := fmt.Sprintf("f%d", i)
				if err := s.Set(ctx, bucket, field, []byte("v"), o); err != nil {
					t.Fatalf("fenced Set %d of a bucket bounded to %d: %v (the generation counts toward MaxFields?)", i, bound, err)
				}
				if got := forFill(t, f, bucket, field, ptr("v")); got != gen {
					t.Fatalf("generation after %d bounded writes = %q, want %q", i+1, got, gen)
				}
			}
			// Full: a new field is refused, the generation stays, and
			// the fields held can be refreshed.
			wantFull(t, s, bucket, "new", o)
			if got := forFill(t, f, bucket, "new", nil); got != gen {
				t.Fatalf("generation after a refused write = %q, want %q", got, gen)
			}
			if err := s.Set(ctx, bucket, "f0", []byte("refreshed"), o); err != nil {
				t.Fatalf("fenced refresh of a field of a full bucket: %v", err)
			}
			for i := range bound {
				want := "v"
				if i == 0 {
					want = "refreshed"
				}
				wantValue(t, s, bucket, fmt.Sprintf("f%d", i), want)
			}
			// The fence comes first: a fill that read the generation
			// before the purge is refused as purged, not as full.
			stale := fenced(before)
			stale.MaxFields = bound
			if err := s.Set(ctx, bucket, "new", []byte("stale"), stale); !errors.Is(err, storage.ErrPurged) {
				t.Fatalf("fenced Set with the generation before the purge into a full bucket: %v, want an error matching storage.ErrPurged", err)
			}
			if err := s.Set(ctx, bucket, "f0", []byte("stale"), stale); !errors.Is(err, storage.ErrPurged) {
				t.Fatalf("fenced refresh with the generation before the purge: %v, want an error matching storage.ErrPurged", err)
			}
			wantValue(t, s, bucket, "f0", "refreshed")
		})
	}
}

func testFenceReservedField(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	if err := s.Set(ctx, "b", storage.GenerationField, []byte("9"), opt); err == nil {
		t.Fatal("Set of the reserved generation field succeeded")
	}
	if _, err := p.PurgeBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	gen := forFill(t, f, "b", "f", nil)
	if err := s.Set(ctx, "b", storage.GenerationField, []byte("9"), fenced(gen)); err == nil {
		t.Fatal("fenced Set of the reserved generation field succeeded")
	}
	wantMissing(t, s, "b", storage.GenerationField)
	forFill(t, f, "b", storage.GenerationField, nil)
	if err := s.Delete(ctx, "b", storage.GenerationField); err != nil {
		t.Fatalf("Delete of the reserved field: %v", err)
	}
	if got := forFill(t, f, "b", "f", nil); got != gen {
		t.Fatalf("generation after Delete of the reserved field = %q, want %q", got, gen)
	}
}

// testFenceRace runs fills, purges and reads of one bucket at once and
// checks the fence's promise: once a purge has finished, the bucket holds
// no entry whose fill read its generation before that purge started.
func testFenceRace(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	const (
		bucket  = "race|1"
		purges  = 30
		fillers = 4
	)
	mustSet(t, s, bucket, "f0", "0", opt)
	var (
		started, done atomic.Int64 // purges started and finished
		stop          = make(chan struct{})
		wg            sync.WaitGroup
		refused       atomic.Int64
		stored        atomic.Int64
	)
	purgeFuncs := []func() (int64, error){
		func() (int64, error) { return p.PurgeBucket(ctx, bucket) },
		func() (int64, error) { return p.PurgePrefix(ctx, "race|") },
		func() (int64, error) { return p.PurgeAll(ctx) },
	}
	for i := range fillers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			field := fmt.Sprintf("f%d", i%2)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, gen, err := f.GetForFill(ctx, bucket, field)
				if err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("GetForFill: %v", err)
					return
				}
				// Read after GetForFill: a purge not started yet
				// had not touched the bucket when the fill read it.
				seen := started.Load()
				err = s.Set(ctx, bucket, field, []byte(strconv.FormatInt(seen, 10)), fenced(gen))
				switch {
				case err == nil:
					stored.Add(1)
				case errors.Is(err, storage.ErrPurged):
					refused.Add(1)
				default:
					t.Errorf("fenced Set: %v", err)
					return
				}
			}
		}()
	}
	check := func() {
		finished := done.Load()
		for _, field := range []string{"f0", "f1"} {
			v, err := s.Get(ctx, bucket, field)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			if seen, _ := strconv.ParseInt(string(v), 10, 64); seen < finished {
				t.Errorf("after %d purges the bucket holds an entry whose fill started before purge %d", finished, seen+1)
			}
		}
	}
	for i := range purges {
		started.Add(1)
		if _, err := purgeFuncs[i%len(purgeFuncs)](); err != nil {
			t.Errorf("purge: %v", err)
		}
		done.Add(1)
		check()
		time.Sleep(time.Millisecond)
		check()
	}
	close(stop)
	wg.Wait()
	check()
	t.Logf("%d fenced writes stored, %d refused", stored.Load(), refused.Load())
}

// testFenceExpires runs with a fence TTL of ShortFenceTTL.
func testFenceExpires(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	mustSet(t, s, "b", "f", "v", opt)
	start := time.Now() // the tombstone is written after this
	if _, err := p.PurgeBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	gen := forFill(t, f, "b", "f", nil)
	wantNewer(t, "", gen)
	// The tombstone expires after the fence TTL: the generation is ""
	// again.
	deadline := start.Add(within)
	for forFill(t, f, "b", "f", nil) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the tombstone still lives %v after the purge, fence TTL %v", within, ShortFenceTTL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Not before, give or take the backend's millisecond clock.
	if d := time.Since(start); d < ShortFenceTTL-5*time.Millisecond {
		t.Fatalf("the tombstone expired %v after the purge started, fence TTL %v", d, ShortFenceTTL)
	}
	// A fill that read the purged generation is still refused (the
	// safe side); one that reads now stores.
	fill{"b", "f", gen}.wantRefused(t, s)
	startFill(t, f, "b", "f").wantStored(t, s, "new")
}

// testFenceKeptByRefill runs with a fence TTL of ShortFenceTTL: a bucket
// refilled after a purge lives as long as its entries need, and keeps its
// generation all that time. It waits for the tombstone of a control bucket,
// purged after the refill, to expire: by then the refilled bucket's own
// tombstone would have expired too.
func testFenceKeptByRefill(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	f, p := fencer(t, s)
	ctx := t.Context()
	mustSet(t, s, "b", "f", "v", opt)
	stale := startFill(t, f, "b", "g")
	if _, err := p.PurgeBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	fl := startFill(t, f, "b", "f")
	fl.wantStored(t, s, "new") // TTL: a minute
	if _, err := p.PurgeBucket(ctx, "control"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for forFill(t, f, "control", "f", nil) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the control tombstone still lives %v after the purge, fence TTL %v", within, ShortFenceTTL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gen := forFill(t, f, "b", "f", ptr("new")); gen != fl.gen {
		t.Fatalf("generation of the refilled bucket after the fence TTL = %q, want %q", gen, fl.gen)
	}
	stale.wantRefused(t, s)
}
