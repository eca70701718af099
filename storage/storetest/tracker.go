package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// trackInterval is the interval the suite asks a [storage.Tracker] for:
// short, so that waiting for a Through takes little time.
const trackInterval = 25 * time.Millisecond

// tracker returns the store as a Tracker, skipping the test when it is
// not one.
func tracker(t *testing.T, s Store) storage.Tracker {
	t.Helper()
	tr, ok := s.(storage.Tracker)
	if !ok {
		t.Skipf("%T does not implement storage.Tracker", s)
	}
	return tr
}

// trackLog records the reports of one Track call, and checks what every
// report must satisfy: fn is never called by two goroutines at once, nor
// after stop returned, and Through never goes back.
type trackLog struct {
	t       *testing.T
	stop    func()
	stopped atomic.Bool  // set once stop returned
	running atomic.Int32 // calls of fn in progress

	mu      sync.Mutex
	reports []storage.Changes
	through time.Time // the latest non-zero Through
}

// track starts tracking s for the rest of the test. A store whose backend
// cannot track changes skips the test.
func track(t *testing.T, s Store) *trackLog {
	t.Helper()
	tr := tracker(t, s)
	l := &trackLog{t: t}
	stop, err := tr.Track(t.Context(), trackInterval, l.record)
	switch {
	case errors.Is(err, storage.ErrNoTracking):
		t.Skipf("%T cannot track changes on this backend: %v", s, err)
	case err != nil:
		t.Fatalf("Track: %v", err)
	case stop == nil:
		t.Fatal("Track returned a nil stop func")
	}
	l.stop = stop
	t.Cleanup(l.stopNow)
	return l
}

// record is the fn given to Track.
func (l *trackLog) record(c storage.Changes) {
	if l.running.Add(1) != 1 {
		l.t.Errorf("fn called while another call of it runs")
	}
	defer l.running.Add(-1)
	if l.stopped.Load() {
		l.t.Errorf("fn called after stop returned, with %+v", c)
	}
	c.Buckets = slices.Clone(c.Buckets)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.Through.IsZero() {
		if c.Through.Before(l.through) {
			l.t.Errorf("report %d has Through %v, before the %v of an earlier one", len(l.reports), c.Through, l.through)
		}
		l.through = c.Through
	}
	l.reports = append(l.reports, c)
}

// stopNow calls stop and checks that it waited for fn.
func (l *trackLog) stopNow() {
	l.stop()
	l.stopped.Store(true)
	if l.running.Load() != 0 {
		l.t.Errorf("stop returned while fn was running")
	}
}

// mark returns the number of reports so far: the index of the next one.
func (l *trackLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reports)
}

// poll calls cond with the reports from index from on, holding the log's
// mutex, until it returns true, and fails the test with the message of
// failed after [within].
func (l *trackLog) poll(from int, cond func(reports []storage.Changes) bool, failed func() string) {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for {
		l.mu.Lock()
		ok := cond(l.reports[min(from, len(l.reports)):])
		l.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s after %v", failed(), within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unreported returns those of buckets that no report of reports lists,
// or none when one of them has All set.
func unreported(reports []storage.Changes, buckets []string) []string {
	var missing []string
	for _, b := range buckets {
		found := false
		for _, c := range reports {
			if c.All || slices.Contains(c.Buckets, b) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, b)
		}
	}
	return missing
}

// wantReported waits until the reports from index from on list each of
// buckets, or one of them has All set.
func (l *trackLog) wantReported(from int, what string, buckets ...string) {
	l.t.Helper()
	var missing []string
	l.poll(from, func(reports []storage.Changes) bool {
		missing = unreported(reports, buckets)
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("%s: buckets %q not reported", what, missing)
	})
}

// waitThrough waits for a report whose Through is after t0 and returns
// its index.
func (l *trackLog) waitThrough(t0 time.Time) int {
	l.t.Helper()
	i := -1
	l.poll(0, func(reports []storage.Changes) bool {
		i = slices.IndexFunc(reports, func(c storage.Changes) bool { return c.Through.After(t0) })
		return i >= 0
	}, func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		return fmt.Sprintf("no report with a Through after %v (the latest: %v)", t0, l.through)
	})
	return i
}

// sync returns once every change made before the call has been reported:
// a Through after the call's start proves it.
func (l *trackLog) sync() {
	l.t.Helper()
	l.waitThrough(time.Now())
}

// step makes a change after every earlier one was reported, and waits
// until the reports that follow list each of buckets (or All).
func (l *trackLog) step(what string, change func(), buckets ...string) {
	l.t.Helper()
	l.sync()
	from := l.mark()
	change()
	l.wantReported(from, what, buckets...)
}

// instances returns two instances sharing one backend, which stand for
// two processes, and a log tracking the first.
func instances(t *testing.T, newStore func(t *testing.T) Store) (s1, s2 Store, l *trackLog) {
	s1, s2 = newStore(t), newStore(t)
	return s1, s2, track(t, s1)
}

// testTrackFirstAll checks that Track returns after the first report was
// delivered, and that it has All set, for each Track call on a backend.
func testTrackFirstAll(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	for i, s := range []Store{s1, s2, s1} {
		l := track(t, s)
		l.mu.Lock()
		reports := slices.Clone(l.reports)
		l.mu.Unlock()
		if len(reports) == 0 {
			t.Fatalf("Track %d returned before the first report", i)
		}
		if !reports[0].All {
			t.Fatalf("Track %d: first report %+v, want All", i, reports[0])
		}
	}
}

// testTrackSet checks that every Set that stores is reported, made through
// either instance, to a tracker of each.
func testTrackSet(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	logs := []*trackLog{track(t, s1), track(t, s2)}
	for i, via := range []Store{s1, s2} {
		for j, l := range logs {
			b := fmt.Sprintf("track-set|%d-%d", i, j)
			l.step("Set of a new bucket", func() { mustSet(t, via, b, "f", "v", opt) }, b)
			l.step("Set of a new field", func() { mustSet(t, via, b, "g", "v", opt) }, b)
			l.step("Set overwriting a field", func() { mustSet(t, via, b, "f", "w", opt) }, b)
			tagged := storage.SetOptions{TTL: time.Minute, Tags: []string{"track-set-tag"}}
			l.step("Set with tags", func() { mustSet(t, via, b, "h", "v", tagged) }, b)
		}
	}
}

// testTrackDelete checks that Delete of a field, the last one included,
// is reported.
func testTrackDelete(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2, l := instances(t, newStore)
	ctx := t.Context()
	for i, via := range []Store{s1, s2} {
		b := fmt.Sprintf("track-delete|%d", i)
		mustSet(t, via, b, "f", "v", opt)
		mustSet(t, via, b, "g", "v", opt)
		l.step("Delete of a field", func() {
			if err := via.Delete(ctx, b, "f"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}, b)
		l.step("Delete of the last field", func() {
			if err := via.Delete(ctx, b, "g"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}, b)
	}
}

// testTrackExpiry checks that a bucket that expires is reported, at the
// latest once a read finds it gone: a store may notice expiry lazily, as
// Redis does. A machine too slow to read the bucket before it expires
// skips the test.
func testTrackExpiry(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	l := track(t, s)
	const ttl = 300 * time.Millisecond
	mustSet(t, s, "track-expiry|a", "f", "v", storage.SetOptions{TTL: ttl})
	l.sync()
	from := l.mark()
	// A copy read now, after every report of the Set, must be dropped by
	// a later report once the bucket expires.
	if !present(t, s, "track-expiry|a", "f") {
		t.Skipf("the machine is too slow to check expiry: the bucket expired before it was reported (TTL %v)", ttl)
	}
	eventuallyMissing(t, s, "track-expiry|a", "f")
	l.wantReported(from, "expiry", "track-expiry|a")
}

// testTrackPurgeBucket checks that PurgeBucket reports its bucket.
func testTrackPurgeBucket(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2, l := instances(t, newStore)
	purger(t, s1)
	for i, via := range []Store{s1, s2} {
		b := fmt.Sprintf("track-purge-bucket|%d", i)
		mustSet(t, via, b, "f", "v", opt)
		mustSet(t, via, b, "g", "v", opt)
		l.step("PurgeBucket", func() {
			n, err := purger(t, via).PurgeBucket(t.Context(), b)
			wantCount(t, "PurgeBucket", n, err, 1)
		}, b)
	}
}

// testTrackPurgePrefix checks that PurgePrefix reports every bucket it
// removed.
func testTrackPurgePrefix(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2, l := instances(t, newStore)
	purger(t, s1)
	for i, via := range []Store{s1, s2} {
		prefix := fmt.Sprintf("track-purge-prefix%d|", i)
		buckets := []string{prefix + "a", prefix + "b", prefix + "c:x"}
		for _, b := range buckets {
			mustSet(t, via, b, "f", "v", opt)
		}
		mustSet(t, via, fmt.Sprintf("track-purge-prefix%d-other", i), "f", "v", opt)
		l.step("PurgePrefix", func() {
			n, err := purger(t, via).PurgePrefix(t.Context(), prefix)
			wantCount(t, fmt.Sprintf("PurgePrefix(%q)", prefix), n, err, int64(len(buckets)))
		}, buckets...)
	}
}

// testTrackPurgeTag checks that PurgeTag reports every bucket it removed.
func testTrackPurgeTag(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2, l := instances(t, newStore)
	purger(t, s1)
	for i, via := range []Store{s1, s2} {
		tag := fmt.Sprintf("track-purge-tag%d", i)
		tagged := storage.SetOptions{TTL: time.Minute, Tags: []string{tag}}
		buckets := []string{tag + "|a", tag + "|b"}
		for _, b := range buckets {
			mustSet(t, via, b, "f", "v", tagged)
		}
		mustSet(t, via, tag+"|untagged", "f", "v", opt)
		l.step("PurgeTag", func() {
			n, err := purger(t, via).PurgeTag(t.Context(), tag)
			wantCount(t, fmt.Sprintf("PurgeTag(%q)", tag), n, err, int64(len(buckets)))
		}, buckets...)
	}
}

// testTrackPurgeAll checks that PurgeAll reports every bucket it removed
// (or reports All).
func testTrackPurgeAll(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2, l := instances(t, newStore)
	purger(t, s1)
	for i, via := range []Store{s1, s2} {
		var buckets []string
		for j := range 5 {
			b := fmt.Sprintf("track-purge-all%d|%d", i, j)
			mustSet(t, via, b, "f", "v", opt)
			buckets = append(buckets, b)
		}
		l.step("PurgeAll", func() {
			n, err := purger(t, via).PurgeAll(t.Context())
			wantCount(t, "PurgeAll", n, err, int64(len(buckets)))
		}, buckets...)
	}
}

// testTrackThrough checks the promise of Through: once a report carries a
// Through after t0, every change made before t0 has been reported, by
// that report or an earlier one. It also checks that Through keeps
// advancing while nothing changes.
func testTrackThrough(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2, l := instances(t, newStore)
	ctx := t.Context()
	l.sync()
	from := l.mark()
	var buckets []string
	for i, via := range []Store{s1, s2} {
		for j := range 3 {
			b := fmt.Sprintf("track-through|%d-%d", i, j)
			mustSet(t, via, b, "f", "v", opt)
			buckets = append(buckets, b)
		}
		deleted := fmt.Sprintf("track-through|%d-0", i)
		if err := via.Delete(ctx, deleted, "f"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if p, ok := via.(storage.Purger); ok {
			b := fmt.Sprintf("track-through|%d-1", i)
			if _, err := p.PurgeBucket(ctx, b); err != nil {
				t.Fatalf("PurgeBucket: %v", err)
			}
		}
	}
	t0 := time.Now()
	i := l.waitThrough(t0)
	l.mu.Lock()
	reports := slices.Clone(l.reports[from : i+1])
	l.mu.Unlock()
	if missing := unreported(reports, buckets); len(missing) > 0 {
		t.Fatalf("report %d has Through %v, after the changes, but buckets %q changed before it and were not reported by then", i, reports[len(reports)-1].Through, missing)
	}
	// With nothing changing, Through goes on advancing.
	for range 3 {
		l.sync()
	}
}

// testTrackStop checks that once stop returned fn is not called again,
// that stop may be called again, that it waits for a call of fn in
// progress, and that the other trackers of the backend go on.
func testTrackStop(t *testing.T, newStore func(t *testing.T) Store) {
	s1, s2 := newStore(t), newStore(t)
	stopped := track(t, s1)
	other := track(t, s1)
	second := track(t, s2)
	stopped.stopNow()
	stopped.stopNow()
	n := stopped.mark()
	other.step("Set after another tracker stopped", func() { mustSet(t, s1, "track-stop|a", "f", "v", opt) }, "track-stop|a")
	second.step("Set after another tracker stopped", func() { mustSet(t, s2, "track-stop|b", "f", "v", opt) }, "track-stop|b")
	other.sync()
	// The stopped tracker's fn fails the test if it is called; its log
	// must not have grown either.
	if got := stopped.mark(); got != n {
		t.Fatalf("%d reports after stop returned", got-n)
	}

	// stop waits for a call of fn in progress.
	var (
		blocking atomic.Bool
		running  atomic.Int32
		entered  = make(chan struct{}, 1)
		release  = make(chan struct{})
		released sync.Once
	)
	stop, err := tracker(t, s1).Track(t.Context(), trackInterval, func(storage.Changes) {
		running.Add(1)
		defer running.Add(-1)
		if blocking.Load() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
	})
	if err != nil {
		t.Fatalf("Track: %v", err)
	}
	unblock := func() { released.Do(func() { close(release) }) }
	t.Cleanup(func() { unblock(); stop() })
	blocking.Store(true)
	mustSet(t, s1, "track-stop|c", "f", "v", opt)
	select {
	case <-entered:
	case <-time.After(within):
		t.Fatalf("no report after %v", within)
	}
	done := make(chan struct{})
	go func() {
		stop()
		close(done)
	}()
	time.Sleep(trackInterval) // pacing only: stop is not expected to return
	select {
	case <-done:
		t.Fatal("stop returned while fn was running")
	default:
	}
	unblock()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("stop still blocks %v after fn returned", within)
	}
	if running.Load() != 0 {
		t.Fatal("stop returned while fn was running")
	}
}

// testTrackContext checks that Track does not block past its context:
// with one that has ended, it returns at once, and either tracks, with
// the first report delivered, or returns an error matching ctx's.
func testTrackContext(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	tr := tracker(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	type result struct {
		stop  func()
		err   error
		first bool
	}
	done := make(chan result, 1)
	go func() {
		var first atomic.Bool
		stop, err := tr.Track(ctx, trackInterval, func(c storage.Changes) {
			first.CompareAndSwap(false, c.All)
		})
		done <- result{stop, err, first.Load()}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(within):
		t.Fatalf("Track with an ended context still blocks after %v", within)
	}
	switch {
	case r.err == nil && r.stop == nil:
		t.Fatal("Track with an ended context returned a nil stop func and no error")
	case r.err == nil:
		defer r.stop()
		if !r.first {
			t.Fatal("Track with an ended context returned before a first report with All")
		}
	case errors.Is(r.err, storage.ErrNoTracking):
		t.Skipf("%T cannot track changes on this backend: %v", s, r.err)
	case !errors.Is(r.err, context.Canceled):
		t.Fatalf("Track with an ended context: %v, want nil or an error matching context.Canceled", r.err)
	case r.stop != nil:
		r.stop()
	}
	// A Track with a live context afterwards tracks.
	l := track(t, s)
	l.step("Set", func() { mustSet(t, s, "track-context|a", "f", "v", opt) }, "track-context|a")
}
