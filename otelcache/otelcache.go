package otelcache

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/readthrough/readthrough/httpcache"
)

// ScopeName is the instrumentation scope of the spans and metrics this
// package reports.
const ScopeName = "github.com/readthrough/readthrough/otelcache"

// Attribute keys the spans carry besides those named by [httpcache.Attr].
const (
	// RouteKey is the declared route pattern, such as "GET /users/{id}".
	RouteKey = attribute.Key("readthrough.route")
	// OutcomeKey is what the decision came to ([httpcache.Outcome]).
	OutcomeKey = attribute.Key("readthrough.outcome")
)

// Tracer reports a cache's decisions as OpenTelemetry spans. It
// implements [httpcache.Tracer]: pass it to [httpcache.WithTracer].
type Tracer struct {
	tracer trace.Tracer
}

var _ httpcache.Tracer = (*Tracer)(nil)

// NewTracer returns a Tracer that starts its spans with a tracer of tp,
// under the scope [ScopeName]. A nil tp means the global provider,
// [otel.GetTracerProvider], as it is when the spans start.
func NewTracer(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Tracer{tracer: tp.Tracer(ScopeName)}
}

// Start implements [httpcache.Tracer]: it starts an internal span named
// op, a child of the span in ctx, except for a refresh
// ([httpcache.OpRefresh]), which starts a new trace linked to the span
// in ctx, since it outlives the request that triggered it. It returns a
// nil span for a span that does not record (sampled out).
func (t *Tracer) Start(ctx context.Context, op httpcache.Op, route string) (context.Context, httpcache.Span) {
	var s trace.Span
	kind := trace.WithSpanKind(trace.SpanKindInternal)
	switch {
	case op == httpcache.OpRefresh:
		opts := []trace.SpanStartOption{kind, trace.WithNewRoot()}
		if link := trace.LinkFromContext(ctx); link.SpanContext.IsValid() {
			opts = append(opts, trace.WithLinks(link))
		}
		ctx, s = t.tracer.Start(ctx, string(op), opts...)
	default:
		ctx, s = t.tracer.Start(ctx, string(op), kind)
	}
	if !s.IsRecording() {
		return ctx, nil
	}
	if route != "" {
		s.SetAttributes(RouteKey.String(route))
	}
	return ctx, span{s}
}

// span adapts an OpenTelemetry span to [httpcache.Span].
type span struct{ s trace.Span }

func (s span) SetInt(a httpcache.Attr, v int64) {
	s.s.SetAttributes(attribute.Int64(a.String(), v))
}

func (s span) SetString(a httpcache.Attr, v string) {
	s.s.SetAttributes(attribute.String(a.String(), v))
}

func (s span) End(o httpcache.Outcome) {
	s.s.SetAttributes(OutcomeKey.String(string(o)))
	if o == httpcache.OutcomeFailed || o == httpcache.OutcomeError {
		s.s.SetStatus(codes.Error, string(o))
	}
	s.s.End()
}
