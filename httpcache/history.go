package httpcache

import (
	"sync"
	"time"
)

// The recent window: what the routes did over the last few minutes, for
// the admin API's stats (and so for the admin page and the command-line
// tool, which read it there and therefore agree). A ticker samples the
// routes' counters once per slot into a small ring; a read subtracts the
// oldest sample still inside the window from the counters as they are
// now. The hit path pays nothing for it: it only adds to the atomic
// counters it always had.

const (
	// recentWindow is how far back the recent window reaches.
	recentWindow = 5 * time.Minute
	// recentSlot is how often the counters are sampled: the window moves
	// by this step.
	recentSlot = 10 * time.Second
)

// Recent is what a route, or every route, did over the recent window: the
// "recent" object of the admin API's GET .../stats.
type Recent struct {
	Hits        int64 `json:"hits"`
	Misses      int64 `json:"misses"`
	StaleServed int64 `json:"stale_served"`
	Collapsed   int64 `json:"collapsed"`
	Bypassed    int64 `json:"bypassed"`
	// LocalHits are the hits and stale entries the local tier served,
	// counted in Hits or StaleServed too; 0 without a local tier.
	LocalHits int64 `json:"local_hits"`
	// Revalidations are the origin calls made with the stored entry's
	// validators, NotModified those the origin answered with a 304 (the
	// stored body kept, not sent again).
	Revalidations int64 `json:"revalidations"`
	NotModified   int64 `json:"not_modified"`
	// OriginTimeSavedNs is Hits times the route's mean origin call since
	// the cache started (a window without origin calls has no mean of its
	// own); in the total, the sum of the routes' values.
	OriginTimeSavedNs int64 `json:"origin_time_saved_ns"`
	// HitRatio is (Hits+StaleServed) / (Hits+StaleServed+Misses), 0 when
	// that is 0/0: the share of the requests the cache answered from an
	// entry without calling the origin for them. Collapsed requests are
	// misses already (a miss answered by another request's fill), so they
	// are not added to the denominator again; a stale entry served on the
	// miss path (on an origin error, or past a fill wait) is in Misses
	// too, and so weighs twice there: such answers are rare. Bypasses are
	// not in it: those requests were never the cache's to answer.
	HitRatio float64 `json:"hit_ratio"`
}

// RecentStats are the deltas of the counters over the last WindowSeconds:
// in total, and per route pattern.
type RecentStats struct {
	// WindowSeconds is the time the deltas cover: 5 minutes (within the
	// 10-second step the window moves by), less while the admin handler
	// is younger than that.
	WindowSeconds int64             `json:"window_seconds"`
	Total         Recent            `json:"total"`
	Routes        map[string]Recent `json:"routes"`
}

// recentCounts are the cumulative counters of one route the window needs.
type recentCounts struct {
	hits, localHits, misses, staleServed, collapsed, bypassed int64
	revalidations, notModified                                int64
	originCalls, originTimeNs                                 int64
}

func countsOf(s Stats) recentCounts {
	return recentCounts{
		hits: s.Hits, localHits: s.LocalHits, misses: s.Misses, staleServed: s.StaleServed, collapsed: s.Collapsed, bypassed: s.Bypassed,
		revalidations: s.Revalidations, notModified: s.NotModified,
		originCalls: s.OriginCalls, originTimeNs: s.OriginTimeNs,
	}
}

// sample is the counters of every route at one moment.
type sample struct {
	at     time.Time
	routes map[string]recentCounts
}

// history is the ring of samples of one Cache. Its zero value is ready;
// start begins the sampling (the first admin handler does), close ends it
// (Cache.Close does).
type history struct {
	mu      sync.Mutex
	started bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
	// samples, oldest first: at most recentWindow/recentSlot+1.
	samples []sample
}

// start takes a first sample and then one per slot until close, unless
// the history is started or closed already.
func (h *history) start(take func() map[string]recentCounts) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started || h.closed {
		return
	}
	h.started = true
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	h.samples = append(h.samples, sample{at: time.Now(), routes: take()})
	go h.run(take)
}

func (h *history) run(take func() map[string]recentCounts) {
	defer close(h.done)
	t := time.NewTicker(recentSlot)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			s := sample{at: time.Now(), routes: take()}
			h.mu.Lock()
			const most = int(recentWindow/recentSlot) + 1
			if len(h.samples) == most {
				copy(h.samples, h.samples[1:])
				h.samples = h.samples[:most-1]
			}
			h.samples = append(h.samples, s)
			h.mu.Unlock()
		}
	}
}

// close stops the sampling and waits for its goroutine to end. It is
// idempotent.
func (h *history) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	started := h.started
	h.mu.Unlock()
	if started {
		close(h.stop)
		<-h.done
	}
}

// base returns the oldest sample at most recentWindow before now.
func (h *history) base(now time.Time) (sample, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.samples {
		if now.Sub(s.at) <= recentWindow {
			return s, true
		}
	}
	return sample{}, false
}

// recent returns the deltas between the oldest sample inside the window
// and the counters now; zero deltas over no time when there is no such
// sample (the sampling has not started, or stopped long ago).
func (h *history) recent(now time.Time, current map[string]Stats) RecentStats {
	out := RecentStats{Routes: make(map[string]Recent, len(current))}
	base, ok := h.base(now)
	if ok {
		out.WindowSeconds = int64(now.Sub(base.at) / time.Second)
	}
	var total recentCounts
	for pattern, s := range current {
		var r Recent
		if ok {
			cur, then := countsOf(s), base.routes[pattern] // a route declared since counts from 0
			d := recentCounts{
				hits:        cur.hits - then.hits,
				localHits:   cur.localHits - then.localHits,
				misses:      cur.misses - then.misses,
				staleServed: cur.staleServed - then.staleServed,
				collapsed:   cur.collapsed - then.collapsed,
				bypassed:    cur.bypassed - then.bypassed,

				revalidations: cur.revalidations - then.revalidations,
				notModified:   cur.notModified - then.notModified,
			}
			r = d.recent()
			r.OriginTimeSavedNs = originTimeSaved(d.hits, cur.originTimeNs, cur.originCalls)
			total.add(d)
			out.Total.OriginTimeSavedNs = saturatingAdd(out.Total.OriginTimeSavedNs, r.OriginTimeSavedNs)
		}
		out.Routes[pattern] = r
	}
	saved := out.Total.OriginTimeSavedNs
	out.Total = total.recent()
	out.Total.OriginTimeSavedNs = saved
	return out
}

func (c *recentCounts) add(d recentCounts) {
	c.hits += d.hits
	c.localHits += d.localHits
	c.misses += d.misses
	c.staleServed += d.staleServed
	c.collapsed += d.collapsed
	c.bypassed += d.bypassed
	c.revalidations += d.revalidations
	c.notModified += d.notModified
}

// recent is c as a Recent, with its hit ratio and without the saving.
func (c recentCounts) recent() Recent {
	r := Recent{Hits: c.hits, LocalHits: c.localHits, Misses: c.misses, StaleServed: c.staleServed, Collapsed: c.collapsed, Bypassed: c.bypassed,
		Revalidations: c.revalidations, NotModified: c.notModified}
	served := c.hits + c.staleServed
	if all := served + c.misses; all > 0 { // collapsed are misses already
		r.HitRatio = float64(served) / float64(all)
	}
	return r
}

// recentCounts samples every route's counters for the history.
func (c *Cache) recentCounts() map[string]recentCounts {
	rs := c.RouteStats()
	m := make(map[string]recentCounts, len(rs))
	for p, s := range rs {
		m[p] = countsOf(s)
	}
	return m
}

// recentStats returns the deltas of the recent window, per route and in
// total.
func (c *Cache) recentStats() RecentStats {
	return c.history.recent(time.Now(), c.RouteStats())
}
