package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// recorder collects the reports of a tracker. When blocked, fn waits in
// each call until release.
type recorder struct {
	mu      sync.Mutex
	got     []storage.Changes
	block   bool
	release chan struct{}
	calls   atomic.Int32
}

func newRecorder() *recorder { return &recorder{release: make(chan struct{})} }

func (r *recorder) fn(c storage.Changes) {
	r.calls.Add(1)
	r.mu.Lock()
	r.got = append(r.got, c)
	block, release := r.block, r.release
	r.mu.Unlock()
	if block {
		<-release
	}
}

// setBlock makes the calls that follow wait (or not) until unblock.
func (r *recorder) setBlock(block bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.block = block
}

// unblock releases the calls waiting, and stops blocking.
func (r *recorder) unblock() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.block = false
	close(r.release)
	r.release = make(chan struct{})
}

// take returns the reports so far and forgets them.
func (r *recorder) take() []storage.Changes {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// union returns the buckets the reports list, sorted, and whether one of
// them has All set.
func union(reports []storage.Changes) (buckets []string, all bool) {
	for _, c := range reports {
		buckets = append(buckets, c.Buckets...)
		all = all || c.All
	}
	slices.Sort(buckets)
	return slices.Compact(buckets), all
}

func mustTrack(t *testing.T, s *memstore.Store, interval time.Duration, fn func(storage.Changes)) func() {
	t.Helper()
	stop, err := s.Track(t.Context(), interval, fn)
	if err != nil {
		t.Fatalf("Track: %v", err)
	}
	t.Cleanup(stop)
	return stop
}

// TestTrackReports checks which changes are reported, and that they are
// reported exactly: the store sees each of them.
func TestTrackReports(t *testing.T) {
	hour := storage.SetOptions{TTL: time.Hour}
	tagged := storage.SetOptions{TTL: time.Hour, Tags: []string{"t"}}
	// setup leaves a (fields f and g) and b (f) tagged t, p|1 and p|2,
	// short (f, for a minute), and a lock of the missing bucket p|locked.
	setup := func(t *testing.T, s *memstore.Store) {
		ctx := t.Context()
		for _, w := range []struct {
			bucket, field string
			opt           storage.SetOptions
		}{
			{"a", "f", tagged}, {"a", "g", tagged}, {"b", "f", tagged},
			{"p|1", "f", hour}, {"p|2", "f", hour},
			{"short", "f", storage.SetOptions{TTL: time.Minute}},
		} {
			if err := s.Set(ctx, w.bucket, w.field, []byte("v"), w.opt); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.TryLock(ctx, "p|locked", "f", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		give    string
		op      func(ctx context.Context, s *memstore.Store) error
		want    []string
		wantAll bool
	}{
		{
			give: "Set of a new bucket",
			op: func(ctx context.Context, s *memstore.Store) error {
				return s.Set(ctx, "n", "f", nil, hour)
			},
			want: []string{"n"},
		},
		{
			give: "Set overwriting a field",
			op: func(ctx context.Context, s *memstore.Store) error {
				return s.Set(ctx, "a", "f", []byte("w"), hour)
			},
			want: []string{"a"},
		},
		{
			give: "Set refused by MaxFields",
			op: func(ctx context.Context, s *memstore.Store) error {
				err := s.Set(ctx, "a", "h", nil, storage.SetOptions{TTL: time.Hour, MaxFields: 2})
				if !errors.Is(err, storage.ErrBucketFull) {
					return fmt.Errorf("Set into a full bucket: %v", err)
				}
				return nil
			},
		},
		{
			give: "Set refused by the fence",
			op: func(ctx context.Context, s *memstore.Store) error {
				err := s.Set(ctx, "a", "h", nil, storage.SetOptions{TTL: time.Hour, Fenced: true, Generation: "7"})
				if !errors.Is(err, storage.ErrPurged) {
					return fmt.Errorf("fenced Set: %v", err)
				}
				return nil
			},
		},
		{
			give: "Delete",
			op:   func(ctx context.Context, s *memstore.Store) error { return s.Delete(ctx, "a", "f") },
			want: []string{"a"},
		},
		{
			give: "Delete of the last field",
			op:   func(ctx context.Context, s *memstore.Store) error { return s.Delete(ctx, "b", "f") },
			want: []string{"b"},
		},
		{
			give: "Delete of a missing field",
			op:   func(ctx context.Context, s *memstore.Store) error { return s.Delete(ctx, "a", "x") },
		},
		{
			give: "Delete in a missing bucket",
			op:   func(ctx context.Context, s *memstore.Store) error { return s.Delete(ctx, "n", "f") },
		},
		{
			give: "reads",
			op: func(ctx context.Context, s *memstore.Store) error {
				if _, err := s.Get(ctx, "a", "f"); err != nil {
					return err
				}
				if _, _, err := s.GetForFill(ctx, "b", "f"); err != nil {
					return err
				}
				_, err := s.SampleFields(ctx, "a", 5)
				return err
			},
		},
		{
			give: "PurgeBucket",
			op: func(ctx context.Context, s *memstore.Store) error {
				_, err := s.PurgeBucket(ctx, "a")
				return err
			},
			want: []string{"a"},
		},
		{
			give: "PurgeBucket of a missing bucket (tombstoned)",
			op: func(ctx context.Context, s *memstore.Store) error {
				_, err := s.PurgeBucket(ctx, "n")
				return err
			},
			want: []string{"n"},
		},
		{
			give: "PurgePrefix",
			op: func(ctx context.Context, s *memstore.Store) error {
				_, err := s.PurgePrefix(ctx, "p|")
				return err
			},
			want: []string{"p|1", "p|2", "p|locked"},
		},
		{
			give: "PurgeTag",
			op: func(ctx context.Context, s *memstore.Store) error {
				_, err := s.PurgeTag(ctx, "t")
				return err
			},
			want: []string{"a", "b"},
		},
		{
			give: "PurgeAll",
			op: func(ctx context.Context, s *memstore.Store) error {
				_, err := s.PurgeAll(ctx)
				return err
			},
			want: []string{"a", "b", "p|1", "p|2", "p|locked", "short"},
		},
		{
			give: "Flush",
			op: func(_ context.Context, s *memstore.Store) error {
				s.Flush()
				return nil
			},
			wantAll: true,
		},
		{
			give: "expiry, noticed by a read",
			op: func(ctx context.Context, s *memstore.Store) error {
				time.Sleep(2 * time.Minute)
				if _, err := s.Get(ctx, "short", "f"); !errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("Get of an expired bucket: %v", err)
				}
				return nil
			},
			want: []string{"short"},
		},
		{
			give: "expiry, noticed by a sweep",
			op: func(ctx context.Context, s *memstore.Store) error {
				time.Sleep(2 * time.Minute)
				// Writes that touch no bucket, enough to sweep.
				for i := range 64 {
					if _, err := s.TryLock(ctx, "other", fmt.Sprint(i), time.Hour); err != nil {
						return err
					}
				}
				return nil
			},
			want: []string{"short"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := mustNew(t)
				setup(t, s)
				r := newRecorder()
				mustTrack(t, s, time.Hour, r.fn)
				synctest.Wait()
				r.take()
				if err := tt.op(t.Context(), s); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				got, all := union(r.take())
				if !slices.Equal(got, tt.want) || all != tt.wantAll {
					t.Errorf("reported %q, All %v; want %q, All %v", got, all, tt.want, tt.wantAll)
				}
			})
		})
	}
}

// TestTrackOrder checks the sequence of reports on the synctest clock:
// the first one, changes as they come, and a Through every interval.
func TestTrackOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := mustNew(t)
		start := time.Now()
		r := newRecorder()
		mustTrack(t, s, 10*time.Second, r.fn)
		if got := r.take(); len(got) != 1 || !got[0].All || !got[0].Through.Equal(start) || len(got[0].Buckets) != 0 {
			t.Fatalf("reports when Track returned: %+v, want one with All and Through %v", got, start)
		}
		time.Sleep(3 * time.Second)
		if err := s.Set(ctx, "a", "f", nil, storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := s.Set(ctx, "b", "f", nil, storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(7 * time.Second)
		synctest.Wait()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		want := []storage.Changes{
			{Buckets: []string{"a"}},
			{Buckets: []string{"b"}},
			{Through: start.Add(10 * time.Second)},
			{Through: start.Add(20 * time.Second)},
		}
		got := r.take()
		if len(got) != len(want) {
			t.Fatalf("reports %+v, want %+v", got, want)
		}
		for i := range want {
			if !slices.Equal(got[i].Buckets, want[i].Buckets) || got[i].All || !got[i].Through.Equal(want[i].Through) {
				t.Errorf("report %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}

// TestTrackCoalesce checks that while fn runs, the store's writers go on,
// and the changes they make are merged into the next report: each bucket
// once, in the order of its first change, and with All (which lists no
// bucket) once the store was flushed.
func TestTrackCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := mustNew(t)
		r := newRecorder()
		mustTrack(t, s, 10*time.Second, r.fn)
		r.take()
		set := func(buckets ...string) {
			t.Helper()
			for _, b := range buckets {
				if err := s.Set(ctx, b, "f", nil, storage.SetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}

		r.setBlock(true)
		set("a")
		synctest.Wait() // fn waits in the report of a
		set("b", "a", "c")
		for i := range 1000 {
			set(fmt.Sprintf("many|%d", i))
		}
		if _, err := s.PurgePrefix(ctx, "many|"); err != nil {
			t.Fatal(err)
		}
		r.unblock()
		synctest.Wait()
		got := r.take()
		if len(got) != 2 {
			t.Fatalf("%d reports, want 2", len(got))
		}
		want := []string{"b", "a", "c"}
		for i := range 1000 {
			want = append(want, fmt.Sprintf("many|%d", i))
		}
		if !slices.Equal(got[0].Buckets, []string{"a"}) {
			t.Errorf("first report lists %q, want [a]", got[0].Buckets)
		}
		if !slices.Equal(got[1].Buckets, want) || got[1].All {
			t.Errorf("merged report lists %d buckets (All %v), want %d in the order of their first change", len(got[1].Buckets), got[1].All, len(want))
		}

		r.setBlock(true)
		set("x")
		synctest.Wait()
		set("y")
		flushed := time.Now()
		s.Flush()
		set("z")
		r.unblock()
		synctest.Wait()
		got = r.take()
		if len(got) != 2 || !got[1].All || len(got[1].Buckets) != 0 || !got[1].Through.Equal(flushed) {
			t.Fatalf("reports around a Flush: %+v; want [x], then All with Through %v", got, flushed)
		}
	})
}

// TestTrackStop checks that stop is idempotent, waits for a call of fn in
// progress, and that fn is not called after it.
func TestTrackStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		s := mustNew(t)
		r := newRecorder()
		stop := mustTrack(t, s, time.Second, r.fn)
		kept := newRecorder()
		mustTrack(t, s, time.Second, kept.fn)

		r.setBlock(true)
		if err := s.Set(ctx, "a", "f", nil, storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // fn waits in the report of a
		var stopped atomic.Bool
		go func() {
			stop()
			stopped.Store(true)
		}()
		synctest.Wait()
		if stopped.Load() {
			t.Fatal("stop returned while fn was running")
		}
		r.unblock()
		synctest.Wait()
		if !stopped.Load() {
			t.Fatal("stop did not return once fn did")
		}
		stop()
		calls := r.calls.Load()
		if err := s.Set(ctx, "b", "f", nil, storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := r.calls.Load(); got != calls {
			t.Errorf("fn called %d times after stop returned", got-calls)
		}
		if got, _ := union(kept.take()); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("the other tracker reported %q, want [a b]", got)
		}
	})
}

// TestTrackContext checks that Track returns ctx's error when ctx has
// ended, or ends before the first report was delivered, and that fn is
// then not called again.
func TestTrackContext(t *testing.T) {
	t.Run("ended", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := mustNew(t)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			r := newRecorder()
			stop, err := s.Track(ctx, time.Second, r.fn)
			if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "memstore: ") {
				t.Fatalf("Track with an ended context: %v, want a memstore error matching context.Canceled", err)
			}
			if stop != nil {
				t.Error("Track returned a stop func with its error")
			}
			if err := s.Set(t.Context(), "a", "f", nil, storage.SetOptions{}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if n := r.calls.Load(); n != 0 {
				t.Errorf("fn called %d times", n)
			}
		})
	})
	t.Run("ends during the first report", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := mustNew(t)
			ctx, cancel := context.WithCancel(t.Context())
			r := newRecorder()
			r.setBlock(true)
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, err = s.Track(ctx, time.Second, r.fn)
			}()
			synctest.Wait() // fn waits in the first report
			cancel()
			<-done
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Track: %v, want an error matching context.Canceled", err)
			}
			r.unblock()
			if err := s.Set(t.Context(), "a", "f", nil, storage.SetOptions{}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if n := r.calls.Load(); n != 1 {
				t.Errorf("fn called %d times, want the first report only", n)
			}
		})
	})
}

func TestTrackInvalid(t *testing.T) {
	s := mustNew(t)
	fn := func(storage.Changes) {}
	tests := []struct {
		give     string
		interval time.Duration
		fn       func(storage.Changes)
	}{
		{give: "zero interval", interval: 0, fn: fn},
		{give: "negative interval", interval: -time.Second, fn: fn},
		{give: "nil fn", interval: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			stop, err := s.Track(t.Context(), tt.interval, tt.fn)
			if err == nil || !strings.HasPrefix(err.Error(), "memstore: ") {
				t.Errorf("Track = %v, want a memstore error", err)
			}
			if stop != nil {
				stop()
				t.Error("Track returned a stop func with its error")
			}
		})
	}
}

// TestTrackConcurrent makes changes from many goroutines, in real time
// and under the race detector, and checks that once Through passed the
// end of the changes, every one of them has been reported.
func TestTrackConcurrent(t *testing.T) {
	s := mustNew(t)
	var (
		mu      sync.Mutex
		listed  = map[string]bool{}
		through time.Time
	)
	mustTrack(t, s, 2*time.Millisecond, func(c storage.Changes) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range c.Buckets {
			listed[b] = true
		}
		if c.Through.IsZero() {
			return
		}
		if c.Through.Before(through) {
			t.Errorf("Through went back from %v to %v", through, c.Through)
		}
		through = c.Through
	})
	const writers, writes = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range writes {
				b := fmt.Sprintf("w%d|%d", w, i)
				if err := s.Set(ctx, b, "f", nil, storage.SetOptions{TTL: time.Hour}); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if _, err := s.PurgeBucket(ctx, b); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	t0 := time.Now()
	deadline := t0.Add(5 * time.Second)
	for {
		mu.Lock()
		done := through.After(t0)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Through did not pass the end of the changes")
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for w := range writers {
		for i := range writes {
			if b := fmt.Sprintf("w%d|%d", w, i); !listed[b] {
				t.Fatalf("bucket %q changed before Through and was not reported", b)
			}
		}
	}
}

// A cache that keeps copies of entries in its own memory tracks the
// store, and drops its copies of the buckets each report lists (of every
// bucket when All is set).
func ExampleStore_Track() {
	ctx := context.Background()
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	reports := make(chan storage.Changes, 8)
	stop, err := store.Track(ctx, time.Minute, func(c storage.Changes) { reports <- c })
	if err != nil {
		panic(err)
	}
	defer stop()
	fmt.Println("first report, All:", (<-reports).All)

	if err := store.Set(ctx, "users|15", "v1", []byte("..."), storage.SetOptions{TTL: time.Minute}); err != nil {
		panic(err)
	}
	fmt.Println("changed:", (<-reports).Buckets)
	if _, err := store.PurgePrefix(ctx, "users|"); err != nil {
		panic(err)
	}
	fmt.Println("purged:", (<-reports).Buckets)
	// Output:
	// first report, All: true
	// changed: [users|15]
	// purged: [users|15]
}
