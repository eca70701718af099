package otelcache

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/readthrough/readthrough/httpcache"
)

// Option configures [RegisterMetrics].
type Option interface{ apply(*config) }

type config struct {
	namespace string
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithNamespace sets the prefix of the metric names, which are
// <namespace>.<counter>. Default (and ""): "readthrough".
func WithNamespace(ns string) Option {
	return optionFunc(func(c *config) { c.namespace = ns })
}

// Attribute keys of the metrics, the labels promcache gives the same
// counters.
const (
	// MetricRouteKey is the route pattern a count is of.
	MetricRouteKey = attribute.Key("route")
	// MetricReasonKey is the reason of a bypass ([httpcache.BypassReasons]).
	MetricReasonKey = attribute.Key("reason")
)

// RegisterMetrics exports the counters of cache through a meter of mp as
// observable counters, read from [httpcache.Cache.RouteStats] by one
// callback at each collection: every counter [httpcache.Counters]
// describes as <namespace>.<name> with the attribute route, and the
// bypasses as <namespace>.bypassed with route and reason. These are the
// counters package promcache exports to Prometheus. Call unregister to
// stop exporting them (when the cache is closed, say).
func RegisterMetrics(mp metric.MeterProvider, cache *httpcache.Cache, opts ...Option) (unregister func() error, err error) {
	if mp == nil || cache == nil {
		return nil, errors.New("otelcache: RegisterMetrics needs a meter provider and a cache")
	}
	cfg := config{}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.namespace == "" {
		cfg.namespace = "readthrough"
	}
	meter := mp.Meter(ScopeName)
	counters := httpcache.Counters()
	insts := make([]metric.Int64ObservableCounter, len(counters))
	observables := make([]metric.Observable, 0, len(counters)+1)
	for i, k := range counters {
		insts[i], err = meter.Int64ObservableCounter(cfg.namespace+"."+k.Name,
			metric.WithDescription(k.Help), metric.WithUnit(unit(k.Name)))
		if err != nil {
			return nil, fmt.Errorf("otelcache: counter %s: %w", k.Name, err)
		}
		observables = append(observables, insts[i])
	}
	bypassed, err := meter.Int64ObservableCounter(cfg.namespace+".bypassed",
		metric.WithDescription("Requests sent straight to the origin, by reason."))
	if err != nil {
		return nil, fmt.Errorf("otelcache: counter bypassed: %w", err)
	}
	observables = append(observables, bypassed)
	reasons := httpcache.BypassReasons()
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for route, s := range cache.RouteStats() {
			onRoute := metric.WithAttributeSet(attribute.NewSet(MetricRouteKey.String(route)))
			for i, k := range counters {
				o.ObserveInt64(insts[i], k.Value(s), onRoute)
			}
			for _, reason := range reasons {
				o.ObserveInt64(bypassed, s.BypassedBy[reason],
					metric.WithAttributes(MetricRouteKey.String(route), MetricReasonKey.String(reason)))
			}
		}
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("otelcache: register callback: %w", err)
	}
	return reg.Unregister, nil
}

// unit is the UCUM unit of the counter named name: bytes and nanoseconds
// by their names, and none (a count) otherwise.
func unit(name string) string {
	switch {
	case strings.HasPrefix(name, "bytes_") || strings.HasSuffix(name, "_bytes"):
		return "By"
	case strings.HasSuffix(name, "_ns"):
		return "ns"
	}
	return ""
}
