package httpcache

import "sync/atomic"

// counters are the cache's event counts, kept per route and summed.
type counters struct {
	hits, misses, staleServed, collapsed, bypass atomic.Int64
	stored, bytesStored, storeErrors, locksLost  atomic.Int64
	refreshed, refreshFailed, refreshDropped     atomic.Int64
	refreshSkipped, purgeRaces                   atomic.Int64
	dictsTrained, dictsLoaded, dictMisses        atomic.Int64
}

// Stats are counts of what the cache did since it was created.
type Stats struct {
	Hits           int64 `json:"hits"`            // fresh entries served
	Misses         int64 `json:"misses"`          // requests that found no usable entry
	StaleServed    int64 `json:"stale_served"`    // stale entries served (while revalidating, on origin error, or past a fill wait)
	Collapsed      int64 `json:"collapsed"`       // misses answered by another request's fill
	Bypassed       int64 `json:"bypassed"`        // requests sent straight to the origin
	Stored         int64 `json:"stored"`          // entries written
	BytesStored    int64 `json:"bytes_stored"`    // encoded bytes written
	StoreErrors    int64 `json:"store_errors"`    // store, codec and lock errors absorbed
	LocksLost      int64 `json:"locks_lost"`      // fill locks that expired or vanished while held
	Refreshed      int64 `json:"refreshed"`       // background refreshes that stored a new entry
	RefreshFailed  int64 `json:"refresh_failed"`  // background refreshes that kept the old entry
	RefreshDropped int64 `json:"refresh_dropped"` // refreshes dropped because the pool was full or closed
	RefreshSkipped int64 `json:"refresh_skipped"` // refreshes skipped because another caller held the lock
	PurgeRaces     int64 `json:"purge_races"`     // fills not stored because a purge came while the origin ran

	// Dictionary compression (policy.CompressDictionary).
	DictionariesTrained int64 `json:"dictionaries_trained"` // dictionaries this instance trained and published
	DictionariesLoaded  int64 `json:"dictionaries_loaded"`  // dictionaries installed in this instance (trained here or read from the store), counted per install
	DictionaryMisses    int64 `json:"dictionary_misses"`    // reads of entries whose dictionary could not be loaded (misses)
}

func (c *counters) snapshot() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), StaleServed: c.staleServed.Load(),
		Collapsed: c.collapsed.Load(), Bypassed: c.bypass.Load(), Stored: c.stored.Load(),
		BytesStored: c.bytesStored.Load(), StoreErrors: c.storeErrors.Load(), LocksLost: c.locksLost.Load(),
		Refreshed: c.refreshed.Load(), RefreshFailed: c.refreshFailed.Load(),
		RefreshDropped: c.refreshDropped.Load(), RefreshSkipped: c.refreshSkipped.Load(),
		PurgeRaces:          c.purgeRaces.Load(),
		DictionariesTrained: c.dictsTrained.Load(), DictionariesLoaded: c.dictsLoaded.Load(),
		DictionaryMisses: c.dictMisses.Load(),
	}
}

// Add adds the counts of o to s: for summing the stats of several caches,
// such as the instances of one service running in a test or a process.
func (s *Stats) Add(o Stats) {
	s.Hits += o.Hits
	s.Misses += o.Misses
	s.StaleServed += o.StaleServed
	s.Collapsed += o.Collapsed
	s.Bypassed += o.Bypassed
	s.Stored += o.Stored
	s.BytesStored += o.BytesStored
	s.StoreErrors += o.StoreErrors
	s.LocksLost += o.LocksLost
	s.Refreshed += o.Refreshed
	s.RefreshFailed += o.RefreshFailed
	s.RefreshDropped += o.RefreshDropped
	s.RefreshSkipped += o.RefreshSkipped
	s.PurgeRaces += o.PurgeRaces
	s.DictionariesTrained += o.DictionariesTrained
	s.DictionariesLoaded += o.DictionariesLoaded
	s.DictionaryMisses += o.DictionaryMisses
}

// Stats returns the counts summed over every route.
func (c *Cache) Stats() Stats {
	var s Stats
	for _, rs := range c.RouteStats() {
		s.Add(rs)
	}
	return s
}

// RouteStats returns the counts of each declared route, by pattern.
func (c *Cache) RouteStats() map[string]Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]Stats, len(c.routes))
	for p, r := range c.routes {
		m[p] = r.stats.snapshot()
	}
	return m
}
