package httpcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// The local tier: copies of the entries of Local routes in process memory,
// so that a hit sends no store command (see WithLocalTier).
//
// Coherence rests on two numbers, not on deleting copies in time:
//
//   - Every change the store reports (storage.Tracker) takes a number from
//     seq and marks it on the bucket's stripe, or on all for a report of
//     every bucket; so do this process's own writes and purges, at once
//     (a route purge on the route's own mark, route.localPurged). A copy remembers seq as it was before the store read it
//     came from, and is valid only while neither its stripe nor all has a
//     later mark. A read in flight when its bucket changes therefore makes
//     a copy that is never served, whenever it lands; and no copy has to
//     be found to be invalidated, so a report costs two atomic stores per
//     bucket. Stripes are shared by buckets (a hash picks one): a change to
//     another bucket of the stripe only costs a copy one more store read.
//   - through is the store's latest proof of delivery: every change made
//     before it was reported. A copy is served only while through is
//     within the bound of now, so that when reports stop (a dropped
//     connection, a partition, a Redis restart) no copy is served past the
//     bound. Without a tracker (WithUntrackedLocalTier), a copy is served
//     only within the bound of its own store read.
type localTier struct {
	cache   *otter.Cache[localKey, *localCopy]
	bound   time.Duration
	tracked bool
	maxSize int64

	// epoch is the tier's time origin: the times below are nanoseconds
	// since it, measured on the monotonic clock, so that a wall clock
	// stepped back cannot make an old proof look recent.
	epoch   time.Time
	seed    maphash.Seed
	seq     atomic.Uint64
	all     atomic.Uint64
	stripes [localStripes]atomic.Uint64
	// through is the store's latest proof of delivery, in nanoseconds
	// since epoch; 0 until the first.
	through atomic.Uint64

	evictions     atomic.Int64
	invalidations atomic.Int64 // buckets reported changed
	resets        atomic.Int64 // reports of every bucket

	// Tracking, started by start and stopped by close.
	mu      sync.Mutex
	stop    func()
	closed  bool
	retry   chan struct{} // closed by close to end a retry loop
	retried sync.WaitGroup
}

// localStripes is the number of stripes of the tier's change marks: 512
// KiB, so that at a thousand changed buckets a second a copy is marked
// stale by another bucket's change about once a minute.
const localStripes = 1 << 16

// localKey names one copy: a field of a bucket.
type localKey struct{ bucket, field string }

// localCopy is one entry held in process memory. The entry is shared by
// every request that serves it, which never mutates it (serveEntry).
type localCopy struct {
	e    *storage.Entry
	seq  uint64 // the tier's seq before the store read the entry came from
	read int64  // the time of that read, in nanoseconds since the tier's epoch
}

// localSnapshot is what a store read remembers for the copy it may make.
type localSnapshot struct {
	seq  uint64
	read int64
}

// Defaults of the local tier.
const (
	// DefaultLocalBytes is the local tier's memory bound when
	// WithLocalTier is given 0.
	DefaultLocalBytes = 64 << 20
	// DefaultLocalBound is how long a local copy may be served without
	// hearing from the store (see WithLocalBound).
	DefaultLocalBound = time.Second
	// MinLocalBound is the shortest WithLocalBound.
	MinLocalBound = 10 * time.Millisecond
	// localStartTimeout bounds the start of tracking in New.
	localStartTimeout = 2 * time.Second
)

// The heap a copy takes besides its body and header text, as measured by
// the integration benchmark BenchmarkLocalMemory: localOverhead for the
// entry, the copy, the key, otter's node and the header map's own
// structure; per header name its map slot and value slice; per value its
// string header and allocation rounding.
const (
	localOverhead       = 480
	localHeaderOverhead = 48
	localValueOverhead  = 24
)

func newLocalTier(maxBytes int64, bound time.Duration, tracked bool) *localTier {
	t := &localTier{bound: bound, tracked: tracked, maxSize: maxBytes, epoch: time.Now(), seed: maphash.MakeSeed(), retry: make(chan struct{})}
	t.cache = otter.Must(&otter.Options[localKey, *localCopy]{
		MaximumWeight: uint64(maxBytes),
		Weigher: func(k localKey, c *localCopy) uint32 {
			return uint32(min(uint64(copyWeight(k, c.e)), math.MaxUint32))
		},
		OnDeletion: func(ev otter.DeletionEvent[localKey, *localCopy]) {
			if ev.Cause == otter.CauseOverflow {
				t.evictions.Add(1)
			}
		},
	})
	return t
}

// copyWeight approximates the bytes of heap a copy of e under k holds:
// the body (a copy of its own, see keep), each header's map slot, name,
// value slice and values, and the fixed overhead.
func copyWeight(k localKey, e *storage.Entry) int {
	n := localOverhead + len(k.bucket) + len(k.field) + cap(e.Body) + len(e.Coding)
	for name, values := range e.Header {
		n += len(name) + localHeaderOverhead
		for _, v := range values {
			n += len(v) + localValueOverhead
		}
	}
	return n
}

// since is now in nanoseconds since the tier's epoch.
func (t *localTier) since(now time.Time) int64 { return int64(now.Sub(t.epoch)) }

// snapshot is taken before a store read whose entry may be kept.
func (t *localTier) snapshot(now time.Time) localSnapshot {
	return localSnapshot{seq: t.seq.Load(), read: t.since(now)}
}

// get returns the copy of k that may be served at now, or nil. route is
// the seq of the last purge of k's route in this process.
func (t *localTier) get(k keying.Key, now time.Time, route uint64) *storage.Entry {
	key := localKey{k.Bucket, k.Field}
	c, ok := t.cache.GetIfPresent(key)
	if !ok {
		return nil
	}
	if c.seq < t.all.Load() || c.seq < t.stripe(k.Bucket).Load() || c.seq < route {
		t.drop(key, c) // the bucket changed since the read
		return nil
	}
	n := t.since(now)
	if t.tracked {
		if th := t.through.Load(); th == 0 || n-int64(th) >= int64(t.bound) {
			return nil // not heard from the store lately: kept, not served
		}
	} else if n-c.read >= int64(t.bound) {
		t.drop(key, c)
		return nil
	}
	return c.e
}

// put keeps e, read from the store after snap was taken, as the copy of
// k. The tier owns e from then on. Its body is copied out of the store's
// value, which also holds the encoded headers, so that only what the copy
// serves stays in memory.
func (t *localTier) put(k keying.Key, e *storage.Entry, snap localSnapshot) {
	e.Body = bytes.Clone(e.Body)
	t.cache.Set(localKey{k.Bucket, k.Field}, &localCopy{e: e, seq: snap.seq, read: snap.read})
}

// mark takes the next sequence number and raises v to it: every copy
// read before is no longer valid against v.
func (t *localTier) mark(v *atomic.Uint64) {
	storeMax(v, t.seq.Add(1))
}

// drop removes the copy c of key, unless another has replaced it.
func (t *localTier) drop(key localKey, c *localCopy) {
	t.cache.ComputeIfPresent(key, func(old *localCopy) (*localCopy, otter.ComputeOp) {
		if old != c {
			return old, otter.CancelOp
		}
		return nil, otter.InvalidateOp
	})
}

// dropKey removes the copy of k, whatever it is (a copy whose body did not
// decode).
func (t *localTier) dropKey(k keying.Key) {
	t.cache.Invalidate(localKey{k.Bucket, k.Field})
}

func (t *localTier) stripe(bucket string) *atomic.Uint64 {
	return &t.stripes[maphash.String(t.seed, bucket)%localStripes]
}

// changed marks buckets, or every bucket, as changed: no copy read before
// is served again.
func (t *localTier) changed(buckets []string, all bool) {
	if all {
		storeMax(&t.all, t.seq.Add(1))
		// The marks already keep every copy from being served; this
		// frees their memory.
		t.cache.InvalidateAll()
		return
	}
	for _, b := range buckets {
		storeMax(t.stripe(b), t.seq.Add(1))
	}
}

// storeMax raises v to n unless it is already higher.
func storeMax(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if old >= n || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// report takes one report of the store's tracker.
func (t *localTier) report(ch storage.Changes) {
	if ch.All {
		t.resets.Add(1)
	} else {
		t.invalidations.Add(int64(len(ch.Buckets)))
	}
	t.changed(ch.Buckets, ch.All)
	if !ch.Through.IsZero() {
		storeMax(&t.through, uint64(max(t.since(ch.Through), 1)))
	}
}

// start begins tracking the store's changes. A store that cannot track is
// an error; one that could not be reached in time is tracked from the
// background once it can be, and until then no copy is served.
func (t *localTier) start(tr storage.Tracker, log *slog.Logger) error {
	interval := t.bound / 4
	ctx, cancel := context.WithTimeout(context.Background(), localStartTimeout)
	stop, err := tr.Track(ctx, interval, t.report)
	cancel()
	switch {
	case err == nil:
		t.mu.Lock()
		t.stop = stop
		t.mu.Unlock()
		return nil
	case errors.Is(err, storage.ErrNoTracking):
		return err
	}
	log.Warn("readthrough: the local tier could not start tracking the store's changes; it serves no copy until it can", "err", err)
	t.retried.Add(1)
	go func() {
		defer t.retried.Done()
		wait := 100 * time.Millisecond
		for {
			select {
			case <-t.retry:
				return
			case <-time.After(wait):
			}
			ctx, cancel := context.WithTimeout(context.Background(), localStartTimeout)
			stop, err := tr.Track(ctx, interval, t.report)
			cancel()
			if err == nil {
				t.mu.Lock()
				defer t.mu.Unlock()
				if t.closed {
					stop()
					return
				}
				t.stop = stop
				log.Info("readthrough: the local tier is tracking the store's changes")
				return
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
	return nil
}

// close stops tracking; copies are no longer served past the bound.
func (t *localTier) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.retry)
	stop := t.stop
	t.mu.Unlock()
	t.retried.Wait()
	if stop != nil {
		stop()
	}
}

// LocalStats describes the local tier of a cache (see WithLocalTier).
type LocalStats struct {
	// Enabled says the cache has a local tier.
	Enabled bool `json:"enabled"`
	// Tracked says the store reports its changes to the tier; false when
	// copies are bounded in time only (WithUntrackedLocalTier).
	Tracked bool `json:"tracked"`
	// Entries and Bytes are the copies held and the heap they take, as
	// the tier estimates it; MaxBytes is its bound.
	Entries  int64 `json:"entries"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	// HitRatio is the share of the hits of Local routes (fresh and
	// stale) that the tier served, since start; 0 before the first.
	HitRatio float64 `json:"hit_ratio"`
	// Evictions counts copies dropped to stay within MaxBytes.
	Evictions int64 `json:"evictions"`
	// Invalidations counts buckets the store reported changed, and
	// Resets reports of every bucket (a flush, a reconnection).
	Invalidations int64 `json:"invalidations"`
	Resets        int64 `json:"resets"`
	// SilentNs is how long ago the store last proved it had reported
	// every change, in nanoseconds (-1 before the first proof); no copy
	// is served while it is over BoundNs. Untracked tiers report 0.
	SilentNs int64 `json:"silent_ns"`
	// BoundNs is the tier's bound (WithLocalBound), in nanoseconds.
	BoundNs int64 `json:"bound_ns"`
}

// LocalStats returns the state of the cache's local tier; a cache without
// one returns a LocalStats with Enabled false. Local hits are counted per
// route, in [Stats].LocalHits.
func (c *Cache) LocalStats() LocalStats {
	t := c.local
	if t == nil {
		return LocalStats{}
	}
	t.cache.CleanUp() // applies the writes otter buffers, for exact sizes
	s := LocalStats{
		Enabled:       true,
		Tracked:       t.tracked,
		Entries:       int64(t.cache.EstimatedSize()),
		Bytes:         int64(t.cache.WeightedSize()),
		MaxBytes:      t.maxSize,
		Evictions:     t.evictions.Load(),
		Invalidations: t.invalidations.Load(),
		Resets:        t.resets.Load(),
		BoundNs:       int64(t.bound),
	}
	var local, hits int64
	for _, rt := range c.routeList() {
		if rt.local != nil {
			local += rt.stats.n[cLocalHits].Load()
			hits += rt.stats.n[cHits].Load() + rt.stats.n[cStaleServed].Load()
		}
	}
	if hits > 0 {
		s.HitRatio = float64(local) / float64(hits)
	}
	if t.tracked {
		s.SilentNs = -1
		if th := t.through.Load(); th != 0 {
			s.SilentNs = max(t.since(time.Now())-int64(th), 0)
		}
	}
	return s
}

// setupLocal creates the cache's local tier from its options.
func (c *Cache) setupLocal() error {
	if !c.localOn {
		if c.localUntracked || c.localBound != 0 {
			return errors.New("httpcache: WithLocalBound or WithUntrackedLocalTier without WithLocalTier")
		}
		return nil
	}
	bound := orDefault(c.localBound, DefaultLocalBound)
	if bound < MinLocalBound {
		return fmt.Errorf("httpcache: WithLocalBound(%v) is below %v: the store is asked for a proof of delivery every quarter of the bound", bound, MinLocalBound)
	}
	size := orDefault(c.localBytes, DefaultLocalBytes)
	untracked := func(why string) error {
		if !c.localUntracked {
			return fmt.Errorf("httpcache: WithLocalTier: %s, so local copies could not be kept coherent across instances; pass WithUntrackedLocalTier to accept copies served up to %v (WithLocalBound) after they were read", why, bound)
		}
		c.log.Info("readthrough: the local tier serves each copy up to the bound after it was read: "+why, "bound", bound)
		c.local = newLocalTier(size, bound, false)
		return nil
	}
	tr, ok := c.store.(storage.Tracker)
	if !ok {
		return untracked(fmt.Sprintf("the store (%T) cannot report its changes (it is no storage.Tracker)", c.store))
	}
	t := newLocalTier(size, bound, true)
	if err := t.start(tr, c.log); err != nil {
		t.close()
		return untracked(err.Error())
	}
	c.local = t
	return nil
}

// localChanged marks buckets, or every bucket, changed in the local tier
// after this process purged them, so that its own next requests see the
// purge at once, without waiting for the store's report (which a
// tracking store sends all the same; without one it is all the tier
// learns of them).
func (c *Cache) localChanged(buckets []string, all bool) {
	if c.local != nil {
		c.local.changed(buckets, all)
	}
}

// localRoutePurged marks every bucket of the route with bucket prefix
// prefix changed in the local tier, for the same reason: the copies of
// the route's buckets, and only those, stop being served.
func (c *Cache) localRoutePurged(prefix string) {
	if c.local == nil {
		return
	}
	for _, rt := range c.routeList() {
		if rt.local != nil && rt.key.BucketPrefix() == prefix {
			c.local.mark(&rt.localPurged)
		}
	}
}
