package httpcache

import (
	"math"
	"sync/atomic"
)

// Stats are counts of what the cache did since it was created, for one
// route or summed over routes. [Counters] describes each field once; the
// admin endpoint serves Stats as JSON and the promcache package exports
// the same counters to Prometheus from that description.
type Stats struct {
	Hits           int64 `json:"hits"`
	LocalHits      int64 `json:"local_hits"`
	Misses         int64 `json:"misses"`
	StaleServed    int64 `json:"stale_served"`
	Collapsed      int64 `json:"collapsed"`
	Stored         int64 `json:"stored"`
	BytesStored    int64 `json:"bytes_stored"`
	StoreErrors    int64 `json:"store_errors"`
	LocksLost      int64 `json:"locks_lost"`
	Refreshed      int64 `json:"refreshed"`
	RefreshFailed  int64 `json:"refresh_failed"`
	RefreshDropped int64 `json:"refresh_dropped"`
	RefreshSkipped int64 `json:"refresh_skipped"`
	PurgeRaces     int64 `json:"purge_races"`

	VariantsRefused int64 `json:"variants_refused"`
	TagsRefused     int64 `json:"tags_refused"`
	EntriesRejected int64 `json:"entries_rejected"`
	OversizeDecodes int64 `json:"oversize_decodes"`
	LongKeys        int64 `json:"long_keys"`

	DictionariesTrained int64 `json:"dictionaries_trained"`
	DictionariesLoaded  int64 `json:"dictionaries_loaded"`
	DictionaryMisses    int64 `json:"dictionary_misses"`

	Invalidations      int64 `json:"invalidations"`
	Invalidated        int64 `json:"invalidated"`
	InvalidationErrors int64 `json:"invalidation_errors"`
	Revalidations      int64 `json:"revalidations"`
	NotModified        int64 `json:"not_modified"`
	BytesNotResent     int64 `json:"bytes_not_resent"`

	// OriginCalls and OriginTimeNs count the origin calls made by fills
	// and background refreshes, and their total duration in nanoseconds.
	// Bypassed requests are not counted: they are not cache work, and
	// their origin time is not something the cache could save.
	OriginCalls  int64 `json:"origin_calls"`
	OriginTimeNs int64 `json:"origin_time_ns"`
	// OriginTimeSavedNs is derived when the Stats are taken: Hits times
	// the mean origin call (OriginTimeNs / OriginCalls), 0 before the
	// first call; summed over routes, it is the sum of the routes'
	// values. It is not a counter: it goes down when the mean does (see
	// [Derived]).
	OriginTimeSavedNs int64 `json:"origin_time_saved_ns"`

	// Bypassed counts the requests sent straight to the origin, for any
	// reason; BypassedBy by reason (see [BypassReasons]).
	Bypassed   int64            `json:"bypassed"`
	BypassedBy map[string]int64 `json:"bypassed_by"`
}

// Counter describes one counter of [Stats].
type Counter struct {
	// Name is the counter's name in the JSON of Stats and, with "_total",
	// of its Prometheus metric.
	Name string
	// Help says what it counts.
	Help string
	// Value reads the counter from a Stats.
	Value func(Stats) int64
}

// counter indexes the counters of a route.
type counter int

const (
	cHits counter = iota
	cLocalHits
	cMisses
	cStaleServed
	cCollapsed
	cStored
	cBytesStored
	cStoreErrors
	cLocksLost
	cRefreshed
	cRefreshFailed
	cRefreshDropped
	cRefreshSkipped
	cPurgeRaces
	cVariantsRefused
	cTagsRefused
	cEntriesRejected
	cOversizeDecodes
	cLongKeys
	cDictsTrained
	cDictsLoaded
	cDictMisses
	cInvalidations
	cInvalidated
	cInvalidationErrors
	cRevalidations
	cNotModified
	cBytesNotResent
	cOriginCalls
	cOriginTimeNs
	numCounters
)

// counterDefs is the one definition of the counters: their names, what
// they count, and their field in Stats.
var counterDefs = [numCounters]struct {
	name, help string
	field      func(*Stats) *int64
}{
	cHits:            {"hits", "Fresh entries served.", func(s *Stats) *int64 { return &s.Hits }},
	cLocalHits:       {"local_hits", "Hits and stale entries served from the local tier, without a store call (also counted in hits or stale_served).", func(s *Stats) *int64 { return &s.LocalHits }},
	cMisses:          {"misses", "Requests that found no usable entry.", func(s *Stats) *int64 { return &s.Misses }},
	cStaleServed:     {"stale_served", "Stale entries served (while revalidating, on origin error, or past a fill wait).", func(s *Stats) *int64 { return &s.StaleServed }},
	cCollapsed:       {"collapsed", "Misses answered by another request's fill.", func(s *Stats) *int64 { return &s.Collapsed }},
	cStored:          {"stored", "Entries written to the store.", func(s *Stats) *int64 { return &s.Stored }},
	cBytesStored:     {"bytes_stored", "Encoded bytes written to the store.", func(s *Stats) *int64 { return &s.BytesStored }},
	cStoreErrors:     {"store_errors", "Store, codec and lock errors absorbed by going to the origin.", func(s *Stats) *int64 { return &s.StoreErrors }},
	cLocksLost:       {"locks_lost", "Fill locks that expired or vanished while held.", func(s *Stats) *int64 { return &s.LocksLost }},
	cRefreshed:       {"refreshed", "Background refreshes that stored a new entry.", func(s *Stats) *int64 { return &s.Refreshed }},
	cRefreshFailed:   {"refresh_failed", "Background refreshes that kept the old entry.", func(s *Stats) *int64 { return &s.RefreshFailed }},
	cRefreshDropped:  {"refresh_dropped", "Background refreshes dropped because the pool was full or the cache closed.", func(s *Stats) *int64 { return &s.RefreshDropped }},
	cRefreshSkipped:  {"refresh_skipped", "Background refreshes skipped because another caller held the lock.", func(s *Stats) *int64 { return &s.RefreshSkipped }},
	cPurgeRaces:      {"purge_races", "Fills not stored because a purge came while the origin ran.", func(s *Stats) *int64 { return &s.PurgeRaces }},
	cVariantsRefused: {"variants_refused", "New variants not stored because their bucket held MaxFields.", func(s *Stats) *int64 { return &s.VariantsRefused }},
	cTagsRefused:     {"tags_refused", "Responses not stored because of their tags (more than MaxTags, or one longer than MaxTagBytes).", func(s *Stats) *int64 { return &s.TagsRefused }},
	cEntriesRejected: {"entries_rejected", "Entries read from the store that did not decode or broke the storage rules (misses).", func(s *Stats) *int64 { return &s.EntriesRejected }},
	cOversizeDecodes: {"oversize_decodes", "Hits whose body decoded past MaxBodyBytes for a client that did not accept its coding (sent to the origin).", func(s *Stats) *int64 { return &s.OversizeDecodes }},
	cLongKeys:        {"long_keys", "Requests with a bucket parameter value longer than keying.MaxBucketValue (kept as its digest).", func(s *Stats) *int64 { return &s.LongKeys }},
	cDictsTrained:    {"dictionaries_trained", "Compression dictionaries this instance trained and published.", func(s *Stats) *int64 { return &s.DictionariesTrained }},
	cDictsLoaded:     {"dictionaries_loaded", "Compression dictionaries installed in this instance, trained here or read from the store (a count of installs).", func(s *Stats) *int64 { return &s.DictionariesLoaded }},
	cDictMisses:      {"dictionary_misses", "Reads of entries whose compression dictionary could not be loaded (misses).", func(s *Stats) *int64 { return &s.DictionaryMisses }},

	cInvalidations:      {"invalidations", "Purges made after successful writes (write routes, and unsafe methods on cached routes).", func(s *Stats) *int64 { return &s.Invalidations }},
	cInvalidated:        {"invalidated", "Buckets those purges removed.", func(s *Stats) *int64 { return &s.Invalidated }},
	cInvalidationErrors: {"invalidation_errors", "Purges after writes that failed (the entries live until their TTL).", func(s *Stats) *int64 { return &s.InvalidationErrors }},
	cRevalidations:      {"revalidations", "Conditional requests the cache sent the origin with a stored entry's validators.", func(s *Stats) *int64 { return &s.Revalidations }},
	cNotModified:        {"not_modified", "Revalidations the origin answered 304: the stored body was kept.", func(s *Stats) *int64 { return &s.NotModified }},
	cBytesNotResent:     {"bytes_not_resent", "Stored body bytes the origin did not send again thanks to those 304s.", func(s *Stats) *int64 { return &s.BytesNotResent }},

	cOriginCalls:  {"origin_calls", "Origin calls made by fills and background refreshes (not by bypassed requests).", func(s *Stats) *int64 { return &s.OriginCalls }},
	cOriginTimeNs: {"origin_time_ns", "Time those origin calls took, in nanoseconds.", func(s *Stats) *int64 { return &s.OriginTimeNs }},
}

// Counters returns the description of every counter of [Stats] but the
// bypasses, which [BypassReasons] describes, and the values derived from
// counters, which [Derived] describes.
func Counters() []Counter {
	out := make([]Counter, numCounters)
	for i, d := range counterDefs {
		field := d.field
		out[i] = Counter{Name: d.name, Help: d.help, Value: func(s Stats) int64 { return *field(&s) }}
	}
	return out
}

// Derived returns the description of the values of [Stats] computed from
// its counters when the Stats are taken: origin_time_saved_ns. They are
// not monotone (a slower origin call lowers the mean the saving is
// computed with), so a metrics system exports them as gauges; over a time
// window, compute them from the counters instead (the promcache package
// documents the PromQL).
func Derived() []Counter {
	return []Counter{{
		Name:  "origin_time_saved_ns",
		Help:  "Origin time the hits saved, in nanoseconds: hits times the mean origin call (origin_time_ns / origin_calls).",
		Value: func(s Stats) int64 { return s.OriginTimeSavedNs },
	}}
}

// originTimeSaved is hits times the mean of calls origin calls that took
// total nanoseconds, 0 before the first call; it saturates rather than
// overflow.
func originTimeSaved(hits, total, calls int64) int64 {
	if calls <= 0 || hits <= 0 || total <= 0 {
		return 0
	}
	saved := float64(hits) * (float64(total) / float64(calls))
	if saved >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(saved)
}

// bypass is why a request went straight to the origin.
type bypass int

const (
	bypassMethod        bypass = iota // not GET or HEAD
	bypassUpgrade                     // a protocol upgrade
	bypassAuthorization               // Authorization (but in standards mode) or Proxy-Authorization, without AllowAuthorized
	bypassCookie                      // Cookie, without AllowAuthorized
	bypassNoStore                     // Cache-Control: no-store from the client
	bypassBody                        // a GET or HEAD with a body
	bypassQuery                       // a query net/url does not parse cleanly
	bypassRoute                       // routed by another pattern than declared, or not routed
	bypassStore                       // the store's circuit is open
	numBypasses
)

// bypassDefs names each bypass reason in stats and metrics, and gives its
// Cache-Status parameters (RFC 9211).
var bypassDefs = [numBypasses]struct{ name, status string }{
	bypassMethod:        {"method", "fwd=method"},
	bypassUpgrade:       {"upgrade", "fwd=bypass; detail=upgrade"},
	bypassAuthorization: {"authorization", "fwd=bypass; detail=authorization"},
	bypassCookie:        {"cookie", "fwd=bypass; detail=cookie"},
	bypassNoStore:       {"no-store", "fwd=request; detail=no-store"},
	bypassBody:          {"body", "fwd=bypass; detail=body"},
	bypassQuery:         {"query", "fwd=bypass; detail=query"},
	bypassRoute:         {"route", "fwd=bypass; detail=route-mismatch"},
	bypassStore:         {"store-unavailable", "fwd=bypass; detail=store-unavailable"},
}

// BypassReasons returns the reasons [Stats.BypassedBy] counts requests
// under: method (not GET or HEAD), upgrade, authorization, cookie,
// no-store (from the client), body (a GET with a body), query (one
// net/url does not parse cleanly), route (routed by another pattern than
// the route was declared with, or by none), store-unavailable (the
// store's circuit is open).
func BypassReasons() []string {
	out := make([]string, numBypasses)
	for i, d := range bypassDefs {
		out[i] = d.name
	}
	return out
}

// counters are one route's counts.
type counters struct {
	n      [numCounters]atomic.Int64
	bypass [numBypasses]atomic.Int64
}

func (c *counters) add(k counter, n int64) { c.n[k].Add(n) }

func (c *counters) snapshot() Stats {
	var s Stats
	for i, d := range counterDefs {
		*d.field(&s) = c.n[i].Load()
	}
	s.BypassedBy = make(map[string]int64, numBypasses)
	for i, d := range bypassDefs {
		n := c.bypass[i].Load()
		s.Bypassed += n
		s.BypassedBy[d.name] = n
	}
	s.OriginTimeSavedNs = originTimeSaved(s.Hits, s.OriginTimeNs, s.OriginCalls)
	return s
}

// Add adds the counts of o to s: for summing the stats of several caches,
// such as the instances of one service running in a test or a process.
// The derived OriginTimeSavedNs is summed too (each part saved at its own
// mean origin time), not recomputed from the summed counters.
func (s *Stats) Add(o Stats) {
	for _, d := range counterDefs {
		*d.field(s) += *d.field(&o)
	}
	s.OriginTimeSavedNs = saturatingAdd(s.OriginTimeSavedNs, o.OriginTimeSavedNs)
	s.Bypassed += o.Bypassed
	if len(o.BypassedBy) > 0 && s.BypassedBy == nil {
		s.BypassedBy = make(map[string]int64, len(o.BypassedBy))
	}
	for reason, n := range o.BypassedBy {
		s.BypassedBy[reason] += n
	}
}

// saturatingAdd is a+b for non-negative a and b, at most math.MaxInt64.
func saturatingAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Stats returns the counts summed over every route.
func (c *Cache) Stats() Stats {
	var s Stats
	for _, rs := range c.RouteStats() {
		s.Add(rs)
	}
	return s
}

// RouteStats returns the counts of each declared route, cached and write
// routes (see [Cache.Writes]) alike, by pattern.
func (c *Cache) RouteStats() map[string]Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]Stats, len(c.routes)+len(c.writes))
	for p, r := range c.routes {
		m[p] = r.stats.snapshot()
	}
	for p, ws := range c.writes {
		s := ws.snapshot()
		if rs, ok := m[p]; ok { // a write route on a cached route's pattern
			s.Add(rs)
		}
		m[p] = s
	}
	return m
}
