// Package promcache exposes a readthrough cache's counters as a Prometheus
// collector. It lives in its own package so that services which do not use
// Prometheus never import its client library.
package promcache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/readthrough/readthrough/httpcache"
)

// Collector reports the counters of one [httpcache.Cache], per route, as
// Prometheus counters: every counter [httpcache.Counters] describes as
// <namespace>_<name>_total with a "route" label, and the bypasses as
// <namespace>_bypassed_total with "route" and "reason" labels. The values
// [httpcache.Derived] describes are not monotone, so they are gauges,
// <namespace>_<name> with a "route" label: origin_time_saved_ns, the hits
// since start times the route's mean origin call. A cache with a local
// tier ([httpcache.WithLocalTier]) also has <namespace>_local_entries,
// _local_bytes, _local_max_bytes, _local_hit_ratio, _local_evictions_total,
// _local_invalidations_total, _local_resets_total and
// _local_silent_seconds (see [httpcache.LocalStats]); its hit ratio is
// local_hits_total over hits_total plus stale_served_total. Register it with
// prometheus.MustRegister.
//
// For the origin time saved over a time range rather than since start,
// compute it from the counters, for example in seconds saved per second
// over the last 5 minutes:
//
//	rate(readthrough_hits_total[5m])
//	  * readthrough_origin_time_ns_total / readthrough_origin_calls_total / 1e9
//
// (the mean origin call since start, since a range without misses has no
// mean of its own).
type Collector struct {
	cache        *httpcache.Cache
	counters     []httpcache.Counter
	descs        []*prometheus.Desc
	derived      []httpcache.Counter
	derivedDescs []*prometheus.Desc
	bypassed     *prometheus.Desc
	local        []localMetric
}

// localMetric is one metric of the cache's local tier
// ([httpcache.Cache.LocalStats]).
type localMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(httpcache.LocalStats) float64
}

// NewCollector returns a collector for cache. namespace prefixes the metric
// names; empty means "readthrough".
func NewCollector(cache *httpcache.Cache, namespace string) *Collector {
	if namespace == "" {
		namespace = "readthrough"
	}
	c := &Collector{cache: cache, counters: httpcache.Counters(), derived: httpcache.Derived()}
	for _, k := range c.counters {
		c.descs = append(c.descs, prometheus.NewDesc(prometheus.BuildFQName(namespace, "", k.Name+"_total"), k.Help, []string{"route"}, nil))
	}
	for _, k := range c.derived {
		c.derivedDescs = append(c.derivedDescs, prometheus.NewDesc(prometheus.BuildFQName(namespace, "", k.Name), k.Help, []string{"route"}, nil))
	}
	c.bypassed = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "bypassed_total"),
		"Requests sent straight to the origin, by reason.", []string{"route", "reason"}, nil)
	if cache.LocalStats().Enabled {
		local := func(name, help string, kind prometheus.ValueType, value func(httpcache.LocalStats) float64) {
			c.local = append(c.local, localMetric{prometheus.NewDesc(prometheus.BuildFQName(namespace, "local", name), help, nil, nil), kind, value})
		}
		local("entries", "Copies the local tier holds.", prometheus.GaugeValue, func(s httpcache.LocalStats) float64 { return float64(s.Entries) })
		local("bytes", "Heap the local tier's copies take, as the tier estimates it.", prometheus.GaugeValue, func(s httpcache.LocalStats) float64 { return float64(s.Bytes) })
		local("max_bytes", "The local tier's memory bound (WithLocalTier).", prometheus.GaugeValue, func(s httpcache.LocalStats) float64 { return float64(s.MaxBytes) })
		local("hit_ratio", "Share of the hits of Local routes that the local tier served, since start.", prometheus.GaugeValue, func(s httpcache.LocalStats) float64 { return s.HitRatio })
		local("evictions_total", "Copies evicted to stay within the bound.", prometheus.CounterValue, func(s httpcache.LocalStats) float64 { return float64(s.Evictions) })
		local("invalidations_total", "Buckets the store reported changed.", prometheus.CounterValue, func(s httpcache.LocalStats) float64 { return float64(s.Invalidations) })
		local("resets_total", "Reports that every bucket may have changed (a flush, a reconnection).", prometheus.CounterValue, func(s httpcache.LocalStats) float64 { return float64(s.Resets) })
		local("silent_seconds", "Time since the store last proved it reported every change (-1 before the first proof; no copy is served past the bound).", prometheus.GaugeValue, func(s httpcache.LocalStats) float64 {
			if s.SilentNs < 0 {
				return -1
			}
			return float64(s.SilentNs) / 1e9
		})
	}
	return c
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range c.derivedDescs {
		ch <- d
	}
	ch <- c.bypassed
	for _, m := range c.local {
		ch <- m.desc
	}
}

// Collect implements [prometheus.Collector].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for route, s := range c.cache.RouteStats() {
		for i, k := range c.counters {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(k.Value(s)), route)
		}
		for i, k := range c.derived {
			ch <- prometheus.MustNewConstMetric(c.derivedDescs[i], prometheus.GaugeValue, float64(k.Value(s)), route)
		}
		for _, reason := range httpcache.BypassReasons() {
			ch <- prometheus.MustNewConstMetric(c.bypassed, prometheus.CounterValue, float64(s.BypassedBy[reason]), route, reason)
		}
	}
	if len(c.local) > 0 {
		ls := c.cache.LocalStats()
		for _, m := range c.local {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(ls))
		}
	}
}
