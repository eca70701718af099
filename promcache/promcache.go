// Package promcache exposes a readthrough cache's counters as a Prometheus
// collector. It lives in its own package so that services which do not use
// Prometheus never import its client library.
package promcache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/readthrough/readthrough/httpcache"
)

// Collector reports the counters of one [httpcache.Cache], per route, as
// Prometheus counters named readthrough_<counter>_total with a "route"
// label (readthrough_bypassed_total also has a "reason" label). Register
// it with prometheus.MustRegister.
type Collector struct {
	cache    *httpcache.Cache
	descs    []metric
	bypassed *prometheus.Desc
}

type metric struct {
	desc  *prometheus.Desc
	value func(httpcache.Stats) int64
}

// NewCollector returns a collector for cache. namespace prefixes the metric
// names; empty means "readthrough".
func NewCollector(cache *httpcache.Cache, namespace string) *Collector {
	if namespace == "" {
		namespace = "readthrough"
	}
	c := &Collector{cache: cache}
	c.bypassed = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "bypassed_total"),
		"Requests sent straight to the origin, by reason (see httpcache.Stats.BypassedBy).", []string{"route", "reason"}, nil)
	add := func(name, help string, value func(httpcache.Stats) int64) {
		c.descs = append(c.descs, metric{
			desc:  prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name+"_total"), help, []string{"route"}, nil),
			value: value,
		})
	}
	add("hits", "Fresh entries served from the cache.", func(s httpcache.Stats) int64 { return s.Hits })
	add("misses", "Requests that found no usable entry.", func(s httpcache.Stats) int64 { return s.Misses })
	add("stale_served", "Stale entries served (revalidating, origin errors, fill waits).", func(s httpcache.Stats) int64 { return s.StaleServed })
	add("collapsed", "Misses answered by another request's fill.", func(s httpcache.Stats) int64 { return s.Collapsed })
	add("stored", "Entries written to the store.", func(s httpcache.Stats) int64 { return s.Stored })
	add("stored_bytes", "Encoded bytes written to the store.", func(s httpcache.Stats) int64 { return s.BytesStored })
	add("store_errors", "Store, codec and lock errors absorbed by going to the origin.", func(s httpcache.Stats) int64 { return s.StoreErrors })
	add("locks_lost", "Fill locks that expired or vanished while held.", func(s httpcache.Stats) int64 { return s.LocksLost })
	add("refreshes", "Background refreshes that stored a new entry.", func(s httpcache.Stats) int64 { return s.Refreshed })
	add("refresh_failures", "Background refreshes that kept the old entry.", func(s httpcache.Stats) int64 { return s.RefreshFailed })
	add("refreshes_dropped", "Background refreshes dropped because the pool was full.", func(s httpcache.Stats) int64 { return s.RefreshDropped })
	add("refreshes_skipped", "Background refreshes skipped because another instance held the lock.", func(s httpcache.Stats) int64 { return s.RefreshSkipped })
	add("purge_races", "Fills not stored because a purge came while the origin ran.", func(s httpcache.Stats) int64 { return s.PurgeRaces })
	add("variants_refused", "New variants not stored because their bucket held MaxFields.", func(s httpcache.Stats) int64 { return s.VariantsRefused })
	add("tags_refused", "Responses not stored because of their tags (more than MaxTags, or one longer than MaxTagBytes).", func(s httpcache.Stats) int64 { return s.TagsRefused })
	add("entries_rejected", "Entries read from the store that did not decode or broke the storage rules (misses).", func(s httpcache.Stats) int64 { return s.EntriesRejected })
	add("oversize_decodes", "Hits whose body decoded past MaxBodyBytes for a client that did not accept its coding.", func(s httpcache.Stats) int64 { return s.OversizeDecodes })
	add("long_keys", "Requests with a bucket parameter value kept as its digest for its length.", func(s httpcache.Stats) int64 { return s.LongKeys })
	add("dictionaries_trained", "Compression dictionaries this instance trained and published.", func(s httpcache.Stats) int64 { return s.DictionariesTrained })
	add("dictionaries_loaded", "Compression dictionaries installed in this instance, trained here or read from the store (a count of installs, not of dictionaries held).", func(s httpcache.Stats) int64 { return s.DictionariesLoaded })
	add("dictionary_misses", "Reads of entries whose compression dictionary could not be loaded (misses).", func(s httpcache.Stats) int64 { return s.DictionaryMisses })
	return c
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.descs {
		ch <- m.desc
	}
	ch <- c.bypassed
}

// Collect implements [prometheus.Collector].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	routes := c.cache.RouteStats()
	for _, m := range c.descs {
		for route, s := range routes {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.value(s)), route)
		}
	}
	for route, s := range routes {
		for reason, n := range s.BypassedBy {
			ch <- prometheus.MustNewConstMetric(c.bypassed, prometheus.CounterValue, float64(n), route, reason)
		}
	}
}
