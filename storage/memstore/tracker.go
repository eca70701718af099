package memstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/readthrough/readthrough/storage"
)

var _ storage.Tracker = (*Store)(nil)

// Track implements [storage.Tracker.Track]. The store sees every change
// in the process, so it reports each bucket that a [Store.Set] stored
// into, a [Store.Delete] removed a field from, a purge removed or
// tombstoned, or that it found expired, and [Store.Flush] as All. Reports
// are exact: a Set the store refused, a Delete of a field that did not
// exist and a read of a live bucket report nothing. It never returns
// [storage.ErrNoTracking].
//
// Expiry is noticed lazily, as Redis notices it: a bucket is reported as
// expired once a call touches it after its lifetime ended (a read
// included) or a sweep of expired items drops it, not at the moment its
// lifetime ends. A cache bounds a copy by the lifetime of the entry it
// holds anyway, which the bucket's lifetime covers
// ([storage.SetOptions.TTL]).
//
// Changes queue for each tracker without blocking the store: while fn
// runs, the changes that follow are merged into the next report (each
// bucket listed once, in the order of its first change; All and the
// latest Through kept). Every interval, the tracker's goroutine takes its
// place in the order of the store's changes (under the store's mutex),
// and the next report carries that time as Through: every change made
// before it is in that report or an earlier one. So a report comes every
// interval, changes or not, and Through lags behind an fn that is slow.
// The first report, delivered before Track returns, has All set and
// Through the time of the registration.
//
// An interval that is not positive and a nil fn are errors, and a ctx
// that has ended, or that ends before the first report was delivered,
// makes Track return its error (fn, if it is running the first report,
// is not called again). stop waits for a call of fn in progress, so it
// must not be called from fn.
func (s *Store) Track(ctx context.Context, interval time.Duration, fn func(storage.Changes)) (stop func(), err error) {
	switch {
	case interval <= 0:
		return nil, fmt.Errorf("memstore: track interval %v is not positive", interval)
	case fn == nil:
		return nil, errors.New("memstore: track: nil fn")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: track: %w", err)
	}
	tr := &tracker{
		fn:       fn,
		interval: interval,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
		first:    make(chan struct{}),
		listed:   make(map[string]struct{}),
	}
	s.mu.Lock()
	s.trackers[tr] = struct{}{}
	tr.enqueueAll(time.Now())
	s.mu.Unlock()
	go s.deliver(tr)

	stop = func() {
		s.untrack(tr)
		<-tr.exited
	}
	select {
	case <-tr.first:
		return stop, nil
	case <-ctx.Done():
		select {
		case <-tr.first:
			return stop, nil
		default:
		}
		// Not waiting for the goroutine: it may be inside fn, which ctx
		// does not bound. It returns as soon as fn does.
		s.untrack(tr)
		return nil, fmt.Errorf("memstore: track: %w", ctx.Err())
	}
}

// tracker is one registration of [Store.Track]: the changes queued for
// it, merged, and the goroutine that delivers them to fn.
type tracker struct {
	fn       func(storage.Changes)
	interval time.Duration
	wake     chan struct{} // holds a token when changes are queued
	done     chan struct{} // closed by untrack
	exited   chan struct{} // closed when the goroutine has returned
	first    chan struct{} // closed once fn returned from the first report
	stopOnce sync.Once

	// mu guards the queued report. The store's mutex, when held, is
	// taken first.
	mu      sync.Mutex
	buckets []string            // in the order of their first change
	listed  map[string]struct{} // the set of buckets
	all     bool
	through time.Time
}

// untrack unregisters tr, so that no change is queued for it any more,
// and tells its goroutine to return without calling fn again. It does
// not wait for the goroutine.
func (s *Store) untrack(tr *tracker) {
	tr.stopOnce.Do(func() {
		s.mu.Lock()
		delete(s.trackers, tr)
		s.mu.Unlock()
		close(tr.done)
	})
}

// changed queues bucket for every tracker. The caller holds s.mu and
// has applied the change, so that the change is queued in the order the
// store made it, before any later Through.
func (s *Store) changed(bucket string) {
	for tr := range s.trackers {
		tr.enqueue(bucket)
	}
}

// flushed queues All for every tracker. The caller holds s.mu.
func (s *Store) flushed() {
	now := time.Now()
	for tr := range s.trackers {
		tr.enqueueAll(now)
	}
}

// enqueue adds bucket to the next report, unless it already lists it or
// has All set (which covers it), and wakes the goroutine.
func (tr *tracker) enqueue(bucket string) {
	tr.mu.Lock()
	if _, ok := tr.listed[bucket]; !ok && !tr.all {
		tr.listed[bucket] = struct{}{}
		tr.buckets = append(tr.buckets, bucket)
	}
	tr.mu.Unlock()
	tr.signal()
}

// enqueueAll sets All on the next report, which then lists no bucket,
// with now as its Through: All covers every change made before it. The
// caller holds the store's mutex.
func (tr *tracker) enqueueAll(now time.Time) {
	tr.mu.Lock()
	tr.all = true
	tr.buckets = nil
	clear(tr.listed)
	tr.mark(now)
	tr.mu.Unlock()
	tr.signal()
}

// heartbeat sets now as the next report's Through. It takes the store's
// mutex so that now falls after every change made before it, which the
// report, or an earlier one, then carries.
func (s *Store) heartbeat(tr *tracker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.mark(time.Now())
}

// mark raises the next report's Through to now. The caller holds tr.mu.
func (tr *tracker) mark(now time.Time) {
	if now.After(tr.through) {
		tr.through = now
	}
}

func (tr *tracker) signal() {
	select {
	case tr.wake <- struct{}{}:
	default:
	}
}

// take returns the queued report and empties the queue, or false when
// nothing is queued.
func (tr *tracker) take() (storage.Changes, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.all && len(tr.buckets) == 0 && tr.through.IsZero() {
		return storage.Changes{}, false
	}
	c := storage.Changes{Buckets: tr.buckets, All: tr.all, Through: tr.through}
	tr.buckets, tr.all, tr.through = nil, false, time.Time{}
	clear(tr.listed)
	return c, true
}

// deliver is tr's goroutine: it calls fn with each report, one at a time,
// and every interval marks a Through, until tr is untracked.
func (s *Store) deliver(tr *tracker) {
	defer close(tr.exited)
	tick := time.NewTicker(tr.interval)
	defer tick.Stop()
	first := true
	for {
		select {
		case <-tr.done:
			return
		case <-tr.wake:
		case <-tick.C:
			s.heartbeat(tr)
		}
		c, ok := tr.take()
		if !ok {
			continue
		}
		select {
		case <-tr.done:
			return
		default:
		}
		tr.fn(c)
		if first {
			first = false
			close(tr.first)
		}
	}
}
