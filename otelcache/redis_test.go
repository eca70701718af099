package otelcache_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// hgetHook is a go-redis hook, as go-redis's own tracing (redisotel)
// installs one, that records the span in the context of each HGET (the
// hit path's one command) and whether that context has a deadline.
type hgetHook struct {
	mu   sync.Mutex
	seen []hget
}

type hget struct {
	span     trace.SpanContext
	deadline bool
}

func (h *hgetHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *hgetHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hget" {
			_, ok := ctx.Deadline()
			h.mu.Lock()
			h.seen = append(h.seen, hget{span: trace.SpanContextFromContext(ctx), deadline: ok})
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *hgetHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *hgetHook) take() []hget {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := h.seen
	h.seen = nil
	return seen
}

// On real Redis, the hit path's HGET carries the request's context: the
// request's span without a tracer, the cache's lookup span (under the
// request's) with one. go-redis's own tracing therefore reports the
// command inside the request's trace.
func TestRedisHitPathKeepsRequestContext(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client()
	hook := &hgetHook{}
	client.AddHook(hook)
	for _, traced := range []bool{false, true} {
		name := "no tracer"
		if traced {
			name = "tracer"
		}
		t.Run(name, func(t *testing.T) {
			store, err := redisstore.New(client, redisstore.WithPrefix("otel-"+map[bool]string{false: "plain", true: "traced"}[traced]))
			if err != nil {
				t.Fatal(err)
			}
			tr := newTracing(t)
			var opts []httpcache.Option
			if !traced {
				opts = append(opts, httpcache.WithTracer(nil))
			}
			a := newApp(t, tr, store, policy.Policy{TTL: time.Minute}, append(opts, httpcache.WithStoreTimeout(2*time.Second))...)
			a.do("GET", "/users/15", "")
			hook.take()
			status, req := a.do("GET", "/users/15", "")
			if !strings.Contains(status, "hit") {
				t.Fatalf("not a hit: %q", status)
			}
			seen := hook.take()
			if len(seen) != 1 {
				t.Fatalf("%d HGETs on a hit, want 1", len(seen))
			}
			got := seen[0]
			if !got.deadline {
				t.Error("the HGET's context has no deadline")
			}
			if got.span.TraceID() != req.TraceID() {
				t.Fatalf("the HGET's context carries trace %s, not the request's %s", got.span.TraceID(), req.TraceID())
			}
			want := req.SpanID()
			if traced {
				want = tr.one(t, req.TraceID(), string(httpcache.OpLookup)).SpanContext.SpanID()
			}
			if got.span.SpanID() != want {
				t.Errorf("the HGET's span is %s, want %s", got.span.SpanID(), want)
			}
		})
	}
}
