package httpcache

import "sync/atomic"

// bypass is why a request went straight to the origin.
type bypass int

const (
	bypassMethod        bypass = iota // not GET or HEAD
	bypassUpgrade                     // a protocol upgrade
	bypassAuthorization               // Authorization, without AllowAuthorized
	bypassCookie                      // Cookie, without AllowAuthorized
	bypassNoStore                     // Cache-Control: no-store from the client
	bypassBody                        // a GET or HEAD with a body
	bypassQuery                       // a query net/url does not parse cleanly
	bypassRoute                       // routed by another pattern than declared, or not routed
	bypassStore                       // the store's circuit is open
	numBypasses
)

// bypassNames are the names of the bypass reasons in stats and metrics.
var bypassNames = [numBypasses]string{
	bypassMethod:        "method",
	bypassUpgrade:       "upgrade",
	bypassAuthorization: "authorization",
	bypassCookie:        "cookie",
	bypassNoStore:       "no-store",
	bypassBody:          "body",
	bypassQuery:         "query",
	bypassRoute:         "route",
	bypassStore:         "store-unavailable",
}

// bypassStatus is the Cache-Status parameters of each bypass (RFC 9211).
var bypassStatus = [numBypasses]string{
	bypassMethod:        "fwd=method",
	bypassUpgrade:       "fwd=bypass; detail=upgrade",
	bypassAuthorization: "fwd=bypass; detail=authorization",
	bypassCookie:        "fwd=bypass; detail=cookie",
	bypassNoStore:       "fwd=request; detail=no-store",
	bypassBody:          "fwd=bypass; detail=body",
	bypassQuery:         "fwd=bypass; detail=query",
	bypassRoute:         "fwd=bypass; detail=route-mismatch",
	bypassStore:         "fwd=bypass; detail=store-unavailable",
}

// counters are the cache's event counts, kept per route and summed.
type counters struct {
	hits, misses, staleServed, collapsed        atomic.Int64
	bypass                                      [numBypasses]atomic.Int64
	stored, bytesStored, storeErrors, locksLost atomic.Int64
	refreshed, refreshFailed, refreshDropped    atomic.Int64
	refreshSkipped, purgeRaces                  atomic.Int64
	dictsTrained, dictsLoaded, dictMisses       atomic.Int64
	variantsRefused, tagsRefused                atomic.Int64
	entriesRejected, oversizeDecodes, longKeys  atomic.Int64
}

// Stats are counts of what the cache did since it was created.
type Stats struct {
	Hits        int64 `json:"hits"`         // fresh entries served
	Misses      int64 `json:"misses"`       // requests that found no usable entry
	StaleServed int64 `json:"stale_served"` // stale entries served (while revalidating, on origin error, or past a fill wait)
	Collapsed   int64 `json:"collapsed"`    // misses answered by another request's fill
	Bypassed    int64 `json:"bypassed"`     // requests sent straight to the origin, for any reason
	// BypassedBy counts the bypassed requests by reason: method, upgrade,
	// authorization, cookie, no-store, body (a GET with a body), query (a
	// query net/url does not parse cleanly), route (routed by another
	// pattern than the route was declared with), store-unavailable.
	BypassedBy     map[string]int64 `json:"bypassed_by"`
	Stored         int64            `json:"stored"`          // entries written
	BytesStored    int64            `json:"bytes_stored"`    // encoded bytes written
	StoreErrors    int64            `json:"store_errors"`    // store, codec and lock errors absorbed
	LocksLost      int64            `json:"locks_lost"`      // fill locks that expired or vanished while held
	Refreshed      int64            `json:"refreshed"`       // background refreshes that stored a new entry
	RefreshFailed  int64            `json:"refresh_failed"`  // background refreshes that kept the old entry
	RefreshDropped int64            `json:"refresh_dropped"` // refreshes dropped because the pool was full or closed
	RefreshSkipped int64            `json:"refresh_skipped"` // refreshes skipped because another caller held the lock
	PurgeRaces     int64            `json:"purge_races"`     // fills not stored because a purge came while the origin ran

	// Defences that fired.
	VariantsRefused int64 `json:"variants_refused"` // new variants not stored because their bucket held MaxFields
	TagsRefused     int64 `json:"tags_refused"`     // responses not stored because of their tags (more than MaxTags, or one longer than MaxTagBytes)
	EntriesRejected int64 `json:"entries_rejected"` // entries read from the store that did not decode or broke the storage rules (misses)
	OversizeDecodes int64 `json:"oversize_decodes"` // hits whose body decoded past MaxBodyBytes for a client that did not accept its coding (sent to the origin)
	LongKeys        int64 `json:"long_keys"`        // requests with a bucket value longer than keying.MaxBucketValue (kept as its digest)

	// Dictionary compression (policy.CompressDictionary).
	DictionariesTrained int64 `json:"dictionaries_trained"` // dictionaries this instance trained and published
	DictionariesLoaded  int64 `json:"dictionaries_loaded"`  // dictionaries installed in this instance (trained here or read from the store), counted per install
	DictionaryMisses    int64 `json:"dictionary_misses"`    // reads of entries whose dictionary could not be loaded (misses)
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), StaleServed: c.staleServed.Load(),
		Collapsed: c.collapsed.Load(), Stored: c.stored.Load(),
		BytesStored: c.bytesStored.Load(), StoreErrors: c.storeErrors.Load(), LocksLost: c.locksLost.Load(),
		Refreshed: c.refreshed.Load(), RefreshFailed: c.refreshFailed.Load(),
		RefreshDropped: c.refreshDropped.Load(), RefreshSkipped: c.refreshSkipped.Load(),
		PurgeRaces:      c.purgeRaces.Load(),
		VariantsRefused: c.variantsRefused.Load(), TagsRefused: c.tagsRefused.Load(),
		EntriesRejected: c.entriesRejected.Load(), OversizeDecodes: c.oversizeDecodes.Load(),
		LongKeys:            c.longKeys.Load(),
		DictionariesTrained: c.dictsTrained.Load(), DictionariesLoaded: c.dictsLoaded.Load(),
		DictionaryMisses: c.dictMisses.Load(),
		BypassedBy:       make(map[string]int64, numBypasses),
	}
	for i := range c.bypass {
		n := c.bypass[i].Load()
		s.Bypassed += n
		s.BypassedBy[bypassNames[i]] = n
	}
	return s
}

// Add adds the counts of o to s: for summing the stats of several caches,
// such as the instances of one service running in a test or a process.
func (s *Stats) Add(o Stats) {
	s.Hits += o.Hits
	s.Misses += o.Misses
	s.StaleServed += o.StaleServed
	s.Collapsed += o.Collapsed
	s.Bypassed += o.Bypassed
	if len(o.BypassedBy) > 0 && s.BypassedBy == nil {
		s.BypassedBy = make(map[string]int64, len(o.BypassedBy))
	}
	for reason, n := range o.BypassedBy {
		s.BypassedBy[reason] += n
	}
	s.Stored += o.Stored
	s.BytesStored += o.BytesStored
	s.StoreErrors += o.StoreErrors
	s.LocksLost += o.LocksLost
	s.Refreshed += o.Refreshed
	s.RefreshFailed += o.RefreshFailed
	s.RefreshDropped += o.RefreshDropped
	s.RefreshSkipped += o.RefreshSkipped
	s.PurgeRaces += o.PurgeRaces
	s.VariantsRefused += o.VariantsRefused
	s.TagsRefused += o.TagsRefused
	s.EntriesRejected += o.EntriesRejected
	s.OversizeDecodes += o.OversizeDecodes
	s.LongKeys += o.LongKeys
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
